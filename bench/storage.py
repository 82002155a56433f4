"""Storage: bytes per device-sample in ``samples`` and in each rollup and job table, after compaction.

Measured on a fleet simulated device by device (no copies: copied readings would compress better than
real ones), pushed through the worker's processing path into a fresh warehouse. A table's size is that of
the data files its current Delta version reads: neither the files that compaction replaced (deleted by the
worker's vacuum after ``retain_hours``) nor the Delta log are counted.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from typing import NamedTuple

import pyarrow as pa
import pyarrow.compute as pc
from deltalake import DeltaTable

from bench.fleet import messages, template_rows
from bench.ingest import compact, process, recent_start, records, writer_for
from fleetmeter.schemas.warehouse import DEVICE_1H, JOB_DEVICES, SAMPLES, UTIL_1D, UTIL_1H, UTIL_1M, table_uri

#: The tables measured, in the order of the figures.
MEASURED = (SAMPLES.name, UTIL_1M.name, UTIL_1H.name, UTIL_1D.name, DEVICE_1H.name, JOB_DEVICES.name)


class Stored(NamedTuple):
    files: int
    rows: int
    bytes: int


def stored(root: str, table: str) -> Stored:
    """The files, rows and bytes of ``table``'s current version, from its Delta log's add actions."""
    actions = pa.table(DeltaTable(table_uri(root, table)).get_add_actions(flatten=True))
    return Stored(actions.num_rows, pc.sum(actions["num_records"]).as_py() or 0,
                  pc.sum(actions["size_bytes"]).as_py() or 0)


@dataclass(frozen=True)
class Footprint:
    devices: int
    samples: int
    bytes_by_table: dict[str, int]

    def per_sample(self, table: str) -> float:
        return self.bytes_by_table[table] / self.samples


def footprint(nodes: int, hours: float) -> Footprint:
    rows = template_rows(int(hours * 360), 10.0, recent_start(hours + 1), nodes=nodes)
    with tempfile.TemporaryDirectory() as root:
        compact(process(records(messages(rows, 1)), writer_for(root, rows.height)))
        sizes = {table: stored(root, table).bytes for table in MEASURED}
    return Footprint(nodes * 8, rows.height, sizes)

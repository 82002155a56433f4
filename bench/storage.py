"""Storage: bytes per device-sample in ``samples/`` and in each rollup table, after compaction.

Measured on a fleet simulated device by device (no copies: copied readings would compress better than
real ones), pushed through the worker's processing path into a fresh warehouse.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

from bench.fleet import messages, template_rows
from bench.ingest import compact, process, recent_start, records
from fleetmeter.pipeline.warehouse import layout
from fleetmeter.pipeline.warehouse.manifest import live_tables
from fleetmeter.pipeline.warehouse.storage import Storage


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
        compact(process(records(messages(rows, 1)), root, rows.height))
        storage = Storage(root)
        live = live_tables(storage, layout.TABLES)
        sizes = {table: sum(storage.fs.get_file_info(storage.full_path(path)).size for path in paths)
                 for table, paths in live.items() if table != layout.QUARANTINE}
    return Footprint(nodes * 8, rows.height, sizes)

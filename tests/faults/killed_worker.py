"""``fleetmeter pipeline run`` that SIGKILLs itself at a chosen point: ``FAULT_KILL_AT=<point>:<n>`` kills it at
the n-th time it reaches the point (counting from 1).

Points (each inside a flush unless it says otherwise):
- ``data_write``: writing a data file, half of it on disk under its temporary name;
- ``record_write``: about to write the commit record, every data file of the commit written;
- ``record_written``: the commit record written, the replaced files not yet deleted;
- ``compaction_write`` and ``compaction_record``: the same two points inside a compaction;
- ``rebalance_record``: about to write the commit record of the flush a rebalance asks for.

Run as ``python -m tests.faults.killed_worker --bootstrap-servers ...`` (the flags of ``pipeline run``).
"""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Callable
from typing import Any

from fleetmeter.pipeline import partition
from fleetmeter.pipeline.cli import app
from fleetmeter.pipeline.partition import PartitionWriter
from fleetmeter.pipeline.warehouse import manifest
from fleetmeter.pipeline.warehouse.storage import TEMPORARY_SUFFIX, Storage
from fleetmeter.pipeline.worker import PipelineWorker

_point, _, _nth = os.environ["FAULT_KILL_AT"].partition(":")
_reached: Counter[str] = Counter()
_inside: set[str] = set()


def _arrive(point: str) -> bool:
    _reached[point] += 1
    return point == _point and _reached[point] == int(_nth)


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _context() -> str:
    return "compaction" if "compaction" in _inside else "rebalance" if "rebalance" in _inside else "flush"


def _within(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        _inside.add(name)
        try:
            return method(*args, **kwargs)
        finally:
            _inside.discard(name)
    return wrapped


_write_bytes = Storage.write_bytes
_save_state = manifest.save_state


def write_bytes(self: Storage, path: str, data: bytes | Any) -> None:
    if path.endswith(".parquet") and _arrive({"compaction": "compaction_write"}.get(_context(), "data_write")):
        directory, _, name = self.full_path(path).rpartition("/")
        self.fs.create_dir(directory, recursive=True)
        with self.fs.open_output_stream(f"{directory}/.{name}.killed{TEMPORARY_SUFFIX}") as stream:
            stream.write(bytes(data)[: len(data) // 2])
        _die()
    _write_bytes(self, path, data)


def save_state(storage: Storage, state: manifest.PartitionState) -> None:
    context = _context()
    if _arrive({"compaction": "compaction_record", "rebalance": "rebalance_record"}.get(context, "record_write")):
        _die()
    _save_state(storage, state)
    if context == "flush" and _arrive("record_written"):
        _die()


Storage.write_bytes = write_bytes  # type: ignore[method-assign]
manifest.save_state = partition.save_state = save_state  # partition imports it by name
PartitionWriter._compact = _within("compaction", PartitionWriter._compact)  # type: ignore[method-assign]
PipelineWorker.revoked = _within("rebalance", PipelineWorker.revoked)  # type: ignore[method-assign]

if __name__ == "__main__":
    app()

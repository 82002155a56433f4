"""``fleetmeter pipeline run`` that SIGKILLs itself at a chosen point: ``FAULT_KILL_AT=<point>:<n>`` kills it at
the n-th time it reaches the point (counting from 1).

Points:
- ``table_committed``: inside a flush, right after one table's Delta commit (the n-th such commit), the
  flush's other tables not yet committed: the crash between two tables' commits;
- ``compaction_replace`` and ``compaction_replaced``: inside a compaction, just before and just after the
  atomic replace of a partition;
- ``rebalance_commit``: about to make the first commit of the flush a rebalance asks for.

Run as ``python -m tests.faults.killed_worker --bootstrap-servers ...`` (the flags of ``pipeline run``).
"""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

from fleetmeter.pipeline.cli import app
from fleetmeter.pipeline.warehouse.delta import DeltaWarehouse
from fleetmeter.pipeline.worker import PipelineWorker

_point, _, _nth = os.environ["FAULT_KILL_AT"].partition(":")
_reached: Counter[str] = Counter()
_inside: set[str] = set()


def _arrive(point: str) -> None:
    _reached[point] += 1
    if point == _point and _reached[point] == int(_nth):
        os.kill(os.getpid(), signal.SIGKILL)


def _within(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        _inside.add(name)
        try:
            return method(*args, **kwargs)
        finally:
            _inside.discard(name)
    return wrapped


_append = DeltaWarehouse.append
_replace = DeltaWarehouse.replace


def append(self: DeltaWarehouse, *args: Any) -> None:
    if "rebalance" in _inside:
        _arrive("rebalance_commit")
    _append(self, *args)
    _arrive("table_committed")


def replace(self: DeltaWarehouse, *args: Any) -> None:
    _arrive("compaction_replace")
    _replace(self, *args)
    _arrive("compaction_replaced")


DeltaWarehouse.append = append  # type: ignore[method-assign]
DeltaWarehouse.replace = replace  # type: ignore[method-assign]
PipelineWorker.revoked = _within("rebalance", PipelineWorker.revoked)  # type: ignore[method-assign]

if __name__ == "__main__":
    app(["run", *sys.argv[1:]])

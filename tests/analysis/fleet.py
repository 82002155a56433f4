"""A generated warehouse for the analyst surface, and its figures computed independently in plain Python.

The fleet: simulated collectors (4 nodes x 4 GPUs, one scrape a minute for 5 hours across a UTC midnight,
a failing GPU) plus a MIG-mode GPU with two MIG instances, through the real broker and pipeline. The
expected figures below read the topic's rows, not the warehouse, and share no code with the views.
"""

from __future__ import annotations

import fnmatch
import math
from collections import defaultdict
from collections.abc import Callable, Hashable
from datetime import UTC, datetime, timedelta
from typing import Any

from fleetmeter.schemas import wire
from fleetmeter.schemas.sample_v1 import rows_to_batch

Row = dict[str, Any]

PRICES = [
    {"model": "*", "per_device_hour": 1.0, "per_kwh": 0.2},
    {"model": "NVIDIA H100*", "per_device_hour": 3.0},
    {"model": "* MIG 1g.10gb", "per_device_hour": 0.5},
]
GPU_MODEL = "NVIDIA H100 80GB HBM3"
MIG_MODEL = f"{GPU_MODEL} MIG 1g.10gb"


def start_of_fleet() -> datetime:
    """Two hours before the midnight two days ago: the data crosses a UTC day boundary and is never in the future."""
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=2, hours=2)


def mig_messages(start: datetime, intervals: int) -> list[tuple[bytes, bytes]]:
    """A GPU in MIG mode (board readings, no capacity) and its two instances, one a tenant's, one free."""
    rows = []
    for i in range(intervals):
        ts = int(start.timestamp() * 1000) + i * 60_000
        common = {"ts": ts, "interval_s": 60.0, "cluster": "test", "node": "mig-node", "device_index": 0,
                  "vendor": "nvidia", "seq": i + 1, "util_compute": None, "xid_errors": []}
        rows += [
            common | {"device_uuid": "GPU-mig-parent", "device_kind": "gpu", "model": GPU_MODEL,
                      "tenant": "unallocated", "energy_j": 60.0 * 250, "power_w": 250.0, "temp_c": 50.0,
                      "extras": [("mig.enabled", 1.0)]},
            common | {"device_uuid": "MIG-a", "device_kind": "mig", "parent_uuid": "GPU-mig-parent",
                      "model": MIG_MODEL, "tenant": "research", "job_id": "mig-job", "sm_active": 0.5},
            common | {"device_uuid": "MIG-b", "device_kind": "mig", "parent_uuid": "GPU-mig-parent",
                      "model": MIG_MODEL, "tenant": "unallocated", "sm_active": 0.0},
        ]
    return [(b"mig-node", wire.encode(rows_to_batch(rows)))]


def price_of(model: str) -> tuple[float | None, float | None]:
    """(per device-hour, per kWh) of ``model``: each from the longest matching pattern that sets it."""
    matching = sorted((p for p in PRICES if fnmatch.fnmatchcase(model, str(p["model"]))),
                      key=lambda p: len(str(p["model"])), reverse=True)
    per_hour = next((p["per_device_hour"] for p in matching), None)
    per_kwh = next((p["per_kwh"] for p in matching if p.get("per_kwh") is not None), None)
    return per_hour, per_kwh  # type: ignore[return-value]


def capacity_s(row: Row) -> float:
    return 0.0 if dict(row["extras"] or []).get("mig.enabled", 0) > 0 else float(row["interval_s"])


def floor(ts_ms: int, width: str) -> datetime:
    moment = datetime.fromtimestamp(ts_ms / 1000, tz=UTC)
    moment = moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0) if width == "day" else moment


class Totals:
    """Sums over sample rows, as the queries define them."""

    def __init__(self, idle_threshold: float) -> None:
        self.idle_threshold = idle_threshold
        self.device_s = self.known_s = self.busy_s = self.idle_s = self.energy_j = 0.0
        self.cost = self.wasted_cost = self.energy_cost = 0.0
        self.devices: set[str] = set()

    def add(self, row: Row) -> None:
        seconds = capacity_s(row)
        per_hour, per_kwh = price_of(row["model"])
        util = row["util_compute"]
        self.device_s += seconds
        self.energy_j += row["energy_j"] or 0.0
        energy_cost = (row["energy_j"] or 0.0) / 3.6e6 * per_kwh if per_kwh is not None else 0.0
        self.energy_cost += energy_cost
        self.cost += seconds / 3600 * (per_hour or 0.0) + energy_cost
        self.devices.add(row["device_uuid"])
        if util is not None:
            self.known_s += seconds
            self.busy_s += util * seconds
            if util < self.idle_threshold:
                self.idle_s += seconds
                self.wasted_cost += seconds / 3600 * (per_hour or 0.0)

    @property
    def utilization(self) -> float | None:
        return self.busy_s / self.known_s if self.known_s else None


def group(rows: list[Row], key: Callable[[Row], Hashable], idle_threshold: float = 0.05,
          where: Callable[[Row], bool] = lambda row: True) -> dict[Any, Totals]:
    totals: dict[Any, Totals] = defaultdict(lambda: Totals(idle_threshold))
    for row in rows:
        if where(row):
            totals[key(row)].add(row)
    return dict(totals)


def approx_equal(actual: Any, expected: Any, rel: float = 1e-9) -> bool:
    if actual is None or expected is None:
        return actual is expected
    if isinstance(expected, float):
        return math.isclose(actual, expected, rel_tol=rel, abs_tol=1e-9)
    return bool(actual == expected)

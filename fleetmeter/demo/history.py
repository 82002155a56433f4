"""Weeks of fleet history for the demo and the planning tests, generated fast and stored through the file
import's path (validation, rollups, exactly-once commits): one row per device-hour.

Each tenant's demand (devices held) follows its own trend and weekly season: ``base x (1 + trend x weeks)
x (1 + season x weekday effect)``, plus noise, within its pool (a cluster's devices of one model); the devices
of a pool go to tenants in turn, the rest are unallocated. The numbers behind it are returned, so that a test
can check a forecast against the truth.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

from fleetmeter.pipeline.importing.runner import Batch
from fleetmeter.schemas.sample_v1 import columns_to_batch

#: Weekday effect, Monday first: work days busier than weekends.
WEEKDAY = (0.15, 0.2, 0.2, 0.15, 0.05, -0.35, -0.4)


@dataclass(frozen=True)
class Demand:
    tenant: str
    model: str
    base: float  # devices held on an average day at the start
    trend_per_week: float  # growth of the base per week (0.03: +3 % a week)
    season: float  # weight of the weekday effect
    utilization: float  # mean util_compute of its devices


@dataclass(frozen=True)
class Pool:
    cluster: str
    model: str
    devices: list[str]  # UUIDs
    nodes: list[str]  # one per device


def devices_held(demand: Demand, day: int, noise: float) -> float:
    """The tenant's devices on day ``day`` (0: the first) before noise and the pool's limit."""
    weekday = WEEKDAY[day % 7]
    return demand.base * (1 + demand.trend_per_week * day / 7) * (1 + demand.season * weekday) + noise


class History:
    """``days`` of hourly rows ending at ``end`` (an hour), the first day being a Monday."""

    def __init__(self, pools: list[Pool], demands: list[Demand], days: int, end: datetime, seed: int = 7) -> None:
        self.pools = pools
        self.demands = demands
        self.days = days
        start = end - timedelta(days=days)
        self.start = start - timedelta(days=start.weekday())  # whole weeks from a Monday: the weekday effect lines up
        self.end = end
        self.seed = seed

    @property
    def identity(self) -> str:
        return f"demo-history-{self.start:%Y%m%d%H}-{self.end:%Y%m%d%H}-{len(self.pools)}"

    def held(self) -> dict[tuple[str, str], list[int]]:
        """Per (tenant, model): the devices held on each day (what the rows carry, every hour of the day)."""
        total_days = (self.end - self.start).days
        rng = np.random.default_rng(self.seed)  # the same numbers at every call
        held: dict[tuple[str, str], list[int]] = {}
        for pool in self.pools:
            left = [len(pool.devices)] * total_days
            for demand in (d for d in self.demands if d.model == pool.model):
                wanted = [max(0, round(devices_held(demand, day, float(rng.normal(0, demand.base * 0.03)))))
                          for day in range(total_days)]
                held[demand.tenant, pool.model] = [min(want, free) for want, free in zip(wanted, left, strict=True)]
                left = [free - taken for free, taken in zip(left, held[demand.tenant, pool.model], strict=True)]
        return held

    def batches(self, first: int) -> Iterator[Batch]:
        """One batch per day and pool, in the same order on every run (the numbers are seeded)."""
        held = self.held()
        number = 0
        for day in range((self.end - self.start).days):
            for pool in self.pools:
                if number >= first:
                    yield Batch(self._day(pool, day, held))
                number += 1

    def _day(self, pool: Pool, day: int, held: dict[tuple[str, str], list[int]]) -> pa.RecordBatch:
        owners: list[tuple[str | None, str | None, float]] = []
        for demand in (d for d in self.demands if d.model == pool.model):
            job = f"{demand.tenant}-w{day // 7:02d}"
            owners += [(demand.tenant, job, demand.utilization)] * held[demand.tenant, pool.model][day]
        owners += [(None, None, 0.0)] * (len(pool.devices) - len(owners))
        hours, count = 24, len(pool.devices)
        rng = np.random.default_rng([day, len(pool.devices)])
        util = np.clip(np.array([[u for _, _, u in owners]] * hours)
                       + rng.normal(0, 0.08, (hours, count)) * (np.array([u for _, _, u in owners]) > 0), 0, 1)
        power = 90 + 600 * util
        start_ms = int((self.start + timedelta(days=day)).timestamp() * 1000)
        columns = {
            "ts": np.repeat(start_ms + np.arange(hours) * 3_600_000, count),
            "interval_s": np.full(hours * count, 3600.0),
            "cluster": [pool.cluster] * (hours * count),
            "node": pool.nodes * hours,
            "device_uuid": pool.devices * hours,
            "device_index": [i % 8 for i in range(count)] * hours,
            "device_kind": ["gpu"] * (hours * count),
            "vendor": ["nvidia"] * (hours * count),
            "model": [pool.model] * (hours * count),
            "tenant": [tenant or "unallocated" for tenant, _, _ in owners] * hours,
            "job_id": [job for _, job, _ in owners] * hours,
            "util_compute": util.ravel(),
            "sm_active": (util * 0.6).ravel(),
            "power_w": power.ravel(),
            "energy_j": (power * 3600).ravel(),
            "mem_total_bytes": np.full(hours * count, 80 * 2**30),
            "seq": np.repeat(day * 24 + np.arange(hours), count),
        }
        return columns_to_batch(columns, hours * count)


def whole_hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


HISTORY_CLUSTER = "east"
_H100, _A100 = "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB"


def demo_history(end: datetime) -> History:
    """The demo's second cluster: 32 H100s and 16 A100s, nine weeks of four tenants growing at their own pace.
    Its H100 pool runs short within the forecast horizon; its A100 pool does not."""
    h100 = Pool(HISTORY_CLUSTER, _H100, [f"GPU-east-h{i:02d}" for i in range(32)],
                [f"east-h100-{i // 8}" for i in range(32)])
    a100 = Pool(HISTORY_CLUSTER, _A100, [f"GPU-east-a{i:02d}" for i in range(16)],
                [f"east-a100-{i // 8}" for i in range(16)])
    demands = [Demand("research", _H100, 9, 0.05, 0.4, 0.55), Demand("search-ranking", _H100, 7, 0.03, 0.2, 0.75),
               Demand("vision", _H100, 4, 0.04, 0.5, 0.4), Demand("speech", _A100, 6, 0.02, 0.4, 0.6)]
    return History([h100, a100], demands, 63, end)

"""A fleet of jobs, hour by hour, with anomalies planted on purpose and the list of them (the ground truth); and
how the anomalies a run found score against that list. What ``fleetmeter anomalies`` is evaluated on
(tests/anomalies/test_evaluation.py, ``./dev bench``) and what the demo shows.

The clean fleet: pools of 8-GPU nodes (three quarters H100, a quarter A100), each node a tenant's or a spare.
A tenant's nodes are cut into groups of 4, 8, 16 or 32 GPUs that run jobs back to back (6 to 96 hours, log-
uniform) with gaps of up to two hours between them; a third of the groups start no job on a weekend. A job runs
at its own level of utilization (0.35-0.95) with its own hourly noise shared by its devices (0.01-0.05) and each
device's own (0.03); its first hour at half the level (loading); one job in five evaluates for an hour every 6-12
hours, at half the level. SM activity is 0.5-0.8 of utilization, per job, each device a little off (1.5 %; one
in fifty 10 % slower, a mild and normal spread). Temperature is 30 C + 45 C x utilization, plus the node's inlet
(2 C; one node in thirty 5 C warmer, a hot aisle) and the device's own offset (1.5 C), plus 1 C of hourly noise.
One XID event per 5,000 device-hours, at random. Spare nodes and gaps are unallocated and idle.

Planted, ``plant`` of each kind, at random but seeded:
- ``idle_allocation``: a job of 10 hours or more idles (utilization 0-0.02) for 3 to 10 hours, maybe to its end;
- ``straggler``: one device of a job of 8 GPUs or more runs at 0.3-0.6 of its speed for the whole job;
- ``regression``: a job of 14 hours or more at a level of 0.6 or more loses 0.25-0.45 of it, from an hour at
  least 5 from either end to its end;
- ``sick_hardware``: a device, from a day on, in turn: 14-22 C hotter for 2-4 days; held down (``hw_slowdown``)
  35-70 % of its hours for 1-3 days; 4-8 XID events in a day; 1-2 uncorrectable ECC errors in a day;
- ``spike``: a tenant runs 60 % more GPUs of a pool than it holds for one whole weekday (day 8 or later), on
  spare nodes; a tenant's spikes a week apart or more, and not on the same weekday within four weeks. (On a
  weekend, when a third of its groups rest, that is less than a weekday's use: found against the same weekday
  once three weeks are stored, or against a forecast; tests/anomalies/test_anomalies.py has that case.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pyarrow as pa

from fleetmeter.anomalies.detectors import KINDS
from fleetmeter.pipeline.importing.runner import Batch
from fleetmeter.schemas.sample_v1 import columns_to_batch

MODELS = ("NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB")
PER_NODE = 8
_MEMORY = 80 * 2**30
_SICK_VARIANTS = ("hot", "throttled", "xid", "ecc")


@dataclass(frozen=True)
class Planted:
    """One planted anomaly: its kind, whom it concerns ("" where that does not apply) and when."""

    kind: str
    cluster: str
    tenant: str
    job_id: str
    device_uuid: str
    model: str
    start: datetime
    end: datetime
    detail: str


@dataclass
class _Job:
    tenant: str
    job_id: str
    devices: np.ndarray  # device indexes
    start: int  # hours since the fleet's start
    end: int
    level: float
    sm_ratio: float
    noise: float
    evaluates_every: int  # hours; 0: never


@dataclass
class _Effect:
    """A change to some devices' readings over some hours: what planting does."""

    devices: np.ndarray
    start: int
    end: int
    util_scale: float = 1.0
    util_drop: float = 0.0
    idle: bool = False
    temp_rise: float = 0.0
    throttled_share: float = 0.0
    xid_events: int = 0
    ecc_uncorrected: int = 0


@dataclass
class _Plan:
    jobs: list[_Job] = field(default_factory=list)
    effects: list[_Effect] = field(default_factory=list)
    truth: list[Planted] = field(default_factory=list)


class PlantedFleet:
    """``nodes`` nodes x 8 GPUs for ``days`` UTC days ending at the midnight before ``end``, ``plant`` anomalies of
    each kind."""

    def __init__(self, cluster: str, nodes: int, days: int, end: datetime, plant: int, seed: int = 1,
                 tenants: int = 8, spare_share: float = 0.15) -> None:
        self.cluster, self.nodes, self.days, self.plant, self.seed = cluster, nodes, days, plant, seed
        self.start = end.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days)
        self.devices = nodes * PER_NODE
        self.hours = days * 24
        self.node_names = [f"{cluster}-n{node:04d}" for node in range(nodes)]
        self.uuids = [f"GPU-{cluster}-{node:04d}-{index}" for node in range(nodes) for index in range(PER_NODE)]
        h100_nodes = math.ceil(nodes * 3 / 4)
        self.model_of_node = np.array([0] * h100_nodes + [1] * (nodes - h100_nodes))
        rng = np.random.default_rng([seed, 0])
        self.node_temp = rng.normal(0, 2.0, nodes) + 5.0 * (rng.random(nodes) < 1 / 30)
        self.device_temp = rng.normal(0, 1.5, self.devices)
        self.device_sm = rng.normal(0, 0.015, self.devices) - 0.1 * (rng.random(self.devices) < 1 / 50)
        self.tenants = [f"team-{chr(ord('a') + t)}" for t in range(tenants)]
        plan = _schedule(self, rng, spare_share)
        self.jobs, self.effects, self.truth = plan.jobs, plan.effects, plan.truth
        self.owner = np.full((self.hours, self.devices), -1, dtype=np.int32)  # the job each device-hour runs
        for number, job in enumerate(self.jobs):
            self.owner[job.start:job.end, job.devices] = number

    @property
    def identity(self) -> str:
        return f"planted-{self.cluster}-{self.nodes}x{self.days}d-{self.plant}-{self.seed}-{self.start:%Y%m%d%H}"

    @property
    def device_days(self) -> int:
        return self.devices * self.days

    def batches(self, first: int) -> Iterator[Batch]:
        """One batch per day, the same on every run (seeded per day)."""
        for day in range(first, self.days):
            yield Batch(self._day(day))

    def _day(self, day: int) -> pa.RecordBatch:
        hours = slice(day * 24, day * 24 + 24)
        owner = self.owner[hours]
        allocated = owner >= 0
        job = np.where(allocated, owner, 0)
        level = np.array([j.level for j in self.jobs])[job]
        ratio = np.array([j.sm_ratio for j in self.jobs])[job]
        noise = np.array([j.noise for j in self.jobs])[job]
        starts = np.array([j.start for j in self.jobs])[job]
        period = np.array([j.evaluates_every or 10**6 for j in self.jobs])[job]
        rng = np.random.default_rng([self.seed, 1, day])
        shape = owner.shape
        hour_of = np.arange(day * 24, day * 24 + 24)[:, None]
        shared = np.random.default_rng([self.seed, 2, day]).normal(0, 1, (24, len(self.jobs)))  # per job and hour
        slower = (hour_of == starts) | ((hour_of - starts) % period == period - 1)  # loading, evaluating
        util = (level * np.where(slower, 0.5, 1.0) + noise * np.take_along_axis(shared, job, axis=1)
                + rng.normal(0, 0.03, shape))
        temp_rise = np.zeros(shape)
        throttled = np.zeros(shape, dtype=bool)
        xid = np.zeros(shape, dtype=np.int64)
        ecc = np.zeros(shape, dtype=np.int64)
        scale = np.ones(shape)
        for effect in self.effects:
            first, last = max(effect.start, day * 24), min(effect.end, day * 24 + 24)
            if first >= last:
                continue
            rows, cols = slice(first - day * 24, last - day * 24), effect.devices
            if effect.idle:
                util[rows, cols] = rng.uniform(0, 0.02, (last - first, len(cols)))
            util[rows, cols] -= effect.util_drop
            scale[rows, cols] *= effect.util_scale
            temp_rise[rows, cols] += effect.temp_rise
            if effect.throttled_share:
                throttled[rows, cols] |= rng.random((last - first, len(cols))) < effect.throttled_share
            for events, target in ((effect.xid_events, xid), (effect.ecc_uncorrected, ecc)):
                for _ in range(events):  # spread over the effect's hours in this day
                    target[rng.integers(first, last) - day * 24, cols] += 1
        util = np.where(allocated, np.clip(util * scale, 0, 1), 0.0)
        sm = np.clip(util * ratio * (1 + self.device_sm) + rng.normal(0, 0.01, shape), 0, 1) * allocated
        node = np.repeat(np.arange(self.nodes), PER_NODE)
        temp = 30 + 45 * util + self.node_temp[node] + self.device_temp + temp_rise + rng.normal(0, 1.0, shape)
        xid += rng.random(shape) < 1 / 5000
        power = 90 + 600 * util
        count = shape[0] * shape[1]
        start_ms = int((self.start + timedelta(days=day)).timestamp() * 1000)
        tenants = np.array([j.tenant for j in self.jobs] + ["unallocated"])
        job_ids = np.array([j.job_id for j in self.jobs] + [None], dtype=object)
        owners = np.where(allocated, owner, len(self.jobs)).ravel()
        columns = {
            "ts": np.repeat(start_ms + np.arange(24) * 3_600_000, self.devices),
            "interval_s": np.full(count, 3600.0),
            "cluster": [self.cluster] * count,
            "node": [self.node_names[n] for n in node] * 24,
            "device_uuid": self.uuids * 24,
            "device_index": np.tile(np.arange(self.devices) % PER_NODE, 24),
            "device_kind": ["gpu"] * count,
            "vendor": ["nvidia"] * count,
            "model": [MODELS[m] for m in self.model_of_node[node]] * 24,
            "tenant": tenants[owners],
            "job_id": job_ids[owners],
            "util_compute": util.ravel(),
            "sm_active": sm.ravel(),
            "power_w": power.ravel(),
            "energy_j": (power * 3600).ravel(),
            "temp_c": temp.ravel(),
            "throttle_reasons": [["hw_slowdown"] if held else [] for held in throttled.ravel()],
            "xid_errors": [[79] * n if n else None for n in xid.ravel()],
            "ecc_uncorrected": ecc.ravel(),
            "mem_used_bytes": (np.where(allocated, 0.3 + 0.6 * level, 0.01) * _MEMORY).astype(np.int64).ravel(),
            "mem_total_bytes": np.full(count, _MEMORY),
            "seq": np.repeat(day * 24 + np.arange(24), self.devices),
        }
        return columns_to_batch(columns, count)


def _schedule(fleet: PlantedFleet, rng: np.random.Generator, spare_share: float) -> _Plan:
    """Jobs back to back on each tenant's groups of devices, then the planted anomalies."""
    plan = _Plan()
    spares: dict[int, list[int]] = {}  # per model: its spare nodes
    held: dict[tuple[str, int], int] = {}  # per tenant and model: its devices
    for model in range(len(MODELS)):
        nodes = [int(n) for n in np.flatnonzero(fleet.model_of_node == model)]
        spare_count = round(len(nodes) * spare_share)
        spares[model] = nodes[len(nodes) - spare_count:]
        groups = _groups(nodes[:len(nodes) - spare_count], rng)
        for number, devices in enumerate(groups):
            tenant = fleet.tenants[number % len(fleet.tenants)]
            held[tenant, model] = held.get((tenant, model), 0) + len(devices)
            hour = int(rng.integers(0, 3))
            weekdays_only = rng.random() < 1 / 3
            while hour < fleet.hours:
                if weekdays_only and (weekday := (fleet.start + timedelta(hours=hour)).weekday()) >= 5:
                    hour = (hour // 24 + 7 - weekday) * 24 + int(rng.integers(0, 3))  # Monday morning
                    continue
                length = round(math.exp(rng.uniform(math.log(6), math.log(96))))
                plan.jobs.append(_job(tenant, f"{tenant}-{len(plan.jobs):06d}", devices, hour,
                                      min(hour + length, fleet.hours), rng))
                hour += length + int(rng.integers(0, 3))
    ordinary = list(plan.jobs)
    _plant_spikes(fleet, plan, held, spares, rng)
    chosen: set[int] = set()
    for kind, eligible, effect in _IN_JOBS:
        candidates = [n for n, job in enumerate(ordinary) if eligible(job) and n not in chosen]
        for number in rng.choice(candidates, size=min(fleet.plant, len(candidates)), replace=False):
            chosen.add(int(number))
            job = ordinary[int(number)]
            planted, device = effect(job, rng)
            plan.effects.append(planted)
            plan.truth.append(Planted(kind, fleet.cluster, job.tenant, job.job_id,
                                      fleet.uuids[device] if device is not None else "",
                                      MODELS[fleet.model_of_node[job.devices[0] // PER_NODE]],
                                      fleet.start + timedelta(hours=planted.start),
                                      fleet.start + timedelta(hours=planted.end), ""))
    for number, device in enumerate(rng.choice(fleet.devices, size=min(fleet.plant, fleet.devices), replace=False)):
        variant = _SICK_VARIANTS[number % len(_SICK_VARIANTS)]
        planted = _sick(variant, int(device), fleet.days, rng)
        plan.effects.append(planted)
        plan.truth.append(Planted("sick_hardware", fleet.cluster, "", "", fleet.uuids[int(device)],
                                  MODELS[fleet.model_of_node[int(device) // PER_NODE]],
                                  fleet.start + timedelta(hours=planted.start),
                                  fleet.start + timedelta(hours=planted.end), variant))
    return plan


_Planter = Callable[[_Job, np.random.Generator], tuple[_Effect, int | None]]


def _groups(nodes: list[int], rng: np.random.Generator) -> list[np.ndarray]:
    """A pool's tenant nodes cut into groups of devices that run jobs together: half a node, one, two or four."""
    groups: list[np.ndarray] = []
    at = 0
    while at < len(nodes):
        size = float(rng.choice([0.5, 1, 1, 2, 4]))
        if size == 0.5:
            base = nodes[at] * PER_NODE
            groups += [np.arange(base, base + 4), np.arange(base + 4, base + PER_NODE)]
            at += 1
            continue
        taken = nodes[at:at + int(size)]
        groups.append(np.concatenate([np.arange(n * PER_NODE, (n + 1) * PER_NODE) for n in taken]))
        at += len(taken)
    return groups


def _job(tenant: str, job_id: str, devices: np.ndarray, start: int, end: int, rng: np.random.Generator) -> _Job:
    return _Job(tenant, job_id, devices, start, end, level=float(rng.uniform(0.35, 0.95)),
                sm_ratio=float(rng.uniform(0.5, 0.8)), noise=float(rng.uniform(0.01, 0.05)),
                evaluates_every=int(rng.integers(6, 13)) if rng.random() < 0.2 else 0)


def _plant_spikes(fleet: PlantedFleet, plan: _Plan, held: dict[tuple[str, int], int], spares: dict[int, list[int]],
                  rng: np.random.Generator) -> None:
    """A tenant's day on 60 % more GPUs of a pool than it holds, on spare nodes (each spare node once a day)."""
    free = {(model, day): list(nodes) for model, nodes in spares.items() for day in range(fleet.days)}
    options = [(tenant, model, day) for (tenant, model), devices in held.items() if devices
               for day in range(8, fleet.days) if (fleet.start + timedelta(days=day)).weekday() < 5]
    planted = 0
    for index in rng.permutation(len(options)):
        if planted >= fleet.plant:
            return
        tenant, model, day = options[int(index)]
        needed = math.ceil(0.6 * held[tenant, model] / PER_NODE)
        if any(p.kind == "spike" and (p.tenant, p.model) == (tenant, MODELS[model])
               and ((gap := abs((p.start - fleet.start).days - day)) < 7 or (gap < 28 and gap % 7 == 0))
               for p in plan.truth) or len(free[model, day]) < needed:
            continue  # a week apart, never the same weekday within four weeks (no weekly rhythm); spares enough
        nodes, free[model, day] = free[model, day][:needed], free[model, day][needed:]
        devices = np.concatenate([np.arange(n * PER_NODE, (n + 1) * PER_NODE) for n in nodes])
        plan.jobs.append(_job(tenant, f"{tenant}-burst-{len(plan.jobs):06d}", devices, day * 24, day * 24 + 24, rng))
        start = fleet.start + timedelta(days=day)
        plan.truth.append(Planted("spike", fleet.cluster, tenant, "", "", MODELS[model], start,
                                  start + timedelta(days=1), f"+{len(devices)} GPUs on {held[tenant, model]}"))
        planted += 1


def _idle(job: _Job, rng: np.random.Generator) -> tuple[_Effect, int | None]:
    length = int(rng.integers(3, min(10, job.end - job.start - 2) + 1))
    start = job.start + int(rng.integers(1, job.end - job.start - length + 1))
    return _Effect(job.devices, start, start + length, idle=True), None


def _straggler(job: _Job, rng: np.random.Generator) -> tuple[_Effect, int | None]:
    device = int(rng.choice(job.devices))
    return _Effect(np.array([device]), job.start, job.end, util_scale=float(rng.uniform(0.3, 0.6))), device


def _regression(job: _Job, rng: np.random.Generator) -> tuple[_Effect, int | None]:
    cut = job.start + int(rng.integers(5, job.end - job.start - 5 + 1))
    drop = float(rng.uniform(0.25, min(0.45, job.level - 0.15)))
    return _Effect(job.devices, cut, job.end, util_drop=drop), None


#: The kinds planted in a job: which jobs may have one, and what planting does.
_IN_JOBS: tuple[tuple[str, Callable[[_Job], bool], _Planter], ...] = (
    ("idle_allocation", lambda job: job.end - job.start >= 10, _idle),
    ("straggler", lambda job: len(job.devices) >= 8 and job.end - job.start >= 6, _straggler),
    ("regression", lambda job: job.end - job.start >= 14 and job.level >= 0.6, _regression),
)


def _sick(variant: str, device: int, days: int, rng: np.random.Generator) -> _Effect:
    lasting = {"hot": int(rng.integers(2, 5)), "throttled": int(rng.integers(1, 4))}.get(variant, 1)
    day = int(rng.integers(1, max(days - lasting, 2)))
    effect = _Effect(np.array([device]), day * 24, (day + lasting) * 24)
    if variant == "hot":
        effect.temp_rise = float(rng.uniform(14, 22))
    elif variant == "throttled":
        effect.throttled_share = float(rng.uniform(0.35, 0.7))
    elif variant == "xid":
        effect.xid_events = int(rng.integers(4, 9))
    else:
        effect.ecc_uncorrected = int(rng.integers(1, 3))
    return effect


PLANTED_CLUSTER = "lab"


def demo_planted(end: datetime) -> PlantedFleet:
    """The demo's third cluster: 96 GPUs for two weeks, two anomalies of each kind planted on purpose."""
    return PlantedFleet(PLANTED_CLUSTER, nodes=12, days=14, end=end, plant=2, seed=3, tenants=4)


# -- scoring --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Score:
    kind: str
    planted: int
    found: int
    found_planted: int  # findings that are a planted anomaly
    planted_found: int  # planted anomalies that a finding is

    @property
    def precision(self) -> float | None:
        return self.found_planted / self.found if self.found else None

    @property
    def recall(self) -> float | None:
        return self.planted_found / self.planted if self.planted else None


#: What a finding and a planted anomaly must share, besides overlapping in time, per kind.
_SAME = {"idle_allocation": ("cluster", "tenant", "job_id"), "regression": ("cluster", "tenant", "job_id"),
         "straggler": ("cluster", "tenant", "job_id", "device_uuid"), "sick_hardware": ("cluster", "device_uuid"),
         "spike": ("cluster", "tenant", "model")}


def score(truth: list[Planted], anomalies: pl.DataFrame) -> dict[str, Score]:
    """Per kind: how many anomalies (rows of the anomalies table) are planted ones, and how many planted ones were
    found. A finding is a planted anomaly when they share the kind's entity and their spans overlap."""
    found = anomalies.with_columns(pl.coalesce("end", "seen_until").alias("until")).to_dicts()
    scores = {}
    for kind in KINDS:
        planted = [p for p in truth if p.kind == kind]
        findings = [f for f in found if f["kind"] == kind]
        matches = {(i, j) for i, finding in enumerate(findings) for j, p in enumerate(planted)
                   if all((finding[name] or "") == getattr(p, name) for name in _SAME[kind])
                   and finding["start"] < p.end and p.start < finding["until"]}
        scores[kind] = Score(kind, len(planted), len(findings), len({i for i, _ in matches}),
                             len({j for _, j in matches}))
    return scores

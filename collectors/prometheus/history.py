"""Sample rows from an exporter's series: the collector's own interval arithmetic over Prometheus's points.

Each mapped metric is read per step as the mean (gauges, rates) or the last value (levels, counters, codes)
of the samples in the step that ends at that point, so a point describes its step and nothing older: a
series that stops (a pod ended, a node went away, Prometheus marked it stale) has no points after its
last sample, where a plain range query would repeat that sample for five minutes.

The points of a device at one time are one :class:`DeviceReading`, and
:class:`~fleetmeter.collectors.intervals.IntervalBuilder` turns successive readings into rows exactly as it
does for a live collector: a row covers the time since the device's previous point, a first point (and the
first after a gap longer than the limit) only primes, counters become deltas with resets handled by
``counter_delta``, rates times the interval, and a device with several owners at once is split between them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pyarrow as pa

from fleetmeter.collectors.attribution import UNALLOCATED
from fleetmeter.collectors.attribution.sharing import Claim, Share, split
from fleetmeter.collectors.backends.nvml import throttle_names
from fleetmeter.collectors.intervals import IntervalBuilder
from fleetmeter.collectors.prometheus.api import Labels, Series
from fleetmeter.collectors.prometheus.mapping import Column, Kind, Mapping
from fleetmeter.collectors.readings import Counter, Device, DeviceReading, Owner
from fleetmeter.schemas.sample_v1 import rows_to_batch

_FLOAT_GAUGES = frozenset({"util_compute", "util_mem_bw", "sm_active", "tensor_active", "power_w", "temp_c",
                           "sm_clock_mhz"})
_INT_LIMIT = 2**62  # a level or code beyond any real value: not stored (validation would refuse it anyway)
_INT32 = 2**31


@dataclass(frozen=True)
class Fetched:
    """The series one source of a column answered for a chunk."""

    column: Column
    rank: int
    kind: Kind
    scale: float
    series: list[Series]


@dataclass
class Rejected:
    """Series that cannot become rows, counted by reason (``label_missing``, ``label_invalid``)."""

    reason: str
    detail: str
    series: int = 0
    points: int = 0


@dataclass
class ChunkRows:
    rows: pa.RecordBatch
    series: int
    rejected: dict[tuple[str, str], Rejected] = field(default_factory=dict)


@dataclass
class _Point:
    """A device at one time: each column's value from its best-ranked source, and who owned it."""

    values: dict[Column, tuple[int, Kind, float]] = field(default_factory=dict)
    owners: set[Owner] = field(default_factory=set)


class _Devices:
    """The device each series belongs to, from its labels, or the reason it belongs to none."""

    def __init__(self, mapping: Mapping, cluster: str) -> None:
        self.mapping = mapping
        self.cluster = cluster
        self.devices: dict[str, Device] = {}
        self.clusters: dict[str, str] = {}
        self.partitioned: set[str] = set()  # devices with partitions (MIG): their own rows say so

    def identify(self, labels: Labels) -> str | tuple[str, str]:
        """The device's UUID, or (reason, detail) when the labels cannot name one."""
        names = self.mapping.labels
        values = {}
        for role in ("node", "device", "index", "model"):
            value = labels.get(getattr(names, role), "")
            if not value:
                return "label_missing", getattr(names, role)
            values[role] = value
        try:
            index = int(values["index"])
        except ValueError:
            return "label_invalid", names.index
        if not -_INT32 <= index < _INT32:
            return "label_invalid", names.index
        instance = labels.get(names.instance, "") if names.instance else ""
        parent = values["device"]
        if instance in self.mapping.whole_device:
            uuid, kind, parent_uuid = parent, "gpu", None
        else:
            uuid, kind, parent_uuid = f"{parent}/{instance}", self.mapping.instance_kind, parent
            self.partitioned.add(parent)
        if uuid not in self.devices:
            self.devices[uuid] = Device(values["node"], uuid, index, kind, self.mapping.vendor, values["model"],
                                        parent_uuid)
            self.clusters[uuid] = labels.get(names.cluster, "") if names.cluster else ""
        return uuid

    def extras(self, uuid: str) -> dict[str, float]:
        device = self.devices[uuid]
        if device.parent_uuid is not None:
            instance = uuid.rpartition("/")[2]
            return {"mig.gpu_instance_id": float(instance)} if instance.isdigit() else {}
        return {"mig.enabled": 1.0} if uuid in self.partitioned else {}


def owner(mapping: Mapping, labels: Labels) -> Owner:
    """The series' owner by the mapping's rules (first rule with a non-empty value), else unallocated."""

    def first(rules: list[str]) -> str | None:
        for rule in rules:
            kind, _, name = rule.partition(":")
            value = labels.get(name if kind == "label" else kind, "")
            if value:
                return value
        return None

    tenant = first(mapping.tenant_from)
    return UNALLOCATED if tenant is None else Owner(tenant, first(mapping.job_from))


def chunk_rows(mapping: Mapping, cluster: str, step_s: float, gap_steps: int, rows_after_s: float,
               fetched: Iterable[Fetched]) -> ChunkRows:
    """The rows of the readings later than ``rows_after_s`` (the earlier points prime the devices' state)."""
    devices = _Devices(mapping, cluster)
    points: dict[int, dict[str, _Point]] = defaultdict(dict)
    rejected: dict[tuple[str, str], Rejected] = {}
    series_count = 0
    for answer in fetched:
        for series in answer.series:
            series_count += 1
            uuid = devices.identify(series.labels)
            if isinstance(uuid, tuple):
                reason, label = uuid
                entry = rejected.setdefault(uuid, Rejected(reason, f"series without a usable {label} label, "
                                                                   f"e.g. {_shown(series.labels)}"))
                entry.series += 1
                entry.points += sum(1 for t, _ in series.points if t > rows_after_s)
                continue
            series_owner = owner(mapping, series.labels)
            for t, value in series.points:
                point = points[round(t * 1000)].setdefault(uuid, _Point())
                point.owners.add(series_owner)
                best = point.values.get(answer.column)
                if best is None or answer.rank < best[0]:
                    point.values[answer.column] = (answer.rank, answer.kind, value * answer.scale)
    builder = IntervalBuilder(cluster, max_interval_s=step_s * gap_steps + 1e-3)
    last_xid: dict[str, int] = {}
    step_ms = round(step_s * 1000)
    rows: list[dict[str, Any]] = []
    for t_ms in sorted(points):
        readings = [_reading(devices, uuid, point, last_xid) for uuid, point in sorted(points[t_ms].items())]
        made = builder.rows(readings, t_ms, t_ms // step_ms, partial(_shares, points=points[t_ms]))
        if t_ms > rows_after_s * 1000:
            rows.extend(made)
    for row in rows:
        row["cluster"] = devices.clusters.get(row["device_uuid"]) or cluster
    return ChunkRows(rows_to_batch(rows), series_count, rejected)


def _shares(reading: DeviceReading, points: dict[str, _Point]) -> list[Share]:
    owners = points[reading.device.uuid].owners
    claims = [Claim(owner) for owner in sorted(owners, key=lambda o: (o.tenant, o.job_id or ""))]
    return split(reading, claims)


def _reading(devices: _Devices, uuid: str, point: _Point, last_xid: dict[str, int]) -> DeviceReading:
    reading = DeviceReading(devices.devices[uuid], extras=devices.extras(uuid))
    memory: dict[str, int] = {}
    for column, (_, kind, value) in point.values.items():
        if kind == "counter":
            reading.counters[column] = Counter(value)
        elif kind == "rate":
            reading.rates[column] = value
        elif kind == "last_xid":
            code = int(value) if 0 <= value < _INT32 else 0
            previous = last_xid.get(uuid)
            last_xid[uuid] = code
            reading.xid_errors = (code,) if previous is not None and code not in (0, previous) else ()
        elif kind == "throttle_mask":
            reading.throttle_reasons = throttle_names(int(value)) if 0 <= value < _INT_LIMIT else None
        elif column in _FLOAT_GAUGES:
            setattr(reading, column, value)
        elif math.fabs(value) < _INT_LIMIT:
            memory[column] = round(value)
    reading.mem_used_bytes = memory.get("mem_used_bytes")
    total = memory.get("mem_total_bytes")
    if total is None and "mem_used_bytes" in memory and "mem_free_bytes" in memory:
        total = memory["mem_used_bytes"] + memory["mem_free_bytes"] + memory.get("mem_reserved_bytes", 0)
    reading.mem_total_bytes = total
    return reading


def _shown(labels: Labels) -> str:
    """A series' labels for a quarantine detail: bounded, and without control characters."""
    text = "{" + ", ".join(f"{key}={value!r}" for key, value in sorted(labels.items())) + "}"
    return "".join(char if char.isprintable() else "?" for char in text[:300])

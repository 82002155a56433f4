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
#: A counter's value, or a rate per second, beyond any real device: unknown (a rate times an hour stays in int64).
_AMOUNT_LIMIT = {"counter": 2.0**62, "rate": 1e15}
#: Readings of a whole GPU, which dcgm-exporter repeats on each of its MIG instances' series.
BOARD_COLUMNS = frozenset({"power_w", "energy_j", "temp_c", "sm_clock_mhz", "throttle_reasons", "xid_errors",
                           "ecc_corrected", "ecc_uncorrected", "pcie_tx_bytes", "pcie_rx_bytes", "nvlink_tx_bytes",
                           "nvlink_rx_bytes"})


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
    """The device each series belongs to, from its labels, or the reason it belongs to none.

    Partitions: with ``partitions: mig`` a series with an instance label is a MIG instance ``<device>/<id>``
    of the board its device label names, and the board's own readings (power, energy, temperature, clocks,
    errors, links), which dcgm-exporter repeats on every instance's series, go to one row of the board, marked
    ``mig.enabled`` as the collector's is (its capacity is its instances'). With ``partitions: devices`` a device
    label seen with several instance values is that many devices ``<device>/<value>`` (AMD's compute partitions).
    """

    def __init__(self, mapping: Mapping, cluster: str, instances: dict[str, set[str]]) -> None:
        self.mapping = mapping
        self.cluster = cluster
        self.instances = instances  # device label value -> the instance values its series carry
        self.devices: dict[str, Device] = {}
        self.clusters: dict[str, str] = {}

    def identify(self, labels: Labels) -> Device | tuple[str, str]:
        """The series' device, or (reason, label) when its labels cannot name one."""
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
        board = values["device"]
        instance = labels.get(names.instance, "") if names.instance else ""
        uuid, kind, parent = board, "gpu", None
        if self.mapping.partitions == "mig" and instance:
            uuid, kind, parent = f"{board}/{instance}", "mig", board
            self._register(Device(values["node"], board, index, "gpu", self.mapping.vendor, values["model"]), labels)
        elif self.mapping.partitions == "devices" and len(self.instances.get(board, ())) > 1:
            uuid = f"{board}/{instance}"
        return self._register(Device(values["node"], uuid, index, kind, self.mapping.vendor, values["model"], parent),
                              labels)

    def _register(self, device: Device, labels: Labels) -> Device:
        known = self.devices.setdefault(device.uuid, device)
        if known is device:
            names = self.mapping.labels
            self.clusters[device.uuid] = labels.get(names.cluster, "") if names.cluster else ""
        return known

    def extras(self, device: Device) -> dict[str, float]:
        if device.kind == "mig":
            instance = device.uuid.rpartition("/")[2]
            return {"mig.gpu_instance_id": float(instance)} if instance.isdigit() else {}
        return {"mig.enabled": 1.0} if self.mapping.partitions == "mig" and any(
            other.parent_uuid == device.uuid for other in self.devices.values()) else {}


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
               fetched: list[Fetched]) -> ChunkRows:
    """The rows of the readings later than ``rows_after_s`` (the earlier points prime the devices' state)."""
    names = mapping.labels
    instances: dict[str, set[str]] = defaultdict(set)
    for answer in fetched:
        for series in answer.series:
            instances[series.labels.get(names.device, "")].add(series.labels.get(names.instance or "", ""))
    devices = _Devices(mapping, cluster, instances)
    points: dict[int, dict[str, _Point]] = defaultdict(dict)
    rejected: dict[tuple[str, str], Rejected] = {}
    series_count = 0
    for answer in fetched:
        for series in answer.series:
            series_count += 1
            device = devices.identify(series.labels)
            if isinstance(device, tuple):
                entry = rejected.setdefault(device, Rejected(device[0], f"series without a usable {device[1]} label, "
                                                                        f"e.g. {_shown(series.labels)}"))
                entry.series += 1
                entry.points += sum(1 for t, _ in series.points if t > rows_after_s)
                continue
            on_board = device.kind == "mig" and answer.column in BOARD_COLUMNS
            uuid = device.parent_uuid if on_board and device.parent_uuid else device.uuid
            series_owner = owner(mapping, series.labels)
            for t, value in series.points:
                point = points[round(t * 1000)].setdefault(uuid, _Point())
                if not on_board:
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
    """Each owner's share (equal: the exporter does not say how a shared device was used); a MIG board's row,
    which no pod owns, is unallocated."""
    owners = points[reading.device.uuid].owners
    if not owners:
        return [Share(UNALLOCATED)]
    return split(reading, [Claim(owner) for owner in sorted(owners, key=lambda o: (o.tenant, o.job_id or ""))])


def _reading(devices: _Devices, uuid: str, point: _Point, last_xid: dict[str, int]) -> DeviceReading:
    device = devices.devices[uuid]
    reading = DeviceReading(device, extras=devices.extras(device))
    memory: dict[str, int] = {}
    for column, (_, kind, value) in point.values.items():
        if kind in ("counter", "rate") and math.fabs(value) >= _AMOUNT_LIMIT[kind]:
            continue  # beyond any real counter or link: unknown, not a sum that overflows
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

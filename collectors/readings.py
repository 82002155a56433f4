"""What a backend hands to the collector: one device's readings at one scrape, in base units."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple


@dataclass(frozen=True, slots=True)
class Workload:
    """The Kubernetes container behind an owner's claim on a device (dcgm-exporter's pod labels)."""

    namespace: str
    pod: str
    container: str


@dataclass(frozen=True, slots=True)
class Owner:
    """Who a device's time is charged to; ``workload``, where known, is the container that holds the device
    (it names /metrics series, never a sample: the owner is tenant and job)."""

    tenant: str
    job_id: str | None = None
    workload: Workload | None = None


@dataclass(frozen=True, slots=True)
class ProcessUsage:
    """A compute process on a device. ``sm_util`` (0..1): its share of the SMs' time since the previous
    scrape, where the backend reports it per process (not a sample column: it decides shared devices' splits)."""

    pid: int
    used_memory_bytes: int | None
    sm_util: float | None = None


class Counter(NamedTuple):
    """A cumulative hardware counter reading, already in the unit of its sample column.

    ``wrap_at`` is the value at which the counter rolls over to zero, where its width is known.
    """

    value: float
    wrap_at: float | None = None


@dataclass(frozen=True, slots=True)
class Device:
    """What identifies a device; a MIG instance is its own device with its GPU as parent."""

    node: str
    uuid: str
    index: int
    kind: str
    vendor: str
    model: str
    parent_uuid: str | None = None
    pci_bus_id: str | None = None  # as the driver writes it, e.g. 00000000:1B:00.0 (a MIG instance: its GPU's)
    driver_version: str | None = None


@dataclass(slots=True)
class DeviceReading:
    """One device at one scrape. ``None`` means the device cannot report that reading.

    Gauges are the backend's best value for the interval since its previous read (NVML's sample buffer
    averages, GPM's two-sample metrics) or an instantaneous value where that is all the device offers.
    ``counters`` hold cumulative values keyed by the sample column they become a delta of;
    ``rates`` hold per-second rates for columns that have no counter on this device (the collector
    multiplies them by the interval). ``xid_errors`` are the events seen since the previous read.
    """

    device: Device
    util_compute: float | None = None
    util_mem_bw: float | None = None
    sm_active: float | None = None
    tensor_active: float | None = None
    mem_used_bytes: int | None = None
    mem_total_bytes: int | None = None
    power_w: float | None = None
    temp_c: float | None = None
    sm_clock_mhz: float | None = None
    throttle_reasons: tuple[str, ...] | None = None
    xid_errors: tuple[int, ...] | None = None
    processes: tuple[ProcessUsage, ...] | None = None
    counters: dict[str, Counter] = field(default_factory=dict)
    rates: dict[str, float] = field(default_factory=dict)
    extras: dict[str, float] = field(default_factory=dict)
    owners: tuple[Owner, ...] = ()  # the owners the backend itself knows (the simulator's scheduler)

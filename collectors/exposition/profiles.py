"""Metric naming profiles: fleetmeter's own names (base units), and dcgm-exporter's names, units and labels.

A profile is a table: each entry names a family and says how to compute its value from a series. A series is
one device's latest sample row; in the dcgm profile, one per pod holding the device (a time-sliced device has
several), each with its part of the device (``fraction``): a quantity that adds up (utilization, power, memory,
bytes per second, energy) is that part of the device's, so a sum over pods is the device's; a property of the
device (temperature, clocks, free memory, throttling) is the device's on every series. Entries whose value is
unknown for a device are left out.

The dcgm profile types its running totals as gauges: prometheus_client writes a counter's name with ``_total``
(in TYPE lines too), and dcgm-exporter's names have none. PromQL over them is unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from fleetmeter.collectors.backends.nvml import THROTTLE_REASONS
from fleetmeter.collectors.readings import Device, Workload

Row = dict[str, Any]
Totals = dict[str, float]


@dataclass(frozen=True)
class Series:
    """One series of a device: its latest row (the owner's), its pod (if known) and the pod's processes, its
    fraction of the device, its own running totals (its parts of the device's amounts) and the device's."""

    row: Row
    device: Device | None
    workload: Workload | None
    pids: frozenset[int]
    fraction: float
    totals: Totals
    device_totals: Totals


Value = Callable[[Series], float | None]

_THROTTLE_BITS = {name: bit for bit, name in THROTTLE_REASONS.items()}
_MIB = 1024**2
#: A MIG instance's name as NVML gives it: its GPU's name, then "MIG" and the profile (e.g. 1g.10gb).
_MIG_NAME = re.compile(r"^(?P<model>.*?) MIG (?P<profile>\S+)$")


@dataclass(frozen=True)
class Family:
    name: str
    documentation: str
    kind: Literal["gauge", "counter"]
    value: Value
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Profile:
    name: str
    label_names: tuple[str, ...]
    labels: Callable[[Row, Device | None, Workload | None], tuple[str, ...]]
    families: tuple[Family, ...]
    per_workload: bool  # a series per pod holding the device (else one per device)


def column(name: str, scale: float = 1.0, *, split: bool = False) -> Value:
    """A sample column; ``split``: the series' part of it."""

    def value(series: Series) -> float | None:
        raw = series.row.get(name)
        return None if raw is None else raw * scale * (series.fraction if split else 1.0)

    return value


def extra(key: str, scale: float = 1.0, *, split: bool = False, otherwise: str | None = None) -> Value:
    """A vendor extra (else the column ``otherwise``); ``split``: the series' part of it."""

    def value(series: Series) -> float | None:
        raw = dict(series.row.get("extras") or {}).get(key)
        if raw is None and otherwise is not None:
            raw = series.row.get(otherwise)
        return None if raw is None else raw * scale * (series.fraction if split else 1.0)

    return value


def total(name: str, scale: float = 1.0, *, device: bool = False) -> Value:
    """A running total: the series' own (its parts of the device's amounts), or the ``device``'s."""

    def value(series: Series) -> float | None:
        totals = series.device_totals if device else series.totals
        return None if name not in totals else totals[name] * scale

    return value


def per_second(name: str) -> Value:
    """The series' part of the device's amount over the interval, per second."""

    def value(series: Series) -> float | None:
        raw, share = series.row.get(name), series.row.get("share")
        if raw is None:
            return None
        device_amount: float = raw if share is None else (raw / share if share > 0 else 0.0)
        return device_amount * series.fraction / float(series.row["interval_s"])

    return value


def _fb_used_mib(series: Series) -> float | None:
    """On a shared device, the memory of the pod's own processes where the driver reports it (else the pod's
    fraction of the device's); on a device of its own, the device's."""
    if series.fraction < 1 and series.pids:
        used = [process["used_memory_bytes"] for process in series.row.get("processes") or ()
                if process["pid"] in series.pids]
        if used and None not in used:
            return float(sum(used)) / _MIB
    return column("mem_used_bytes", 1 / _MIB, split=True)(series)


def _fb_free_mib(series: Series) -> float | None:
    used, capacity = series.row.get("mem_used_bytes"), series.row.get("mem_total_bytes")
    return None if used is None or capacity is None else (capacity - used) / _MIB


def _throttle_mask(series: Series) -> float | None:
    reasons = series.row.get("throttle_reasons")
    return None if reasons is None else float(sum(_THROTTLE_BITS.get(r, 0) for r in reasons))


def _native_labels(row: Row, device: Device | None, workload: Workload | None) -> tuple[str, ...]:
    return (row["cluster"], row["node"], row["device_uuid"], str(row["device_index"]), row["device_kind"],
            row["vendor"], row["model"], row["tenant"], row["job_id"] or "")


def _dcgm_labels(row: Row, device: Device | None, workload: Workload | None) -> tuple[str, ...]:
    """dcgm-exporter's labels (a MIG instance is named by its GPU, its profile and instance id), then the pod
    (empty: Prometheus drops the label), then fleetmeter's tenant and job."""
    instance = dict(row.get("extras") or {}).get("mig.gpu_instance_id")
    mig = _MIG_NAME.match(row["model"]) if row["device_kind"] == "mig" else None
    index = row["device_index"]
    # a MIG instance is its GPU's UUID and its instance id; without the id, its own UUID tells it apart
    uuid = row["parent_uuid"] if mig and instance is not None and row["parent_uuid"] else row["device_uuid"]
    return (str(index), uuid, (device and device.pci_bus_id) or "",
            f"nvidia{index}" if row["vendor"] == "nvidia" else f"{row['device_kind']}{index}",
            mig["model"] if mig else row["model"], mig["profile"] if mig else "",
            "" if instance is None else str(int(instance)), row["node"], (device and device.driver_version) or "",
            *((workload.pod, workload.namespace, workload.container) if workload else ("", "", "")),
            row["tenant"], row["job_id"] or "")


def _direction_pair(name: str, documentation: str, tx: Value, rx: Value) -> tuple[Family, Family]:
    return (Family(name, documentation, "counter", tx, (("direction", "tx"),)),
            Family(name, documentation, "counter", rx, (("direction", "rx"),)))


def _throttle_active(reason: str) -> Value:
    def value(series: Series) -> float | None:
        reasons = series.row.get("throttle_reasons")
        return None if reasons is None else float(reason in reasons)

    return value


_THROTTLE_FAMILIES = tuple(
    Family("fleetmeter_device_throttle_active", "1 while clocks are held down for this reason.", "gauge",
           _throttle_active(reason), (("reason", reason),))
    for reason in ("sw_power_cap", "hw_slowdown", "sw_thermal", "hw_thermal", "hw_power_brake")
)

FLEETMETER = Profile(
    name="fleetmeter",
    label_names=("cluster", "node", "device", "index", "kind", "vendor", "model", "tenant", "job_id"),
    labels=_native_labels,
    per_workload=False,
    families=(
        Family("fleetmeter_device_utilization_ratio", "Compute utilization over the last interval (0..1).",
               "gauge", column("util_compute")),
        Family("fleetmeter_device_memory_bandwidth_utilization_ratio",
               "Fraction of the last interval the memory interface was busy (0..1).", "gauge",
               column("util_mem_bw")),
        Family("fleetmeter_device_sm_active_ratio", "SM activity over the last interval (0..1).", "gauge",
               column("sm_active")),
        Family("fleetmeter_device_tensor_active_ratio", "Tensor pipe activity over the last interval (0..1).",
               "gauge", column("tensor_active")),
        Family("fleetmeter_device_memory_used_bytes", "Device memory in use.", "gauge", column("mem_used_bytes")),
        Family("fleetmeter_device_memory_total_bytes", "Device memory capacity.", "gauge",
               column("mem_total_bytes")),
        Family("fleetmeter_device_power_watts", "Power draw.", "gauge", column("power_w")),
        Family("fleetmeter_device_temperature_celsius", "Device temperature.", "gauge", column("temp_c")),
        Family("fleetmeter_device_sm_clock_hertz", "SM clock.", "gauge", column("sm_clock_mhz", 1e6)),
        Family("fleetmeter_device_energy_joules", "Energy used since the collector started.", "counter",
               total("energy_j")),
        Family("fleetmeter_device_ecc_errors", "ECC errors since the collector started.", "counter",
               total("ecc_corrected"), (("type", "corrected"),)),
        Family("fleetmeter_device_ecc_errors", "ECC errors since the collector started.", "counter",
               total("ecc_uncorrected"), (("type", "uncorrected"),)),
        Family("fleetmeter_device_xid_errors", "XID error events since the collector started.", "counter",
               total("xid_count")),
        *_direction_pair("fleetmeter_device_pcie_bytes", "PCIe bytes moved since the collector started.",
                         total("pcie_tx_bytes"), total("pcie_rx_bytes")),
        *_direction_pair("fleetmeter_device_nvlink_bytes", "NVLink bytes moved since the collector started.",
                         total("nvlink_tx_bytes"), total("nvlink_rx_bytes")),
        *_THROTTLE_FAMILIES,
    ),
)

DCGM = Profile(
    name="dcgm",
    label_names=("gpu", "UUID", "pci_bus_id", "device", "modelName", "GPU_I_PROFILE", "GPU_I_ID", "Hostname",
                 "DCGM_FI_DRIVER_VERSION", "pod", "namespace", "container", "tenant", "job_id"),
    labels=_dcgm_labels,
    per_workload=True,
    families=(
        Family("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", "gauge", column("util_compute", 100, split=True)),
        Family("DCGM_FI_DEV_MEM_COPY_UTIL", "Memory utilization (in %).", "gauge",
               column("util_mem_bw", 100, split=True)),
        Family("DCGM_FI_DEV_ENC_UTIL", "Encoder utilization (in %).", "gauge",
               extra("nvml.enc_util", 100, split=True)),
        Family("DCGM_FI_DEV_DEC_UTIL", "Decoder utilization (in %).", "gauge",
               extra("nvml.dec_util", 100, split=True)),
        Family("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", "gauge", _fb_used_mib),
        Family("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", "gauge", _fb_free_mib),
        Family("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", "gauge", column("power_w", split=True)),
        Family("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", "gauge", column("temp_c")),
        Family("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).", "gauge", column("sm_clock_mhz")),
        Family("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
               "Energy used since the collector started, the series' owner's part (in mJ).", "gauge",
               total("energy_j", 1000)),
        Family("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "Single-bit ECC errors of the device since the collector started.",
               "gauge", total("ecc_corrected", device=True)),
        Family("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "Double-bit ECC errors of the device since the collector started.",
               "gauge", total("ecc_uncorrected", device=True)),
        Family("DCGM_FI_DEV_XID_ERRORS", "Value of the last XID error encountered.", "gauge",
               total("last_xid", device=True)),
        Family("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", "Current clock throttle reasons (NVML bitmask).",
               "gauge", _throttle_mask),
        Family("DCGM_FI_PROF_GR_ENGINE_ACTIVE", "Ratio of time the graphics engine is active.", "gauge",
               column("util_compute", split=True)),
        Family("DCGM_FI_PROF_SM_ACTIVE", "The ratio of cycles an SM has at least 1 warp assigned.", "gauge",
               column("sm_active", split=True)),
        Family("DCGM_FI_PROF_SM_OCCUPANCY", "The ratio of number of warps resident on an SM.", "gauge",
               extra("gpm.sm_occupancy", split=True)),
        Family("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "Ratio of cycles the tensor (HMMA) pipe is active.", "gauge",
               column("tensor_active", split=True)),
        Family("DCGM_FI_PROF_DRAM_ACTIVE", "Ratio of cycles the device memory interface is active sending or "
               "receiving data.", "gauge", extra("gpm.dram_active", split=True, otherwise="util_mem_bw")),
        Family("DCGM_FI_PROF_PCIE_TX_BYTES", "The rate of data transmitted over the PCIe bus, in bytes per second.",
               "gauge", per_second("pcie_tx_bytes")),
        Family("DCGM_FI_PROF_PCIE_RX_BYTES", "The rate of data received over the PCIe bus, in bytes per second.",
               "gauge", per_second("pcie_rx_bytes")),
        Family("DCGM_FI_PROF_NVLINK_TX_BYTES", "NVLink transmitted bytes per second.", "gauge",
               per_second("nvlink_tx_bytes")),
        Family("DCGM_FI_PROF_NVLINK_RX_BYTES", "NVLink received bytes per second.", "gauge",
               per_second("nvlink_rx_bytes")),
    ),
)

PROFILES: dict[str, Profile] = {profile.name: profile for profile in (FLEETMETER, DCGM)}

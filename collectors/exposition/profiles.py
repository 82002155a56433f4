"""Metric naming profiles: fleetmeter's own names (base units), and dcgm-exporter's names and units.

A profile is a table: each entry names a family and says how to compute its value from a device's
latest sample row and its running totals. Entries whose value is unknown for a device are left out.
The dcgm profile types its running totals as gauges: prometheus_client would append ``_total`` to a
counter's name, and dcgm-exporter's names have none. PromQL over them is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from fleetmeter.collectors.backends.nvml import THROTTLE_REASONS

Row = dict[str, Any]
Totals = dict[str, float]
Value = Callable[[Row, Totals], float | None]

_THROTTLE_BITS = {name: bit for bit, name in THROTTLE_REASONS.items()}
_MIB = 1024**2


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
    labels: Callable[[Row], tuple[str, ...]]
    families: tuple[Family, ...]


def column(name: str, scale: float = 1.0) -> Value:
    def value(row: Row, totals: Totals) -> float | None:
        raw = row.get(name)
        return None if raw is None else raw * scale

    return value


def total(name: str, scale: float = 1.0) -> Value:
    def value(row: Row, totals: Totals) -> float | None:
        return None if name not in totals else totals[name] * scale

    return value


def per_second(name: str) -> Value:
    def value(row: Row, totals: Totals) -> float | None:
        raw = row.get(name)
        return None if raw is None else raw / row["interval_s"]

    return value


def extra(key: str, scale: float = 1.0) -> Value:
    def value(row: Row, totals: Totals) -> float | None:
        raw = dict(row.get("extras") or {}).get(key)
        return None if raw is None else raw * scale

    return value


def _fb_free_mib(row: Row, totals: Totals) -> float | None:
    used, capacity = row.get("mem_used_bytes"), row.get("mem_total_bytes")
    return None if used is None or capacity is None else (capacity - used) / _MIB


def _throttle_mask(row: Row, totals: Totals) -> float | None:
    reasons = row.get("throttle_reasons")
    return None if reasons is None else float(sum(_THROTTLE_BITS.get(r, 0) for r in reasons))


def _native_labels(row: Row) -> tuple[str, ...]:
    return (row["cluster"], row["node"], row["device_uuid"], str(row["device_index"]), row["device_kind"],
            row["vendor"], row["model"], row["tenant"], row["job_id"] or "")


def _dcgm_labels(row: Row) -> tuple[str, ...]:
    instance = dict(row.get("extras") or {}).get("mig.gpu_instance_id")
    return (str(row["device_index"]), row["device_uuid"], f"nvidia{row['device_index']}", row["model"],
            row["node"], "" if instance is None else str(int(instance)), row["tenant"], row["job_id"] or "")


def _direction_pair(name: str, documentation: str, tx: Value, rx: Value) -> tuple[Family, Family]:
    return (Family(name, documentation, "counter", tx, (("direction", "tx"),)),
            Family(name, documentation, "counter", rx, (("direction", "rx"),)))


def _throttle_active(reason: str) -> Value:
    def value(row: Row, totals: Totals) -> float | None:
        reasons = row.get("throttle_reasons")
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
    label_names=("gpu", "UUID", "device", "modelName", "Hostname", "GPU_I_ID", "tenant", "job_id"),
    labels=_dcgm_labels,
    families=(
        Family("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", "gauge", column("util_compute", 100)),
        Family("DCGM_FI_DEV_MEM_COPY_UTIL", "Memory utilization (in %).", "gauge", column("util_mem_bw", 100)),
        Family("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", "gauge",
               column("mem_used_bytes", 1 / _MIB)),
        Family("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", "gauge", _fb_free_mib),
        Family("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", "gauge", column("power_w")),
        Family("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", "gauge", column("temp_c")),
        Family("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).", "gauge", column("sm_clock_mhz")),
        Family("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "Energy used since the collector started (in mJ).",
               "gauge", total("energy_j", 1000)),
        Family("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "Single-bit ECC errors since the collector started.",
               "gauge", total("ecc_corrected")),
        Family("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "Double-bit ECC errors since the collector started.",
               "gauge", total("ecc_uncorrected")),
        Family("DCGM_FI_DEV_XID_ERRORS", "Value of the last XID error encountered.", "gauge",
               total("last_xid")),
        Family("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", "Current clock throttle reasons (NVML bitmask).",
               "gauge", _throttle_mask),
        Family("DCGM_FI_PROF_SM_ACTIVE", "Ratio of cycles an SM has at least one warp assigned.", "gauge",
               column("sm_active")),
        Family("DCGM_FI_PROF_SM_OCCUPANCY", "Ratio of resident warps to the maximum.", "gauge",
               extra("gpm.sm_occupancy")),
        Family("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "Ratio of cycles the tensor pipe is active.", "gauge",
               column("tensor_active")),
        Family("DCGM_FI_PROF_DRAM_ACTIVE", "Ratio of cycles the memory interface is active.", "gauge",
               extra("gpm.dram_active")),
        Family("DCGM_FI_PROF_PCIE_TX_BYTES", "PCIe transmitted bytes per second.", "gauge",
               per_second("pcie_tx_bytes")),
        Family("DCGM_FI_PROF_PCIE_RX_BYTES", "PCIe received bytes per second.", "gauge",
               per_second("pcie_rx_bytes")),
        Family("DCGM_FI_PROF_NVLINK_TX_BYTES", "NVLink transmitted bytes per second.", "gauge",
               per_second("nvlink_tx_bytes")),
        Family("DCGM_FI_PROF_NVLINK_RX_BYTES", "NVLink received bytes per second.", "gauge",
               per_second("nvlink_rx_bytes")),
    ),
)

PROFILES: dict[str, Profile] = {profile.name: profile for profile in (FLEETMETER, DCGM)}

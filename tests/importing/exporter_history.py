"""A dcgm-exporter's and an AMD device-metrics-exporter's history as Prometheus would hold it, and the sample
rows a correct import makes of it, computed here from the scenario itself (not through Prometheus nor
fleetmeter's interval code).

Every 30 s for 4 hours, starting 3 days ago on the hour:
- n1: GPU-a0 owned by ml/train-1 for the first two hours, then by nobody; GPU-a1 owned by ml/train-1 with its
  energy counter reset at step 300; GPU-a2 time-sliced: research/nb-1 always, research/nb-2 too in steps
  100-199 (two series per metric, as dcgm-exporter writes one per pod);
- n2: an A100 in MIG mode, instances 1 (infer/svc-1) and 2 (no pod), utilization from GR_ENGINE_ACTIVE only,
  the board's power, energy, temperature and errors repeated on both instances' series (as dcgm-exporter does);
- n3: GPU-c0 has no samples in steps 200-219 (a gap of 10 minutes), an XID 79 from step 350, and a
  utilization of 250 % at step 400 (quarantined); GPU-c1 stops at step 150 (its series goes stale);
- a series without a Hostname label (set aside);
- m1: an AMD MI300X (device-metrics-exporter's names and units: percent, MB, microjoules), owned by amd/rocm-1.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

STEP_S = 30
STEPS = 480
GAP_STEPS = 3
MIB = 1024**2
H100 = "NVIDIA H100 80GB HBM3"
A100 = "NVIDIA A100-SXM4-80GB"
MI300X = "AMD Instinct MI300X"
START_S = (int(time.time()) // 3600 - 72) * 3600
END_S = START_S + STEPS * STEP_S


@dataclass(frozen=True)
class Device:
    node: str
    uuid: str
    index: int
    model: str
    instance: str = ""
    present: range = range(STEPS + 1)
    missing: range = range(0)
    vendor: str = "nvidia"

    def at(self, k: int) -> bool:
        return k in self.present and k not in self.missing


@dataclass
class Series:
    labels: dict[str, str]
    points: list[tuple[int, float]] = field(default_factory=list)


DEVICES = [
    Device("n1", "GPU-a0", 0, H100),
    Device("n1", "GPU-a1", 1, H100),
    Device("n1", "GPU-a2", 2, H100),
    Device("n2", "GPU-b0", 0, A100, instance="1"),
    Device("n2", "GPU-b0", 0, A100, instance="2"),
    Device("n3", "GPU-c0", 0, H100, missing=range(200, 220)),
    Device("n3", "GPU-c1", 1, H100, present=range(151)),
    Device("m1", "SN-m0", 0, MI300X, vendor="amd"),
]


def owners(device: Device, k: int) -> list[tuple[str, str] | None]:
    """(namespace, pod) of each series of the device at step k; None: a series without pod labels."""
    if device.uuid == "GPU-a0":
        return [("ml", "train-1")] if k < 240 else [None]
    if device.uuid == "GPU-a1":
        return [("ml", "train-1")]
    if device.uuid == "GPU-a2":
        return [("research", "nb-1"), ("research", "nb-2")] if 100 <= k < 200 else [("research", "nb-1")]
    if device.instance == "1":
        return [("infer", "svc-1")]
    if device.uuid.startswith("GPU-c"):
        return [("sim", f"job-{device.uuid}")]
    if device.vendor == "amd":
        return [("amd", "rocm-1")]
    return [None]


def util_percent(device: Device, k: int) -> float:
    if device.uuid == "GPU-c0" and k == 400:
        return 250.0
    return float((k * 7 + device.index * 13 + len(device.instance) * 5) % 101)


def energy_mj(device: Device, k: int) -> float:
    if device.uuid == "GPU-a1" and k >= 300:
        return 2_000_000.0 + (k - 300) * 4_500_000.0  # the driver reloaded: the counter restarted
    return 1e9 + k * (4_000_000.0 + device.index * 250_000.0)


def readings(device: Device, k: int) -> dict[str, float]:
    """dcgm-exporter's values (its units) for the device at step k."""
    util = util_percent(device, k)
    used = 1000.0 + k + 100 * device.index
    if device.vendor == "amd":
        return {"gpu_gfx_activity": util, "gpu_used_vram": used, "gpu_total_vram": 196_592.0,
                "gpu_package_power": 300.0 + k % 7, "gpu_energy_consumed": 5e12 + k * 9e9,
                "gpu_junction_temperature": 50.0 + k % 9}
    values = {"DCGM_FI_DEV_FB_USED": used, "DCGM_FI_DEV_FB_FREE": 81_559.0 - used,
              "DCGM_FI_PROF_SM_ACTIVE": util / 200} | board_readings(device, k)
    if device.instance:  # dcgm-exporter repeats the board's readings on every instance's series
        return values | {"DCGM_FI_PROF_GR_ENGINE_ACTIVE": util / 100}
    return values | {"DCGM_FI_DEV_GPU_UTIL": util}


def board_readings(device: Device, k: int) -> dict[str, float]:
    """The readings of the whole GPU (the board of a MIG instance)."""
    return {"DCGM_FI_DEV_POWER_USAGE": 100.0 + k % 50, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": energy_mj(device, k),
            "DCGM_FI_DEV_GPU_TEMP": 40.0 + k % 20,
            "DCGM_FI_DEV_XID_ERRORS": 79.0 if device.uuid == "GPU-c0" and k >= 350 else 0.0,
            "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL": float(k // 50) if device.uuid == "GPU-c1" else 0.0}


def series() -> list[tuple[str, Series]]:
    """Every (metric, series) as the exporter's scrapes left them in Prometheus."""
    by_key: dict[tuple[str, tuple[tuple[str, str], ...]], Series] = {}
    for device in DEVICES:
        for k in range(STEPS + 1):
            if not device.at(k):
                continue
            for owner in owners(device, k):
                labels = {"Hostname": device.node, "UUID": device.uuid, "gpu": str(device.index),
                          "modelName": device.model, "device": f"nvidia{device.index}"}
                if device.vendor == "amd":
                    labels = {"hostname": device.node, "serial_number": device.uuid, "gpu_id": str(device.index),
                              "card_model": device.model, "gpu_partition_id": "0",
                              "gpu_compute_partition_type": "spx"}
                if device.instance:
                    labels |= {"GPU_I_ID": device.instance, "GPU_I_PROFILE": "3g.40gb"}
                if owner is not None:
                    labels |= {"namespace": owner[0], "pod": owner[1], "container": "main"}
                for metric, value in readings(device, k).items():
                    key = (metric, tuple(sorted(labels.items())))
                    by_key.setdefault(key, Series(labels)).points.append((START_S + k * STEP_S, value))
    unnamed = Series({"UUID": "GPU-z0", "gpu": "0", "modelName": H100})  # no Hostname: set aside
    unnamed.points = [(START_S + k * STEP_S, 50.0) for k in range(STEPS + 1)]
    by_key[("DCGM_FI_DEV_GPU_UTIL", ())] = unnamed
    return [(metric, one) for (metric, _), one in by_key.items()]


def openmetrics() -> str:
    """The history as OpenMetrics text, which ``promtool tsdb create-blocks-from openmetrics`` reads."""
    families: dict[str, list[Series]] = defaultdict(list)
    for metric, one in series():
        families[metric].append(one)
    lines = []
    for metric, members in families.items():
        lines.append(f"# TYPE {metric} gauge")
        for one in members:
            labels = ",".join(f'{key}="{value}"' for key, value in sorted(one.labels.items()))
            lines.extend(f"{metric}{{{labels}}} {value} {t}" for t, value in one.points)
    return "\n".join([*lines, "# EOF"]) + "\n"


def _uuid(device: Device) -> str:
    return f"{device.uuid}/{device.instance}" if device.instance else device.uuid


def expected_rows(vendor: str = "nvidia", first_step: int = 0, last_step: int = STEPS) -> Iterator[dict[str, Any]]:
    """The rows of readings at steps (first_step, last_step]: each covers the time since the device's previous
    point when that is at most GAP_STEPS steps back; shared devices give one row per owner."""
    for device in DEVICES:
        if device.vendor != vendor:
            continue
        previous = None
        for k in range(max(0, first_step - GAP_STEPS), last_step + 1):
            if not device.at(k):
                continue
            if previous is not None and k - previous <= GAP_STEPS and k > first_step:
                yield from _rows(device, previous, k)
            previous = k
    if vendor == "nvidia":  # the MIG board's own row: its readings, no capacity (its instances have it)
        board = Device("n2", "GPU-b0", 0, A100)
        for k in range(max(1, first_step + 1), last_step + 1):
            row = next(_rows(board, k - 1, k))
            yield row | {"util_compute": None, "sm_active": None, "mem_used_bytes": None, "mem_total_bytes": None,
                         "extras": {"mig.enabled": 1.0}, "tenant": "unallocated", "job_id": None}


def _amd_row(device: Device, previous: int, k: int) -> dict[str, Any]:
    now, before = readings(device, k), readings(device, previous)
    return {"util_compute": now["gpu_gfx_activity"] / 100, "sm_active": None, "vendor": "amd",
            "mem_used_bytes": round(now["gpu_used_vram"] * MIB), "mem_total_bytes": round(now["gpu_total_vram"] * MIB),
            "power_w": now["gpu_package_power"], "temp_c": now["gpu_junction_temperature"],
            "energy_j": (now["gpu_energy_consumed"] - before["gpu_energy_consumed"]) * 1e-6, "xid_errors": None,
            "ecc_uncorrected": None}


def _rows(device: Device, previous: int, k: int) -> Iterator[dict[str, Any]]:
    if device.vendor == "amd":
        yield _common(device, previous, k) | _amd_row(device, previous, k) | {
            "tenant": "amd", "job_id": "rocm-1", "share": None, "share_rule": None}
        return
    now, before = readings(device, k), readings(device, previous)
    util = now.get("DCGM_FI_DEV_GPU_UTIL", now.get("DCGM_FI_PROF_GR_ENGINE_ACTIVE", 0) * 100) / 100
    energy = None
    if "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION" in now:
        current, last = now["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"], before["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"]
        energy = (current - last if current >= last else current) / 1000
    xid = None
    if "DCGM_FI_DEV_XID_ERRORS" in now:
        xid = [79] if now["DCGM_FI_DEV_XID_ERRORS"] == 79 and before["DCGM_FI_DEV_XID_ERRORS"] == 0 else []
    ecc = None
    if "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL" in now:
        ecc = int(now["DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"] - before["DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"])
    row = _common(device, previous, k) | {
        "vendor": "nvidia", "util_compute": util, "sm_active": now["DCGM_FI_PROF_SM_ACTIVE"],
        "mem_used_bytes": round(now["DCGM_FI_DEV_FB_USED"] * MIB),
        "mem_total_bytes": round(now["DCGM_FI_DEV_FB_USED"] * MIB) + round(now["DCGM_FI_DEV_FB_FREE"] * MIB),
        "power_w": now.get("DCGM_FI_DEV_POWER_USAGE"), "temp_c": now.get("DCGM_FI_DEV_GPU_TEMP"),
        "energy_j": energy, "xid_errors": xid, "ecc_uncorrected": ecc,
    }
    if device.instance:
        row |= {"power_w": None, "temp_c": None, "energy_j": None, "xid_errors": None, "ecc_uncorrected": None}
    found = owners(device, k)
    if len(found) == 1:
        owner = found[0]
        yield row | {"tenant": owner[0] if owner else "unallocated", "job_id": owner[1] if owner else None,
                     "share": None, "share_rule": None}
        return
    for number, owner in enumerate(sorted(o for o in found if o is not None)):
        part = row | {"tenant": owner[0], "job_id": owner[1], "share": 1 / len(found), "share_rule": "equal"}
        part["energy_j"] = None if energy is None else energy / len(found)
        part["xid_errors"] = xid if number == 0 else ([] if xid is not None else None)
        yield part


def _common(device: Device, previous: int, k: int) -> dict[str, Any]:
    return {"ts": (START_S + previous * STEP_S) * 1000, "interval_s": float((k - previous) * STEP_S),
            "cluster": "dc1", "node": device.node, "device_uuid": _uuid(device), "device_index": device.index,
            "device_kind": "mig" if device.instance else "gpu", "parent_uuid": device.uuid if device.instance else None,
            "model": device.model, "seq": START_S // STEP_S + k,
            "extras": {"mig.gpu_instance_id": float(device.instance)} if device.instance else None}


def valid(row: dict[str, Any]) -> bool:
    return row["util_compute"] is None or row["util_compute"] <= 1.0

"""AMD Instinct GPUs through the ``amdsmi`` Python library (ROCm's AMD SMI, over ``libamd_smi.so``).

One row per GPU processor handle (a partitioned MI300X shows each compute partition as its own handle,
and so as its own device). The mapping to the sample columns is in schemas/sample_v1.md ("AMD"):
GFX activity is the firmware's short moving average, read at the scrape; energy and ECC are cumulative
counters; XGMI bytes come from the GPU metrics table's per-link accumulators; each process's GFX engine
time (nanoseconds, cumulative) gives its share of a shared GPU.

The library answers "N/A" (a string) where the hardware has no value; that becomes null.
"""

from __future__ import annotations

import contextlib
import importlib
import io
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from fleetmeter.collectors.backends.base import BackendUnavailable
from fleetmeter.collectors.backends.library_query import LibraryQuery, Outcome
from fleetmeter.collectors.readings import Counter, Device, DeviceReading, ProcessUsage

_U64 = float(2**64)


def _number(value: Any) -> float | None:
    """A reading, or None where amdsmi says "N/A" (or gives anything that is not a number)."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _fraction(percent: Any) -> float | None:
    value = _number(percent)
    return None if value is None else min(1.0, value / 100)


def amdsmi_query(amdsmi: ModuleType) -> LibraryQuery:
    status = amdsmi.amdsmi_wrapper
    unsupported = {status.AMDSMI_STATUS_NOT_SUPPORTED, status.AMDSMI_STATUS_NO_PERM,
                   status.AMDSMI_STATUS_NOT_YET_IMPLEMENTED, status.AMDSMI_STATUS_FAIL_LOAD_SYMBOL}
    nothing_now = {status.AMDSMI_STATUS_NOT_FOUND, status.AMDSMI_STATUS_NO_DATA, status.AMDSMI_STATUS_BUSY,
                   status.AMDSMI_STATUS_RETRY, status.AMDSMI_STATUS_TIMEOUT}

    def classify(exc: Any) -> Outcome:
        code = getattr(exc, "err_code", None)
        if code in unsupported:
            return Outcome.UNSUPPORTED
        return Outcome.NOTHING_NOW if code in nothing_now else Outcome.FAILED

    def describe(exc: Any) -> str:
        return str(exc.get_error_info(detailed=False)) if hasattr(exc, "get_error_info") else type(exc).__name__

    return LibraryQuery(amdsmi, amdsmi.AmdSmiException, classify, describe)


class AmdBackend:
    name = "amd"

    def __init__(self, node: str, amdsmi: ModuleType) -> None:
        self.node = node
        self._amdsmi = amdsmi
        self._q = amdsmi_query(amdsmi)
        try:
            amdsmi.amdsmi_init(amdsmi.AmdSmiInitFlags.INIT_AMD_GPUS)
        except amdsmi.AmdSmiException as exc:
            raise BackendUnavailable(f"amdsmi did not initialise (is the amdgpu driver loaded?): {exc}") from exc
        self._handles: list[tuple[Device, Any]] = []
        for index, handle in enumerate(self._q("system", "amdsmi_get_processor_handles") or []):
            uuid = self._q(("index", index), "amdsmi_get_gpu_device_uuid", handle)
            if uuid:
                asic = self._q(uuid, "amdsmi_get_gpu_asic_info", handle) or {}
                model = str(asic.get("market_name") or "AMD GPU")
                self._handles.append((Device(node, uuid, index, "gpu", "amd", model), handle))
        if not self._handles:
            raise BackendUnavailable("amdsmi found no AMD GPUs on this node")
        self._gfx_ns: dict[str, dict[int, tuple[float, int]]] = {}  # uuid -> pid -> (GFX engine ns, at ms)

    def discover(self) -> list[Device]:
        return [device for device, _ in self._handles]

    def read(self, now_ms: int) -> list[DeviceReading]:
        return [self._read(device, handle, now_ms) for device, handle in self._handles]

    def read_errors(self) -> Mapping[str, int]:
        return self._q.errors

    def close(self) -> None:
        self._q("system", "amdsmi_shut_down")

    def _read(self, device: Device, handle: Any, now_ms: int) -> DeviceReading:
        q, amdsmi, key = self._q, self._amdsmi, device.uuid
        reading = DeviceReading(device=device)
        activity = q(key, "amdsmi_get_gpu_activity", handle) or {}
        reading.util_compute = _fraction(activity.get("gfx_activity"))
        reading.util_mem_bw = _fraction(activity.get("umc_activity"))
        mm_activity = _fraction(activity.get("mm_activity"))
        if mm_activity is not None:
            reading.extras["amd.mm_activity"] = mm_activity
        vram = amdsmi.AmdSmiMemoryType.VRAM
        used = q(key, "amdsmi_get_gpu_memory_usage", handle, vram)
        total = q(key, "amdsmi_get_gpu_memory_total", handle, vram)
        reading.mem_used_bytes = None if used is None else int(used)
        reading.mem_total_bytes = None if total is None else int(total)
        power = q(key, "amdsmi_get_power_info", handle) or {}
        reading.power_w = _number(power.get("current_socket_power")) or _number(power.get("average_socket_power"))
        energy = q(key, "amdsmi_get_energy_count", handle)
        if energy is not None and energy["counter_resolution"] > 0:
            joules_per_tick = float(energy["counter_resolution"]) / 1e6  # the resolution is in microjoules
            reading.counters["energy_j"] = Counter(energy["energy_accumulator"] * joules_per_tick,
                                                   _U64 * joules_per_tick)
        reading.temp_c = _number(q(key, "amdsmi_get_temp_metric", handle, amdsmi.AmdSmiTemperatureType.HOTSPOT,
                                   amdsmi.AmdSmiTemperatureMetric.CURRENT))
        reading.sm_clock_mhz = _number((q(key, "amdsmi_get_clock_info", handle, amdsmi.AmdSmiClkType.GFX) or {})
                                       .get("clk"))
        ecc = q(key, "amdsmi_get_gpu_total_ecc_count", handle) or {}
        for column, field in (("ecc_corrected", "correctable_count"), ("ecc_uncorrected", "uncorrectable_count")):
            if _number(ecc.get(field)) is not None:
                reading.counters[column] = Counter(float(ecc[field]), _U64)
        self._read_xgmi(key, handle, reading)
        processes = q(key, "amdsmi_get_gpu_process_list", handle)
        if processes is not None:
            previous, self._gfx_ns[key] = self._gfx_ns.get(key, {}), {}
            reading.processes = tuple(self._process(p, previous, self._gfx_ns[key], now_ms) for p in processes)
        return reading

    def _read_xgmi(self, key: str, handle: Any, reading: DeviceReading) -> None:
        """XGMI data bytes from the metrics table's per-link accumulators (KB), into the link columns."""
        metrics = self._q(key, "amdsmi_get_gpu_metrics_info", handle) or {}
        for column, field in (("nvlink_tx_bytes", "xgmi_write_data_acc"), ("nvlink_rx_bytes", "xgmi_read_data_acc")):
            links = metrics.get(field)
            if isinstance(links, list):
                kilobytes = [value for value in map(_number, links) if value is not None]
                if kilobytes:
                    reading.counters[column] = Counter(sum(kilobytes) * 1024, None)

    @staticmethod
    def _process(process: Mapping[str, Any], previous: Mapping[int, tuple[float, int]],
                 seen: dict[int, tuple[float, int]], now_ms: int) -> ProcessUsage:
        """A process with its VRAM and its GFX engine share since the previous scrape (from engine time)."""
        pid = int(process["pid"])
        gfx_ns = _number((process.get("engine_usage") or {}).get("gfx"))
        sm_util = None
        if gfx_ns is not None:
            before = previous.get(pid)
            if before is not None and now_ms > before[1]:
                sm_util = min(1.0, max(0.0, (gfx_ns - before[0]) / ((now_ms - before[1]) * 1e6)))
            seen[pid] = (gfx_ns, now_ms)
        vram = _number((process.get("memory_usage") or {}).get("vram_mem"))
        return ProcessUsage(pid, None if vram is None else int(vram), sm_util)


def create(node: str) -> AmdBackend:
    """BackendUnavailable when amdsmi or ROCm's libamd_smi.so is missing (no AMD stack on this node)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # amdsmi prints its own complaint before raising
            amdsmi = importlib.import_module("amdsmi")
    except ImportError as exc:
        raise BackendUnavailable("the amd backend needs the amdsmi package: pip install 'fleetmeter[amd]'") from exc
    except (OSError, KeyError) as exc:  # the package is there, ROCm's library is not
        raise BackendUnavailable("the amd backend needs ROCm's libamd_smi.so (package amd-smi-lib); "
                                 f"amdsmi could not load it: {exc!r}") from exc
    return AmdBackend(node, amdsmi)

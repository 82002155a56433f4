"""NVIDIA GPUs and MIG instances through NVML (the ``pynvml`` module of nvidia-ml-py).

Readings are averaged over the scrape interval where NVML allows it: utilization from the driver's
sample buffer (``nvmlDeviceGetSamples`` since the last seen timestamp), SM/tensor/DRAM activity from two
GPM samples (Hopper and newer). Energy, ECC, PCIe and NVLink are cumulative counters. XIDs come from an
NVML event set drained at every scrape. A GPU in MIG mode reports board-level readings (power, energy,
temperature, clocks, errors) on its own row and each MIG instance gets a row of its own.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

import structlog

from fleetmeter.collectors.backends.base import BackendUnavailable
from fleetmeter.collectors.backends.library_query import LibraryQuery, Outcome
from fleetmeter.collectors.backends.nvml_style import read_board
from fleetmeter.collectors.readings import Counter, Device, DeviceReading, ProcessUsage

if TYPE_CHECKING:  # the settings need pydantic, which the hardware check's bundle leaves out
    from fleetmeter.collectors.settings import CollectorSettings

log = structlog.get_logger(__name__)

_MAX_EVENTS_PER_SCRAPE = 1000

#: NVML clock event ("throttle") reason bits -> names used in ``throttle_reasons``.
THROTTLE_REASONS: dict[int, str] = {
    0x001: "gpu_idle",
    0x002: "applications_clocks",
    0x004: "sw_power_cap",
    0x008: "hw_slowdown",
    0x010: "sync_boost",
    0x020: "sw_thermal",
    0x040: "hw_thermal",
    0x080: "hw_power_brake",
    0x100: "display_clocks",
}

#: NVML value-type code -> the member of ``c_nvmlValue_t`` that holds it.
_VALUE_MEMBERS = {0: "dVal", 1: "uiVal", 2: "ulVal", 3: "ullVal", 4: "sllVal", 5: "siVal", 6: "usVal"}


def throttle_names(mask: int) -> tuple[str, ...]:
    return tuple(name for bit, name in THROTTLE_REASONS.items() if mask & bit)


@dataclass(eq=False)
class _Tracked:
    """A device and what the backend remembers about it between scrapes."""

    device: Device
    handle: Any
    parent_handle: Any | None = None
    gpu_instance_id: int | None = None
    mig_enabled: bool = False
    samples_seen_us: dict[int, int] = field(default_factory=dict)
    process_samples_seen_us: int = 0
    gpm_samples: list[Any] = field(default_factory=list)
    gpm_primed: bool = False
    field_ids: list[int] | None = None
    xid_registered: bool = False


class NvmlBackend:
    name = "nvml"

    def __init__(self, node: str, nvml: ModuleType, rediscover_every: int = 30) -> None:
        self.node = node
        self._nvml = nvml
        self._q = nvml_query(nvml)
        self._rediscover_every = rediscover_every
        self._reads = 0
        try:
            nvml.nvmlInit()
        except nvml.NVMLError as exc:
            raise BackendUnavailable(f"NVML did not initialise (is the NVIDIA driver loaded?): {exc}") from exc
        self._metrics = {
            nvml.NVML_GPM_METRIC_SM_UTIL: "sm_active",
            nvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL: "tensor_active",
            nvml.NVML_GPM_METRIC_SM_OCCUPANCY: "gpm.sm_occupancy",
            nvml.NVML_GPM_METRIC_DRAM_BW_UTIL: "gpm.dram_active",
        }
        self._fields = {
            nvml.NVML_FI_DEV_PCIE_COUNT_TX_BYTES: ("pcie_tx_bytes", 1),
            nvml.NVML_FI_DEV_PCIE_COUNT_RX_BYTES: ("pcie_rx_bytes", 1),
            nvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX: ("nvlink_tx_bytes", 1024),
            nvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX: ("nvlink_rx_bytes", 1024),
        }
        self._event_set = self._q("system", "nvmlEventSetCreate")
        self._driver_version: str | None = self._q("system", "nvmlSystemGetDriverVersion")
        self._tracked: list[_Tracked] = []
        self._rediscover()
        if not self._tracked:
            raise BackendUnavailable("NVML found no GPUs on this node")

    # -- discovery -------------------------------------------------------------------------------

    def discover(self) -> list[Device]:
        return [tracked.device for tracked in self._tracked]

    def _rediscover(self) -> None:
        previous = {tracked.device.uuid: tracked for tracked in self._tracked}
        found: list[_Tracked] = []
        for index in range(self._q("system", "nvmlDeviceGetCount") or 0):
            gpu = self._gpu(index, previous)
            if gpu is None:
                continue
            found.append(gpu)
            if gpu.mig_enabled:
                found.extend(self._mig_instances(gpu, previous))
        for gone in previous.keys() - {tracked.device.uuid for tracked in found}:
            self._free_gpm(previous[gone])
        self._tracked = found

    def _gpu(self, index: int, previous: dict[str, _Tracked]) -> _Tracked | None:
        q, nvml = self._q, self._nvml
        handle = q(("index", index), "nvmlDeviceGetHandleByIndex", index)
        uuid = None if handle is None else q(("index", index), "nvmlDeviceGetUUID", handle)
        if uuid is None:
            return None
        mig_mode = q(uuid, "nvmlDeviceGetMigMode", handle) or [nvml.NVML_DEVICE_MIG_DISABLE]
        mig_enabled = mig_mode[0] == nvml.NVML_DEVICE_MIG_ENABLE
        pci = q(uuid, "nvmlDeviceGetPciInfo", handle)
        device = Device(self.node, uuid, index, "gpu", "nvidia", q(uuid, "nvmlDeviceGetName", handle) or "",
                        pci_bus_id=None if pci is None else pci.busId, driver_version=self._driver_version)
        tracked = self._carry_over(previous.get(uuid), _Tracked(device, handle, mig_enabled=mig_enabled))
        if not tracked.xid_registered and self._event_set is not None:
            q(uuid, "nvmlDeviceRegisterEvents", handle, nvml.nvmlEventTypeXidCriticalError, self._event_set)
            tracked.xid_registered = not q.is_unsupported(uuid, "nvmlDeviceRegisterEvents")
        return tracked

    def _mig_instances(self, gpu: _Tracked, previous: dict[str, _Tracked]) -> list[_Tracked]:
        q = self._q
        instances = []
        for slot in range(q(gpu.device.uuid, "nvmlDeviceGetMaxMigDeviceCount", gpu.handle) or 0):
            handle = q((gpu.device.uuid, slot), "nvmlDeviceGetMigDeviceHandleByIndex", gpu.handle, slot)
            uuid = None if handle is None else q((gpu.device.uuid, slot), "nvmlDeviceGetUUID", handle)
            if uuid is None:
                continue  # an empty MIG slot answers NOT_FOUND
            device = Device(self.node, uuid, gpu.device.index, "mig", "nvidia",
                            q(uuid, "nvmlDeviceGetName", handle) or gpu.device.model, parent_uuid=gpu.device.uuid,
                            pci_bus_id=gpu.device.pci_bus_id, driver_version=self._driver_version)
            tracked = _Tracked(device, handle, parent_handle=gpu.handle,
                               gpu_instance_id=q(uuid, "nvmlDeviceGetGpuInstanceId", handle),
                               xid_registered=gpu.xid_registered)
            instances.append(self._carry_over(previous.get(uuid), tracked))
        return instances

    def _carry_over(self, old: _Tracked | None, new: _Tracked) -> _Tracked:
        if old is not None:
            new.samples_seen_us, new.field_ids = old.samples_seen_us, old.field_ids
            new.gpm_samples, new.gpm_primed = old.gpm_samples, old.gpm_primed
            new.xid_registered = new.xid_registered or old.xid_registered
        elif self._gpm_supported(new):
            new.gpm_samples = [self._q("system", "nvmlGpmSampleAlloc") for _ in range(2)]
            if None in new.gpm_samples:
                self._free_gpm(new)
        return new

    def _gpm_supported(self, tracked: _Tracked) -> bool:
        handle = tracked.parent_handle if tracked.device.kind == "mig" else tracked.handle
        support = self._q(tracked.device.parent_uuid or tracked.device.uuid, "nvmlGpmQueryDeviceSupport", handle)
        return bool(support is not None and support.isSupportedDevice)

    def _free_gpm(self, tracked: _Tracked) -> None:
        for sample in tracked.gpm_samples:
            if sample is not None:
                self._q("system", "nvmlGpmSampleFree", sample)
        tracked.gpm_samples = []

    # -- reading ---------------------------------------------------------------------------------

    def read(self, now_ms: int) -> list[DeviceReading]:
        self._reads += 1
        if self._reads % self._rediscover_every == 0:
            self._rediscover()
        xids = self._drain_xid_events()
        return [self._read(tracked, xids) for tracked in self._tracked]

    def read_errors(self) -> Mapping[str, int]:
        return self._q.errors

    def unsupported_calls(self) -> Mapping[str, int]:
        """NVML functions this driver or these boards answer NOT_SUPPORTED (or lack), with how often asked."""
        return self._q.unsupported()

    def close(self) -> None:
        for tracked in self._tracked:
            self._free_gpm(tracked)
        if self._event_set is not None:
            self._q("system", "nvmlEventSetFree", self._event_set)
        self._q("system", "nvmlShutdown")

    def _read(self, tracked: _Tracked, xids: dict[str, list[int]]) -> DeviceReading:
        q, nvml = self._q, self._nvml
        handle, key = tracked.handle, tracked.device.uuid
        reading = DeviceReading(device=tracked.device)
        reading.util_compute = self._interval_mean(tracked, nvml.NVML_GPU_UTILIZATION_SAMPLES, "gpu")
        reading.util_mem_bw = self._interval_mean(tracked, nvml.NVML_MEMORY_UTILIZATION_SAMPLES, "memory")
        read_board(q, "nvml", key, handle, nvml.NVML_TEMPERATURE_GPU, reading)
        clock = q(key, "nvmlDeviceGetClockInfo", handle, nvml.NVML_CLOCK_SM)
        reading.sm_clock_mhz = None if clock is None else float(clock)
        mask = q(key, "nvmlDeviceGetCurrentClocksEventReasons", handle)
        if mask is None:
            mask = q(key, "nvmlDeviceGetCurrentClocksThrottleReasons", handle)
        reading.throttle_reasons = None if mask is None else throttle_names(mask)
        for column, error_type in (("ecc_corrected", nvml.NVML_MEMORY_ERROR_TYPE_CORRECTED),
                                   ("ecc_uncorrected", nvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED)):
            count = q((key, column), "nvmlDeviceGetTotalEccErrors", handle, error_type, nvml.NVML_VOLATILE_ECC)
            if count is not None:
                reading.counters[column] = Counter(float(count), float(2**64))
        self._read_link_counters(tracked, reading)
        processes = q(key, "nvmlDeviceGetComputeRunningProcesses", handle)
        if processes is not None:
            sm_util = self._process_sm_util(tracked)
            reading.processes = tuple(ProcessUsage(int(p.pid), p.usedGpuMemory, sm_util.get(int(p.pid)))
                                      for p in processes)
        reading.xid_errors = tuple(xids.get(key, ())) if tracked.xid_registered else None
        for extra, function in (("nvml.enc_util", "nvmlDeviceGetEncoderUtilization"),
                                ("nvml.dec_util", "nvmlDeviceGetDecoderUtilization")):
            answer = q(key, function, handle)  # [percent, sampling period in us]
            if answer is not None:
                reading.extras[extra] = answer[0] / 100
        self._read_gpm(tracked, reading)
        if tracked.mig_enabled:
            reading.extras["mig.enabled"] = 1.0
        if tracked.gpu_instance_id is not None:
            reading.extras["mig.gpu_instance_id"] = float(tracked.gpu_instance_id)
        return reading

    def _process_sm_util(self, tracked: _Tracked) -> dict[int, float]:
        """Each process's mean SM utilization (0..1) over the driver's samples since the last scrape.

        What splits a time-sliced GPU between its owners; NVML answers NOT_FOUND when no process ran.
        """
        since = tracked.process_samples_seen_us
        samples = self._q((tracked.device.uuid, "process_util"), "nvmlDeviceGetProcessUtilization",
                          tracked.handle, since) or []
        fresh = [s for s in samples if s.timeStamp > since]
        if not fresh:
            return {}
        tracked.process_samples_seen_us = max(s.timeStamp for s in fresh)
        by_pid: dict[int, list[int]] = {}
        for sample in fresh:
            by_pid.setdefault(int(sample.pid), []).append(int(sample.smUtil))
        return {pid: sum(values) / len(values) / 100 for pid, values in by_pid.items()}

    def _interval_mean(self, tracked: _Tracked, sampling_type: int, instant_member: str) -> float | None:
        """Mean utilization (0..1) over the driver's samples since the last scrape, else the instant value."""
        key = (tracked.device.uuid, "samples", sampling_type)
        since = tracked.samples_seen_us.get(sampling_type, 0)
        result = self._q(key, "nvmlDeviceGetSamples", tracked.handle, sampling_type, since)
        if result:
            value_type, samples = result
            fresh = [s for s in samples if s.timeStamp > since]
            if fresh:
                member = _VALUE_MEMBERS.get(value_type, "uiVal")
                tracked.samples_seen_us[sampling_type] = max(s.timeStamp for s in fresh)
                return float(sum(getattr(s.sampleValue, member) for s in fresh)) / len(fresh) / 100
        rates = self._q(tracked.device.uuid, "nvmlDeviceGetUtilizationRates", tracked.handle)
        return None if rates is None else getattr(rates, instant_member) / 100

    def _read_link_counters(self, tracked: _Tracked, reading: DeviceReading) -> None:
        nvml, key = self._nvml, tracked.device.uuid
        if tracked.field_ids is None:
            tracked.field_ids = list(self._fields)
        if tracked.field_ids:
            values = self._q(key, "nvmlDeviceGetFieldValues", tracked.handle, tracked.field_ids)
            for value in values or ():
                if value.nvmlReturn != nvml.NVML_SUCCESS:
                    if value.nvmlReturn != nvml.NVML_ERROR_NOT_FOUND:
                        tracked.field_ids.remove(value.fieldId)
                    continue
                column, scale = self._fields[value.fieldId]
                raw = getattr(value.value, _VALUE_MEMBERS.get(value.valueType, "ullVal"))
                reading.counters[column] = Counter(float(raw * scale), float(2**64 * scale))
        for column, counter in (("pcie_tx_bytes", nvml.NVML_PCIE_UTIL_TX_BYTES),
                                ("pcie_rx_bytes", nvml.NVML_PCIE_UTIL_RX_BYTES)):
            if column not in reading.counters:
                kib_per_s = self._q((key, column), "nvmlDeviceGetPcieThroughput", tracked.handle, counter)
                if kib_per_s is not None:
                    reading.rates[column] = kib_per_s * 1024.0

    def _read_gpm(self, tracked: _Tracked, reading: DeviceReading) -> None:
        if not tracked.gpm_samples:
            return
        nvml, q = self._nvml, self._q
        previous, current = tracked.gpm_samples
        if tracked.device.kind == "mig":
            taken = q(tracked.device.uuid, "nvmlGpmMigSampleGet", tracked.parent_handle,
                      tracked.gpu_instance_id, current)
        else:
            taken = q(tracked.device.uuid, "nvmlGpmSampleGet", tracked.handle, current)
        if taken is None:
            return
        tracked.gpm_samples = [current, previous]
        if not tracked.gpm_primed:
            tracked.gpm_primed = True
            return
        request = nvml.c_nvmlGpmMetricsGet_t()
        request.version = nvml.NVML_GPM_METRICS_GET_VERSION
        request.numMetrics = len(self._metrics)
        request.sample1, request.sample2 = previous, current
        for slot, metric_id in enumerate(self._metrics):
            request.metrics[slot].metricId = metric_id
        if q(tracked.device.uuid, "nvmlGpmMetricsGet", request) is None:
            return
        for slot in range(len(self._metrics)):
            metric = request.metrics[slot]
            if metric.nvmlReturn != nvml.NVML_SUCCESS:
                continue
            name, value = self._metrics[metric.metricId], metric.value / 100
            if name.startswith("gpm."):
                reading.extras[name] = value
            else:
                setattr(reading, name, value)

    def _drain_xid_events(self) -> dict[str, list[int]]:
        """XID codes per device UUID that the driver reported since the previous scrape."""
        found: dict[str, list[int]] = {}
        if self._event_set is None:
            return found
        by_instance = {(t.device.parent_uuid, t.gpu_instance_id): t.device.uuid
                       for t in self._tracked if t.device.kind == "mig"}
        for _ in range(_MAX_EVENTS_PER_SCRAPE):
            event = self._q("events", "nvmlEventSetWait_v2", self._event_set, 0)
            if event is None:
                break
            gpu_uuid = self._q("events", "nvmlDeviceGetUUID", event.device)
            if gpu_uuid is None:
                continue
            uuid = by_instance.get((gpu_uuid, event.gpuInstanceId), gpu_uuid)
            found.setdefault(uuid, []).append(int(event.eventData))
        return found


def nvml_query(nvml: ModuleType) -> LibraryQuery:
    unsupported = {nvml.NVML_ERROR_NOT_SUPPORTED, nvml.NVML_ERROR_NO_PERMISSION, nvml.NVML_ERROR_FUNCTION_NOT_FOUND}
    nothing_now = {nvml.NVML_ERROR_NOT_FOUND, nvml.NVML_ERROR_TIMEOUT}

    def classify(exc: Any) -> Outcome:
        if exc.value in unsupported:
            return Outcome.UNSUPPORTED
        return Outcome.NOTHING_NOW if exc.value in nothing_now else Outcome.FAILED

    return LibraryQuery(nvml, nvml.NVMLError, classify)


def create(settings: CollectorSettings) -> NvmlBackend:
    try:
        nvml = importlib.import_module("pynvml")
    except ImportError as exc:
        raise BackendUnavailable("the nvml backend needs nvidia-ml-py (module pynvml)") from exc
    return NvmlBackend(settings.node, nvml, settings.nvml.rediscover_every)

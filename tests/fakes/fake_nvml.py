"""A fake of the ``pynvml`` function surface that behaves like an 8-GPU H100 node.

It stands in for the NVIDIA driver only: constants, structures and error classes are pynvml's own,
handles are real ``c_nvmlDevice_t`` pointers, results are the real ctypes structures, and failures
raise the real ``NVMLError`` subclasses. The node:

- GPUs 0-5: H100 SXM with everything (sample buffers, GPM, NVLink and PCIe counters, ECC, XIDs).
- GPU 6: MIG mode with two instances in slots 0 and 2 (slot 1 empty). In MIG mode the parent has no
  utilization; instances have no power, temperature, clocks or ECC of their own, as on real hardware.
- GPU 7: a board whose driver lacks the sample buffer, GPM, link counters and ECC (NotSupported),
  so the backend must fall back to instantaneous utilization and PCIe throughput.

Strict like the driver: every enum argument (sampling type, temperature sensor, clock, ECC error and
counter type, PCIe counter) is checked against pynvml's ranges, and the readings that the wrong enum
would return differ (graphics vs SM clock, aggregate vs volatile ECC), so a backend asking the wrong
question gets a wrong answer. The driver's awkward answers can be set per device: ``lost`` (every call
raises GPU_IS_LOST), ``process_memory_hidden`` (``usedGpuMemory`` None, as under MIG or without
privileges), ``unsupported`` functions; and for the node, ``init_error`` (``nvmlInit`` fails).

Tests change a device's state through :class:`FakeGpu` and read ``calls`` to see what was asked.
"""

from __future__ import annotations

import ctypes
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pynvml

_DELEGATED_PREFIXES = ("NVML_", "NVMLError", "c_nvml", "struct_c_nvml", "nvmlEventType", "nvmlClocks")
H100 = "NVIDIA H100 80GB HBM3"
GIB = 1024**3


def _raise(code: int) -> None:
    raise pynvml.NVMLError(code)


def _new_handle() -> Any:
    return pynvml.c_nvmlDevice_t(pynvml.struct_c_nvmlDevice_t())


def _bus_id(index: int) -> str:
    """How the driver writes a PCI address: domain, bus, device and function in upper-case hex."""
    return f"00000000:{0x18 + 0x10 * index:02X}:00.0"


def _key(handle: Any) -> int:
    return ctypes.addressof(handle.contents)


@dataclass
class FakeGpu:
    uuid: str
    name: str = H100
    util_gpu: int = 0  # percent
    util_mem: int = 0
    util_samples: list[tuple[int, int]] = field(default_factory=list)  # (timestamp us, percent)
    mem_total: int = 80 * GIB
    mem_used: int = 0
    power_mw: int = 70_000
    energy_mj: int = 1_000_000
    temp_c: int = 30
    pci_bus_id: str = "00000000:18:00.0"
    enc_util: int = 0  # percent
    dec_util: int = 0
    sm_clock_mhz: int = 1980
    graphics_clock_mhz: int = 1755  # other clocks differ from the SM clock, so asking for the wrong one shows
    throttle_mask: int = 0
    ecc: dict[int, int] = field(default_factory=lambda: {0: 0, 1: 0})  # volatile, by error type
    ecc_aggregate: dict[int, int] = field(default_factory=lambda: {0: 5_000, 1: 7})  # since the board was made
    pcie_bytes: dict[str, int] = field(default_factory=lambda: {"tx": 0, "rx": 0})
    nvlink_kib: dict[str, int] = field(default_factory=lambda: {"tx": 0, "rx": 0})
    pcie_kib_per_s: dict[int, int] = field(default_factory=lambda: {0: 0, 1: 0})
    gpm: dict[int, float] = field(default_factory=dict)  # metric id -> percent
    processes: list[tuple[int, int]] = field(default_factory=list)  # (pid, bytes)
    process_samples: list[tuple[int, int, int]] = field(default_factory=list)  # (timestamp us, pid, sm %)
    unsupported: set[str] = field(default_factory=set)  # function names that raise NotSupported
    lost: bool = False  # fell off the bus: every call raises GPU_IS_LOST
    process_memory_hidden: bool = False  # usedGpuMemory is None (MIG, or a container without privileges)
    mig_enabled: bool = False
    mig_slots: list[FakeGpu | None] = field(default_factory=list)
    gpu_instance_id: int | None = None
    parent: FakeGpu | None = None
    handle: Any = field(default_factory=_new_handle)


class FakeNvml:
    """Module-like object: pass it where the backend expects the ``pynvml`` module."""

    def __init__(self, init_error: int | None = None) -> None:
        self.calls: Counter[tuple[str, str]] = Counter()
        self.initialised = False
        self.init_error = init_error  # an NVML_ERROR_* that nvmlInit raises (driver not loaded, no permission)
        self.driver_version = "550.54.15"
        self.gpus = [self._full_gpu(index) for index in range(6)]
        self.gpus.append(self._mig_gpu())
        self.gpus.append(self._limited_gpu())
        self.events: list[tuple[FakeGpu, int]] = []  # pending XID events: (device, code)
        self._by_handle = {_key(gpu.handle): gpu for gpu in self.all_devices()}
        self._gpm_samples: dict[int, tuple[FakeGpu, dict[int, float]]] = {}

    # -- node layout -----------------------------------------------------------------------------

    @staticmethod
    def _full_gpu(index: int) -> FakeGpu:
        return FakeGpu(uuid=f"GPU-00000000-0000-0000-0000-00000000000{index}", pci_bus_id=_bus_id(index))

    @staticmethod
    def _mig_gpu() -> FakeGpu:
        gpu = FakeGpu(uuid="GPU-00000000-0000-0000-0000-000000000006", mig_enabled=True, pci_bus_id=_bus_id(6),
                      unsupported={"nvmlDeviceGetSamples", "nvmlDeviceGetUtilizationRates"})
        no_board_readings = {"nvmlDeviceGetSamples", "nvmlDeviceGetUtilizationRates", "nvmlDeviceGetPowerUsage",
                             "nvmlDeviceGetTotalEnergyConsumption", "nvmlDeviceGetTemperature",
                             "nvmlDeviceGetClockInfo", "nvmlDeviceGetCurrentClocksEventReasons",
                             "nvmlDeviceGetCurrentClocksThrottleReasons", "nvmlDeviceGetTotalEccErrors",
                             "nvmlDeviceGetFieldValues", "nvmlDeviceGetPcieThroughput", "nvmlDeviceGetPciInfo",
                             "nvmlDeviceGetEncoderUtilization", "nvmlDeviceGetDecoderUtilization"}
        big = FakeGpu(uuid="MIG-00000000-0000-0000-0000-0000000000a1", name=f"{H100} MIG 3g.40gb",
                      mem_total=40 * GIB, gpu_instance_id=1, parent=gpu, unsupported=set(no_board_readings))
        small = FakeGpu(uuid="MIG-00000000-0000-0000-0000-0000000000a2", name=f"{H100} MIG 1g.10gb",
                        mem_total=10 * GIB, gpu_instance_id=9, parent=gpu, unsupported=set(no_board_readings))
        gpu.mig_slots = [big, None, small]
        return gpu

    @staticmethod
    def _limited_gpu() -> FakeGpu:
        return FakeGpu(uuid="GPU-00000000-0000-0000-0000-000000000007", pci_bus_id=_bus_id(7), unsupported={
            "nvmlDeviceGetSamples", "nvmlGpmQueryDeviceSupport", "nvmlDeviceGetFieldValues",
            "nvmlDeviceGetTotalEccErrors", "nvmlDeviceGetCurrentClocksEventReasons"})

    def all_devices(self) -> list[FakeGpu]:
        return [*self.gpus, *(slot for gpu in self.gpus for slot in gpu.mig_slots if slot is not None)]

    def device(self, uuid: str) -> FakeGpu:
        return next(gpu for gpu in self.all_devices() if gpu.uuid == uuid)

    # -- plumbing --------------------------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        if name.startswith(_DELEGATED_PREFIXES):
            return getattr(pynvml, name)
        raise AttributeError(name)  # a function this driver does not have

    def _gpu(self, handle: Any, function: str) -> FakeGpu:
        if not self.initialised:
            _raise(pynvml.NVML_ERROR_UNINITIALIZED)
        gpu = self._by_handle.get(_key(handle))
        if gpu is None:
            _raise(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        assert gpu is not None
        self.calls[(function, gpu.uuid)] += 1
        if gpu.lost or (gpu.parent is not None and gpu.parent.lost):
            _raise(pynvml.NVML_ERROR_GPU_IS_LOST)
        if function in gpu.unsupported:
            _raise(pynvml.NVML_ERROR_NOT_SUPPORTED)
        return gpu

    @staticmethod
    def _check_enum(value: int, count: int) -> None:
        """The driver answers INVALID_ARGUMENT to an enum value outside its range."""
        if not isinstance(value, int) or not 0 <= value < count:
            _raise(pynvml.NVML_ERROR_INVALID_ARGUMENT)

    def refresh_handles(self) -> None:
        """Index every device's handle again, after a test changed the node's layout (hot-plug, MIG)."""
        self._by_handle = {_key(gpu.handle): gpu for gpu in self.all_devices()}

    # -- the NVML functions the backend uses -------------------------------------------------------

    def nvmlInit(self) -> None:
        if self.init_error is not None:
            _raise(self.init_error)
        self.initialised = True

    def nvmlShutdown(self) -> None:
        self.initialised = False

    def nvmlDeviceGetCount(self) -> int:
        if not self.initialised:
            _raise(pynvml.NVML_ERROR_UNINITIALIZED)
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any:
        if not 0 <= index < len(self.gpus):
            _raise(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return self.gpus[index].handle

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        return self._gpu(handle, "nvmlDeviceGetUUID").uuid

    def nvmlDeviceGetName(self, handle: Any) -> str:
        return self._gpu(handle, "nvmlDeviceGetName").name

    def nvmlDeviceGetMigMode(self, handle: Any) -> list[int]:
        gpu = self._gpu(handle, "nvmlDeviceGetMigMode")
        mode = pynvml.NVML_DEVICE_MIG_ENABLE if gpu.mig_enabled else pynvml.NVML_DEVICE_MIG_DISABLE
        return [mode, mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: Any) -> int:
        return 7 if self._gpu(handle, "nvmlDeviceGetMaxMigDeviceCount").mig_enabled else 0

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: Any, index: int) -> Any:
        gpu = self._gpu(handle, "nvmlDeviceGetMigDeviceHandleByIndex")
        instance = gpu.mig_slots[index] if index < len(gpu.mig_slots) else None
        if instance is None:
            _raise(pynvml.NVML_ERROR_NOT_FOUND)
        assert instance is not None
        return instance.handle

    def nvmlDeviceGetGpuInstanceId(self, handle: Any) -> int:
        gpu = self._gpu(handle, "nvmlDeviceGetGpuInstanceId")
        if gpu.gpu_instance_id is None:
            _raise(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        return int(gpu.gpu_instance_id or 0)

    def nvmlDeviceGetSamples(self, handle: Any, sampling_type: int, since_us: int) -> tuple[int, list[Any]]:
        gpu = self._gpu(handle, "nvmlDeviceGetSamples")
        self._check_enum(sampling_type, pynvml.NVML_SAMPLINGTYPE_COUNT)
        fresh = [(ts, value) for ts, value in gpu.util_samples if ts > since_us]
        if not fresh:
            _raise(pynvml.NVML_ERROR_NOT_FOUND)
        samples = []
        for ts, value in fresh:
            sample = pynvml.c_nvmlSample_t()
            sample.timeStamp = ts
            sample.sampleValue.uiVal = value if sampling_type == pynvml.NVML_GPU_UTILIZATION_SAMPLES else value // 2
            samples.append(sample)
        return pynvml.NVML_VALUE_TYPE_UNSIGNED_INT, samples

    def nvmlSystemGetDriverVersion(self) -> str:
        if not self.initialised:
            _raise(pynvml.NVML_ERROR_UNINITIALIZED)
        return self.driver_version

    def nvmlDeviceGetPciInfo(self, handle: Any) -> Any:
        gpu = self._gpu(handle, "nvmlDeviceGetPciInfo")
        domain, bus, rest = gpu.pci_bus_id.split(":")
        return pynvml.nvmlPciInfo_t(busIdLegacy=gpu.pci_bus_id[4:].encode(), domain=int(domain, 16), bus=int(bus, 16),
                                    device=int(rest.split(".")[0], 16), pciDeviceId=0x233010DE,
                                    busId=gpu.pci_bus_id.encode())

    def nvmlDeviceGetEncoderUtilization(self, handle: Any) -> list[int]:
        return [self._gpu(handle, "nvmlDeviceGetEncoderUtilization").enc_util, 167_000]

    def nvmlDeviceGetDecoderUtilization(self, handle: Any) -> list[int]:
        return [self._gpu(handle, "nvmlDeviceGetDecoderUtilization").dec_util, 167_000]

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any:
        gpu = self._gpu(handle, "nvmlDeviceGetUtilizationRates")
        return pynvml.c_nvmlUtilization_t(gpu=gpu.util_gpu, memory=gpu.util_mem)

    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> Any:
        gpu = self._gpu(handle, "nvmlDeviceGetMemoryInfo")
        return pynvml.c_nvmlMemory_t(total=gpu.mem_total, free=gpu.mem_total - gpu.mem_used, used=gpu.mem_used)

    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        return self._gpu(handle, "nvmlDeviceGetPowerUsage").power_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        return self._gpu(handle, "nvmlDeviceGetTotalEnergyConsumption").energy_mj

    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int:
        gpu = self._gpu(handle, "nvmlDeviceGetTemperature")
        self._check_enum(sensor, pynvml.NVML_TEMPERATURE_COUNT)
        if sensor != pynvml.NVML_TEMPERATURE_GPU:
            _raise(pynvml.NVML_ERROR_NOT_SUPPORTED)  # the only sensor NVML defines on data-centre boards
        return gpu.temp_c

    def nvmlDeviceGetClockInfo(self, handle: Any, clock_type: int) -> int:
        gpu = self._gpu(handle, "nvmlDeviceGetClockInfo")
        self._check_enum(clock_type, pynvml.NVML_CLOCK_COUNT)
        return gpu.sm_clock_mhz if clock_type == pynvml.NVML_CLOCK_SM else gpu.graphics_clock_mhz

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: Any) -> int:
        return self._gpu(handle, "nvmlDeviceGetCurrentClocksEventReasons").throttle_mask

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: Any) -> int:
        return self._gpu(handle, "nvmlDeviceGetCurrentClocksThrottleReasons").throttle_mask

    def nvmlDeviceGetTotalEccErrors(self, handle: Any, error_type: int, counter_type: int) -> int:
        gpu = self._gpu(handle, "nvmlDeviceGetTotalEccErrors")
        self._check_enum(error_type, pynvml.NVML_MEMORY_ERROR_TYPE_COUNT)
        self._check_enum(counter_type, pynvml.NVML_ECC_COUNTER_TYPE_COUNT)
        return (gpu.ecc if counter_type == pynvml.NVML_VOLATILE_ECC else gpu.ecc_aggregate)[error_type]

    def nvmlDeviceGetFieldValues(self, handle: Any, field_ids: list[int]) -> Any:
        gpu = self._gpu(handle, "nvmlDeviceGetFieldValues")
        counters = {
            pynvml.NVML_FI_DEV_PCIE_COUNT_TX_BYTES: gpu.pcie_bytes["tx"],
            pynvml.NVML_FI_DEV_PCIE_COUNT_RX_BYTES: gpu.pcie_bytes["rx"],
            pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX: gpu.nvlink_kib["tx"],
            pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX: gpu.nvlink_kib["rx"],
        }
        values = (pynvml.c_nvmlFieldValue_t * len(field_ids))()
        for slot, field_id in enumerate(field_ids):
            values[slot].fieldId = field_id
            if field_id in counters:
                values[slot].nvmlReturn = pynvml.NVML_SUCCESS
                values[slot].valueType = pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
                values[slot].value.ullVal = counters[field_id]
            else:
                values[slot].nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
        return values

    def nvmlDeviceGetPcieThroughput(self, handle: Any, counter: int) -> int:
        gpu = self._gpu(handle, "nvmlDeviceGetPcieThroughput")
        self._check_enum(counter, pynvml.NVML_PCIE_UTIL_COUNT)
        return gpu.pcie_kib_per_s[counter]

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list[Any]:
        gpu = self._gpu(handle, "nvmlDeviceGetComputeRunningProcesses")
        processes = [pynvml.nvmlStructToFriendlyObject(pynvml.c_nvmlProcessInfo_t(pid=pid, usedGpuMemory=used))
                     for pid, used in gpu.processes]
        for process in processes:  # pynvml turns the driver's "not available" into None
            if gpu.process_memory_hidden:
                process.usedGpuMemory = None
        return processes

    def nvmlDeviceGetProcessUtilization(self, handle: Any, since_us: int) -> list[Any]:
        gpu = self._gpu(handle, "nvmlDeviceGetProcessUtilization")
        fresh = [(ts, pid, sm) for ts, pid, sm in gpu.process_samples if ts > since_us]
        if not fresh:
            _raise(pynvml.NVML_ERROR_NOT_FOUND)
        return [pynvml.c_nvmlProcessUtilizationSample_t(pid=pid, timeStamp=ts, smUtil=sm, memUtil=sm // 2)
                for ts, pid, sm in fresh]

    # XID events
    def nvmlEventSetCreate(self) -> Any:
        return pynvml.c_nvmlEventSet_t(pynvml.struct_c_nvmlEventSet_t())

    def nvmlDeviceRegisterEvents(self, handle: Any, event_types: int, event_set: Any) -> None:
        self._gpu(handle, "nvmlDeviceRegisterEvents")

    def nvmlEventSetWait_v2(self, event_set: Any, timeout_ms: int) -> Any:
        if not self.events:
            _raise(pynvml.NVML_ERROR_TIMEOUT)
        device, code = self.events.pop(0)
        data = pynvml.c_nvmlEventData_t()
        gpu = device.parent or device
        data.device = gpu.handle
        data.eventType = pynvml.nvmlEventTypeXidCriticalError
        data.eventData = code
        data.gpuInstanceId = device.gpu_instance_id if device.parent else 0xFFFFFFFF
        data.computeInstanceId = 0xFFFFFFFF
        return data

    def nvmlEventSetFree(self, event_set: Any) -> None:
        pass

    # GPM: a sample records the device's configured metrics at the time it was taken.
    def nvmlGpmQueryDeviceSupport(self, handle: Any) -> Any:
        self._gpu(handle, "nvmlGpmQueryDeviceSupport")
        support = pynvml.c_nvmlGpmSupport_t()
        support.isSupportedDevice = 1
        return support

    def nvmlGpmSampleAlloc(self) -> Any:
        return pynvml.c_nvmlGpmSample_t(pynvml.struct_c_nvmlGpmSample_t())

    def nvmlGpmSampleFree(self, sample: Any) -> None:
        self._gpm_samples.pop(ctypes.addressof(sample.contents), None)

    def nvmlGpmSampleGet(self, handle: Any, sample: Any) -> Any:
        gpu = self._gpu(handle, "nvmlGpmSampleGet")
        self._gpm_samples[ctypes.addressof(sample.contents)] = (gpu, dict(gpu.gpm))
        return sample

    def nvmlGpmMigSampleGet(self, handle: Any, gpu_instance_id: int, sample: Any) -> Any:
        parent = self._gpu(handle, "nvmlGpmMigSampleGet")
        instance = next((s for s in parent.mig_slots if s is not None and s.gpu_instance_id == gpu_instance_id), None)
        if instance is None:  # the instance was destroyed (MIG reconfigured)
            _raise(pynvml.NVML_ERROR_NOT_FOUND)
        assert instance is not None
        self._gpm_samples[ctypes.addressof(sample.contents)] = (instance, dict(instance.gpm))
        return sample

    def nvmlGpmMetricsGet(self, request: Any) -> Any:
        first = self._gpm_samples.get(ctypes.addressof(request.sample1.contents))
        second = self._gpm_samples.get(ctypes.addressof(request.sample2.contents))
        if first is None or second is None or first[0] is not second[0]:
            _raise(pynvml.NVML_ERROR_INVALID_ARGUMENT)
        assert second is not None
        for slot in range(request.numMetrics):
            metric = request.metrics[slot]
            if metric.metricId in second[1]:
                metric.nvmlReturn = pynvml.NVML_SUCCESS
                metric.value = second[1][metric.metricId]
            else:
                metric.nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
        return request

"""A fake of ROCm's ``libamd_smi.so``, loaded by the real ``amdsmi`` Python package (7.x).

It answers the C functions the amd backend reaches through ``amdsmi_interface`` with the library's own
structures (``amdsmi_wrapper``), status codes and "not available" markers (0xFFFF in 16/32-bit fields,
which amdsmi turns into "N/A"). Each GPU is a :class:`FakeAmdGpu`; a function name in its ``unsupported``
set answers AMDSMI_STATUS_NOT_SUPPORTED for that GPU, and one in ``failing`` answers the given status.
Strict like the library: an unknown handle, or a memory type, temperature sensor or metric, or clock type
outside amd-smi's enums answers AMDSMI_STATUS_INVAL; the other memory types, sensors and clocks answer
other values than VRAM, the hotspot and the GFX clock, so a backend asking the wrong one reads a wrong figure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.fakes.shared_library import FakeLibrary, check_enum, device_function, out

NOT_AVAILABLE = 0xFFFF
MI300X = "AMD Instinct MI300X"
GIB = 1024**3
_STATUS_SUCCESS, _STATUS_INVAL, _STATUS_NOT_SUPPORTED, _STATUS_DRIVER_NOT_LOADED = 0, 1, 2, 34
#: amd-smi's enum sizes: memory types, temperature metrics, clock types; sensors are 0..7 on the GPU.
_MEMORY_TYPES, _TEMPERATURE_METRICS, _CLOCK_TYPES, _GPU_SENSORS = 3, 15, 10, 8
_HOTSPOT, _GFX_CLOCK, _VRAM = 1, 0, 0


@dataclass
class FakeAmdProcess:
    pid: int
    vram_bytes: int
    gfx_ns: int  # cumulative GFX engine time
    name: str = "python3"


@dataclass
class FakeAmdGpu:
    uuid: str
    market_name: str = MI300X
    gfx_activity: int = 0  # percent, NOT_AVAILABLE where the firmware has none
    umc_activity: int = 0
    mm_activity: int = 0
    vram_total: int = 192 * GIB
    vram_used: int = 0
    current_socket_power: int = 150  # W
    average_socket_power: int = NOT_AVAILABLE
    energy_ticks: int = 0
    counter_resolution_uj: float = 15.259
    hotspot_c: int = 40
    edge_c: int = 33  # the other sensors
    gfx_clock_mhz: int = 2100
    other_clock_mhz: int = 1300  # the memory, SoC and fabric clocks
    gtt_used: int = 3 * GIB  # system memory mapped for the GPU (the other memory types)
    ecc_correctable: int = 0
    ecc_uncorrectable: int = 0
    xgmi_read_kb: list[int] = field(default_factory=lambda: [0] * 7)
    xgmi_write_kb: list[int] = field(default_factory=lambda: [0] * 7)
    processes: list[FakeAmdProcess] = field(default_factory=list)
    unsupported: set[str] = field(default_factory=set)
    failing: dict[str, int] = field(default_factory=dict)


class FakeLibAmdSmi(FakeLibrary):
    invalid_status = _STATUS_INVAL

    def __init__(self, gpus: list[FakeAmdGpu], driver_loaded: bool = True) -> None:
        super().__init__()
        self.gpus = gpus
        self.driver_loaded = driver_loaded

    def device_of(self, handle: Any) -> FakeAmdGpu | None:
        index = (handle.value or 0) - 0x1000
        return self.gpus[index] if 0 <= index < len(self.gpus) else None

    def c_amdsmi_init(self, flags: int) -> int:
        return _STATUS_SUCCESS if self.driver_loaded else _STATUS_DRIVER_NOT_LOADED

    def c_amdsmi_shut_down(self) -> int:
        return _STATUS_SUCCESS

    def c_amdsmi_get_socket_handles(self, count: Any, handles: Any) -> int:
        out(count).value = 1
        if handles:
            handles[0] = 0x500
        return _STATUS_SUCCESS

    def c_amdsmi_get_processor_handles(self, socket: Any, count: Any, handles: Any) -> int:
        out(count).value = len(self.gpus)
        if handles:
            for index in range(len(self.gpus)):
                handles[index] = 0x1000 + index
        return _STATUS_SUCCESS

    @device_function
    def c_amdsmi_get_gpu_device_uuid(self, gpu: FakeAmdGpu, length: Any, buffer: Any) -> None:
        buffer.value = gpu.uuid.encode()

    @device_function
    def c_amdsmi_get_gpu_asic_info(self, gpu: FakeAmdGpu, info: Any) -> None:
        asic = out(info)
        asic.market_name, asic.vendor_name = gpu.market_name.encode(), b"Advanced Micro Devices Inc. [AMD/ATI]"
        asic.vendor_id, asic.device_id, asic.rev_id = 0x1002, 0x74A1, 0
        asic.asic_serial, asic.num_of_compute_units, asic.target_graphics_version = b"5F1D2A", 304, 0x942

    @device_function
    def c_amdsmi_get_gpu_activity(self, gpu: FakeAmdGpu, usage: Any) -> None:
        engine = out(usage)
        engine.gfx_activity, engine.umc_activity, engine.mm_activity = (gpu.gfx_activity, gpu.umc_activity,
                                                                        gpu.mm_activity)

    @device_function
    def c_amdsmi_get_gpu_memory_usage(self, gpu: FakeAmdGpu, memory_type: int, used: Any) -> None:
        out(used).value = gpu.vram_used if check_enum(memory_type, _MEMORY_TYPES) == _VRAM else gpu.gtt_used

    @device_function
    def c_amdsmi_get_gpu_memory_total(self, gpu: FakeAmdGpu, memory_type: int, total: Any) -> None:
        out(total).value = gpu.vram_total if check_enum(memory_type, _MEMORY_TYPES) == _VRAM else 512 * GIB

    @device_function
    def c_amdsmi_get_power_info(self, gpu: FakeAmdGpu, info: Any) -> None:
        power = out(info)
        power.current_socket_power, power.average_socket_power = (gpu.current_socket_power,
                                                                  gpu.average_socket_power)
        power.power_limit = 750

    @device_function
    def c_amdsmi_get_energy_count(self, gpu: FakeAmdGpu, ticks: Any, resolution: Any, timestamp: Any) -> None:
        out(ticks).value, out(resolution).value = gpu.energy_ticks, gpu.counter_resolution_uj

    @device_function
    def c_amdsmi_get_temp_metric(self, gpu: FakeAmdGpu, sensor: int, metric: int, value: Any) -> None:
        check_enum(metric, _TEMPERATURE_METRICS)
        out(value).value = gpu.hotspot_c if check_enum(sensor, _GPU_SENSORS) == _HOTSPOT else gpu.edge_c

    @device_function
    def c_amdsmi_get_clock_info(self, gpu: FakeAmdGpu, clock_type: int, info: Any) -> None:
        clock = out(info)
        gfx = check_enum(clock_type, _CLOCK_TYPES) == _GFX_CLOCK
        clock.clk, clock.min_clk, clock.max_clk = gpu.gfx_clock_mhz if gfx else gpu.other_clock_mhz, 500, 2100

    @device_function
    def c_amdsmi_get_gpu_total_ecc_count(self, gpu: FakeAmdGpu, counts: Any) -> None:
        out(counts).correctable_count, out(counts).uncorrectable_count = (gpu.ecc_correctable,
                                                                          gpu.ecc_uncorrectable)

    @device_function
    def c_amdsmi_get_gpu_metrics_info(self, gpu: FakeAmdGpu, metrics: Any) -> None:
        table = out(metrics)
        for link in range(len(table.xgmi_read_data_acc)):  # links the GPU lacks read as all ones ("N/A")
            table.xgmi_read_data_acc[link] = table.xgmi_write_data_acc[link] = 2**64 - 1
        for link, (read, written) in enumerate(zip(gpu.xgmi_read_kb, gpu.xgmi_write_kb, strict=True)):
            table.xgmi_read_data_acc[link], table.xgmi_write_data_acc[link] = read, written

    @device_function
    def c_amdsmi_get_gpu_process_list(self, gpu: FakeAmdGpu, count: Any, processes: Any) -> None:
        out(count).value = len(gpu.processes)
        for slot, process in enumerate(gpu.processes):
            entry = processes[slot]
            entry.name, entry.pid, entry.mem = process.name.encode(), process.pid, process.vram_bytes
            entry.engine_usage.gfx, entry.memory_usage.vram_mem = process.gfx_ns, process.vram_bytes

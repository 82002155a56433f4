"""A fake of Habana's ``libhlml.so``, loaded by the real ``pyhlml`` package (habana-pyhlml 1.24).

It answers the C functions behind the pyhlml calls the gaudi backend makes, filling pyhlml's own ctypes
structures and returning HLML return codes, so pyhlml raises its real ``HLMLError_*`` classes. Each
accelerator is a :class:`FakeGaudi`; a C function named in ``unsupported`` answers HLML_ERROR_NOT_SUPPORTED
for it and one in ``failing`` answers the given code (``AIP_IS_LOST`` for a device that fell off the bus).
Strict like the library: an unknown handle or index, or a sensor, clock, ECC counter or PCIe counter
outside HLML's enums, answers HLML_ERROR_INVALID_ARGUMENT; the other sensors, clocks and the aggregate ECC
counter answer other values than the AIP sensor, the SoC clock and the volatile counter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.fakes.shared_library import FakeLibrary, check_enum, device_function, out

GIB = 1024**3
_SUCCESS, _INVALID_ARGUMENT, _NOT_SUPPORTED, _DRIVER_NOT_LOADED = 0, 2, 3, 9
AIP_IS_LOST = 15
#: HLML's enum sizes: temperature sensors, clock types, memory error types, ECC counter types, PCIe counters.
_SENSORS, _CLOCKS, _ERROR_TYPES, _COUNTER_TYPES, _PCIE_COUNTERS = 6, 4, 2, 2, 2


@dataclass
class FakeGaudi:
    uuid: str
    name: str = "HL-325L"  # Gaudi 3 OAM
    aip_util: int = 0  # percent
    memory_total: int = 128 * GIB
    memory_used: int = 0
    power_mw: int = 200_000
    energy_mj: int = 0
    temp_c: int = 35
    soc_clock_mhz: int = 1600
    other_clock_mhz: int = 1200  # the IC, MME and TPC clocks
    board_temp_c: int = 28  # the sensors other than the AIP's
    throttle_mask: int = 0
    ecc: dict[int, int] = field(default_factory=lambda: {0: 0, 1: 0})  # HLML memory error type -> count
    ecc_aggregate: dict[int, int] = field(default_factory=lambda: {0: 900, 1: 3})  # over the board's life
    pcie_kib_per_s: dict[int, int] = field(default_factory=lambda: {0: 0, 1: 0})  # 0: TX, 1: RX
    unsupported: set[str] = field(default_factory=set)
    failing: dict[str, int] = field(default_factory=dict)


class FakeLibHlml(FakeLibrary):
    missing_status = _NOT_SUPPORTED
    invalid_status = _INVALID_ARGUMENT

    def __init__(self, devices: list[FakeGaudi], driver_loaded: bool = True) -> None:
        super().__init__()
        self.devices = devices
        self.driver_loaded = driver_loaded

    def device_of(self, handle: Any) -> FakeGaudi | None:
        index = handle.value - 0x2000
        return self.devices[index] if 0 <= index < len(self.devices) else None

    def c_hlml_init(self) -> int:
        return _SUCCESS if self.driver_loaded else _DRIVER_NOT_LOADED

    def c_hlml_shutdown(self) -> int:
        return _SUCCESS

    def c_hlml_device_get_count(self, count: Any) -> int:
        out(count).value = len(self.devices)
        return _SUCCESS

    def c_hlml_device_get_handle_by_index(self, index: int, handle: Any) -> int:
        if not 0 <= getattr(index, "value", index) < len(self.devices):
            return _INVALID_ARGUMENT
        out(handle).value = 0x2000 + getattr(index, "value", index)
        return _SUCCESS

    @device_function
    def c_hlml_device_get_uuid(self, device: FakeGaudi, buffer: Any, length: int) -> None:
        out(buffer).value = device.uuid.encode()

    @device_function
    def c_hlml_device_get_name(self, device: FakeGaudi, buffer: Any, length: Any) -> None:
        out(buffer).value = device.name.encode()

    @device_function
    def c_hlml_device_get_utilization_rates(self, device: FakeGaudi, utilization: Any) -> None:
        out(utilization).aip = device.aip_util

    @device_function
    def c_hlml_device_get_memory_info(self, device: FakeGaudi, memory: Any) -> None:
        info = out(memory)
        info.total, info.used, info.free = device.memory_total, device.memory_used, (
            device.memory_total - device.memory_used)

    @device_function
    def c_hlml_device_get_power_usage(self, device: FakeGaudi, power: Any) -> None:
        out(power).value = device.power_mw

    @device_function
    def c_hlml_device_get_total_energy_consumption(self, device: FakeGaudi, energy: Any) -> None:
        out(energy).value = device.energy_mj

    @device_function
    def c_hlml_device_get_temperature(self, device: FakeGaudi, sensor: int, temp: Any) -> None:
        on_aip = check_enum(sensor, _SENSORS) == 0
        out(temp).value = device.temp_c if on_aip else device.board_temp_c

    @device_function
    def c_hlml_device_get_clock_info(self, device: FakeGaudi, clock_type: int, speed: Any) -> None:
        soc = check_enum(clock_type, _CLOCKS) == 0
        out(speed).value = device.soc_clock_mhz if soc else device.other_clock_mhz

    @device_function
    def c_hlml_device_get_current_clocks_throttle_reasons(self, device: FakeGaudi, reasons: Any) -> None:
        out(reasons).value = device.throttle_mask

    @device_function
    def c_hlml_device_get_total_ecc_errors(self, device: FakeGaudi, error_type: int, counter: int, count: Any) -> None:
        volatile = check_enum(counter, _COUNTER_TYPES) == 0
        out(count).value = (device.ecc if volatile else device.ecc_aggregate)[check_enum(error_type, _ERROR_TYPES)]

    @device_function
    def c_hlml_device_get_pcie_throughput(self, device: FakeGaudi, counter: int, value: Any) -> None:
        out(value).value = device.pcie_kib_per_s[check_enum(counter, _PCIE_COUNTERS)]

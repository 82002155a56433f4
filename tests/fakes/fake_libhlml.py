"""A fake of Habana's ``libhlml.so``, loaded by the real ``pyhlml`` package (habana-pyhlml 1.24).

It answers the C functions behind the pyhlml calls the gaudi backend makes, filling pyhlml's own ctypes
structures and returning HLML return codes, so pyhlml raises its real ``HLMLError_*`` classes. Each
accelerator is a :class:`FakeGaudi`; a C function named in ``unsupported`` answers HLML_ERROR_NOT_SUPPORTED
for it and one in ``failing`` answers the given code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.fakes.shared_library import FakeLibrary, device_function, out

GIB = 1024**3
_SUCCESS, _NOT_SUPPORTED, _DRIVER_NOT_LOADED = 0, 3, 9


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
    throttle_mask: int = 0
    ecc: dict[int, int] = field(default_factory=lambda: {0: 0, 1: 0})  # HLML memory error type -> count
    pcie_kib_per_s: dict[int, int] = field(default_factory=lambda: {0: 0, 1: 0})  # 0: TX, 1: RX
    unsupported: set[str] = field(default_factory=set)
    failing: dict[str, int] = field(default_factory=dict)


class FakeLibHlml(FakeLibrary):
    missing_status = _NOT_SUPPORTED

    def __init__(self, devices: list[FakeGaudi], driver_loaded: bool = True) -> None:
        super().__init__()
        self.devices = devices
        self.driver_loaded = driver_loaded

    def device_of(self, handle: Any) -> FakeGaudi:
        return self.devices[handle.value - 0x2000]

    def c_hlml_init(self) -> int:
        return _SUCCESS if self.driver_loaded else _DRIVER_NOT_LOADED

    def c_hlml_shutdown(self) -> int:
        return _SUCCESS

    def c_hlml_device_get_count(self, count: Any) -> int:
        out(count).value = len(self.devices)
        return _SUCCESS

    def c_hlml_device_get_handle_by_index(self, index: int, handle: Any) -> int:
        out(handle).value = 0x2000 + index
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
        out(temp).value = device.temp_c

    @device_function
    def c_hlml_device_get_clock_info(self, device: FakeGaudi, clock_type: int, speed: Any) -> None:
        out(speed).value = device.soc_clock_mhz

    @device_function
    def c_hlml_device_get_current_clocks_throttle_reasons(self, device: FakeGaudi, reasons: Any) -> None:
        out(reasons).value = device.throttle_mask

    @device_function
    def c_hlml_device_get_total_ecc_errors(self, device: FakeGaudi, error_type: int, counter: int, count: Any) -> None:
        out(count).value = device.ecc[error_type]

    @device_function
    def c_hlml_device_get_pcie_throughput(self, device: FakeGaudi, counter: int, value: Any) -> None:
        out(value).value = device.pcie_kib_per_s[counter]

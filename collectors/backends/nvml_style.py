"""Readings that NVML and its copies (Habana's HLML) name alike: ``<api>DeviceGetMemoryInfo`` and so on,
in the same units (bytes, mW, mJ counter, degrees C)."""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from fleetmeter.collectors.backends.library_query import LibraryQuery
from fleetmeter.collectors.readings import Counter, DeviceReading

U64_MJ_IN_J = 2**64 / 1000  # where a 64-bit millijoule counter wraps, in joules


def read_board(q: LibraryQuery, api: str, key: Hashable, handle: Any, temp_sensor: int,
               reading: DeviceReading) -> None:
    """Memory, power, the energy counter and temperature, from ``<api>DeviceGet...`` (api: nvml, hlml)."""
    memory = q(key, f"{api}DeviceGetMemoryInfo", handle)
    if memory is not None:
        reading.mem_used_bytes, reading.mem_total_bytes = int(memory.used), int(memory.total)
    power_mw = q(key, f"{api}DeviceGetPowerUsage", handle)
    reading.power_w = None if power_mw is None else power_mw / 1000
    energy_mj = q(key, f"{api}DeviceGetTotalEnergyConsumption", handle)
    if energy_mj is not None:
        reading.counters["energy_j"] = Counter(energy_mj / 1000, U64_MJ_IN_J)
    temp = q(key, f"{api}DeviceGetTemperature", handle, temp_sensor)
    reading.temp_c = None if temp is None else float(temp)

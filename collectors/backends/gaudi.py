"""Intel Gaudi accelerators through ``pyhlml`` (Habana's Python wrapper of ``libhlml.so``).

HLML is modelled on NVML: a device handle per accelerator, readings in base units (mW, mJ, bytes), and
one error class per return code (``HLMLError_NotSupported``, ...). The mapping to the sample columns is in
schemas/sample_v1.md ("Intel Gaudi"). HLML has no per-process list, so a Gaudi is attributed by
scheduler rules and Kubernetes device assignments, never split between processes.
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
from fleetmeter.collectors.backends.nvml_style import read_board
from fleetmeter.collectors.readings import Counter, Device, DeviceReading

_U64 = float(2**64)
#: HLML clock-throttle reason bits -> the sample's reason names (the nearest NVIDIA-named reason).
THROTTLE_REASONS = {0x1: "sw_power_cap", 0x2: "sw_thermal"}


def hlml_query(hlml: ModuleType, codes: Any) -> LibraryQuery:
    unsupported = {codes.HLML_ERROR_NOT_SUPPORTED}
    nothing_now = {codes.HLML_ERROR_NOT_FOUND, codes.HLML_ERROR_TIMEOUT, codes.HLML_ERROR_NO_DATA}

    def classify(exc: Any) -> Outcome:
        if exc.value in unsupported:
            return Outcome.UNSUPPORTED
        return Outcome.NOTHING_NOW if exc.value in nothing_now else Outcome.FAILED

    return LibraryQuery(hlml, hlml.HLMLError, classify)


class GaudiBackend:
    name = "gaudi"

    def __init__(self, node: str, hlml: ModuleType, types: ModuleType) -> None:
        self.node = node
        self._hlml = hlml
        self._types = types
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # pyhlml prints its own complaint before raising
                hlml.hlmlInit()
        except hlml.HLMLError as exc:
            raise BackendUnavailable("HLML did not initialise: Habana's libhlml.so is missing "
                                     f"(habanalabs-firmware-tools) or the habanalabs driver is not loaded ({exc})"
                                     ) from exc
        self._q = hlml_query(hlml, types.HLML_RETURN)
        self._handles: list[tuple[Device, Any]] = []
        for index in range(self._q("system", "hlmlDeviceGetCount") or 0):
            handle = self._q(("index", index), "hlmlDeviceGetHandleByIndex", index)
            uuid = None if handle is None else self._q(("index", index), "hlmlDeviceGetUUID", handle)
            if uuid:
                name = self._q(uuid, "hlmlDeviceGetName", handle) or b""
                model = f"Intel Gaudi {name.decode(errors='replace')}".strip()
                self._handles.append((Device(node, uuid.decode(errors="replace"), index, "hpu", "intel", model),
                                      handle))
        if not self._handles:
            raise BackendUnavailable("HLML found no Gaudi devices on this node")

    def discover(self) -> list[Device]:
        return [device for device, _ in self._handles]

    def read(self, now_ms: int) -> list[DeviceReading]:
        return [self._read(device, handle) for device, handle in self._handles]

    def read_errors(self) -> Mapping[str, int]:
        return self._q.errors

    def close(self) -> None:
        self._q("system", "hlmlShutdown")

    def _read(self, device: Device, handle: Any) -> DeviceReading:
        q, types, key = self._q, self._types, device.uuid
        reading = DeviceReading(device=device)
        utilization = q(key, "hlmlDeviceGetUtilizationRates", handle)
        reading.util_compute = None if utilization is None else min(1.0, utilization.aip / 100)
        read_board(q, "hlml", key, handle, types.HLML_TEMPERATURE_SENSORS.HLML_TEMPERATURE_ON_AIP, reading)
        clock = q(key, "hlmlDeviceGetClockInfo", handle, types.HLML_CLOCK_TYPE.HLML_CLOCK_SOC)
        reading.sm_clock_mhz = None if clock is None else float(clock)
        mask = q(key, "hlmlDeviceGetCurrentClocksThrottleReasons", handle)
        reading.throttle_reasons = None if mask is None else tuple(
            name for bit, name in THROTTLE_REASONS.items() if mask & bit)
        errors = types.HLML_MEMORY_ERROR_TYPE
        for column, error_type in (("ecc_corrected", errors.HLML_MEMORY_ERROR_TYPE_CORRECTED),
                                   ("ecc_uncorrected", errors.HLML_MEMORY_ERROR_TYPE_UNCORRECTED)):
            count = q((key, column), "hlmlDeviceGetTotalECCErrors", handle, error_type,
                      types.HLML_ECC_COUNTER_TYPE.HLML_VOLATILE_ECC)
            if count is not None:
                reading.counters[column] = Counter(float(count), _U64)
        pcie = types.HLML_PCIE_UTIL_COUNTER
        for column, counter in (("pcie_tx_bytes", pcie.HLML_PCIE_UTIL_TX_BYTES),
                                ("pcie_rx_bytes", pcie.HLML_PCIE_UTIL_RX_BYTES)):
            kib_per_s = q((key, column), "hlmlDeviceGetPCIEThroughput", handle, counter)
            if kib_per_s is not None:
                reading.rates[column] = kib_per_s * 1024.0
        return reading


def create(node: str) -> GaudiBackend:
    """BackendUnavailable when pyhlml or Habana's libhlml.so is missing (no Gaudi stack on this node)."""
    try:
        hlml = importlib.import_module("pyhlml.main")
        types = importlib.import_module("pyhlml.pyhlml_types_generated")
    except ImportError as exc:
        raise BackendUnavailable("the gaudi backend needs pyhlml: pip install 'fleetmeter[gaudi]'") from exc
    return GaudiBackend(node, hlml, types)

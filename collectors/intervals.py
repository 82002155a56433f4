"""Turn successive device readings into sample rows, each covering the interval since the last scrape.

The first reading of a device only primes its state: a row needs two readings to bound its interval.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from collectors.counters import counter_delta
from collectors.readings import Counter, DeviceReading, Owner

#: Sample columns that are amounts over the interval: counter deltas, or rate x interval.
AMOUNT_COLUMNS: tuple[str, ...] = (
    "energy_j",
    "ecc_corrected",
    "ecc_uncorrected",
    "pcie_tx_bytes",
    "pcie_rx_bytes",
    "nvlink_tx_bytes",
    "nvlink_rx_bytes",
)
_FLOAT_AMOUNTS = frozenset({"energy_j"})


@dataclass(frozen=True, slots=True)
class _Seen:
    ts_ms: int
    counters: dict[str, Counter]
    rates: dict[str, float]


def _rates_of(reading: DeviceReading) -> dict[str, float]:
    """Per-second rates, with power standing in for the energy rate where the device has no counter."""
    if reading.power_w is None or "energy_j" in reading.rates:
        return reading.rates
    return reading.rates | {"energy_j": reading.power_w}


def interval_amount(column: str, now: DeviceReading, rates: dict[str, float], seen: _Seen,
                    interval_s: float) -> float | None:
    """The amount of ``column`` during the interval: a counter delta, else the mean rate x interval."""
    counter, previous = now.counters.get(column), seen.counters.get(column)
    if counter is not None and previous is not None:
        return counter_delta(previous.value, counter.value, counter.wrap_at)
    rate = rates.get(column)
    if rate is None:
        return None
    previous_rate = seen.rates.get(column)
    mean_rate = rate if previous_rate is None else (rate + previous_rate) / 2
    return mean_rate * interval_s


class IntervalBuilder:
    """Keeps each device's previous reading; emits rows for the intervals between readings.

    An interval longer than ``max_interval_s`` (the device vanished, the backend failed for a while)
    is not reported as one long row of stale readings: the device is primed again and the gap counted.
    """

    def __init__(self, cluster: str, max_interval_s: float) -> None:
        self.cluster = cluster
        self.max_interval_s = max_interval_s
        self.gaps = 0
        self.clock_regressions = 0
        self._seen: dict[str, _Seen] = {}

    def rows(
        self,
        readings: Iterable[DeviceReading],
        ts_ms: int,
        seq: int,
        owner_of: Callable[[DeviceReading], Owner],
    ) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for reading in readings:
            rates = _rates_of(reading)
            seen = self._seen.get(reading.device.uuid)
            self._seen[reading.device.uuid] = _Seen(ts_ms, reading.counters, rates)
            if seen is None:
                continue
            interval_s = (ts_ms - seen.ts_ms) / 1000
            if interval_s <= 0:
                self.clock_regressions += 1
                continue
            if interval_s > self.max_interval_s:
                self.gaps += 1
                continue
            rows.append(self._row(reading, rates, seen, interval_s, seq, owner_of(reading)))
        return rows

    def _row(self, reading: DeviceReading, rates: dict[str, float], seen: _Seen, interval_s: float,
             seq: int, owner: Owner) -> dict[str, Any]:
        device = reading.device
        row: dict[str, Any] = {
            "ts": seen.ts_ms,
            "interval_s": interval_s,
            "cluster": self.cluster,
            "node": device.node,
            "device_uuid": device.uuid,
            "device_index": device.index,
            "device_kind": device.kind,
            "parent_uuid": device.parent_uuid,
            "vendor": device.vendor,
            "model": device.model,
            "tenant": owner.tenant,
            "job_id": owner.job_id,
            "util_compute": reading.util_compute,
            "util_mem_bw": reading.util_mem_bw,
            "sm_active": reading.sm_active,
            "tensor_active": reading.tensor_active,
            "mem_used_bytes": reading.mem_used_bytes,
            "mem_total_bytes": reading.mem_total_bytes,
            "power_w": reading.power_w,
            "temp_c": reading.temp_c,
            "sm_clock_mhz": reading.sm_clock_mhz,
            "throttle_reasons": reading.throttle_reasons,
            "xid_errors": reading.xid_errors,
            "processes": None
            if reading.processes is None
            else [{"pid": p.pid, "used_memory_bytes": p.used_memory_bytes} for p in reading.processes],
            "seq": seq,
            "extras": reading.extras or None,
        }
        for column in AMOUNT_COLUMNS:
            amount = interval_amount(column, reading, rates, seen, interval_s)
            row[column] = amount if amount is None or column in _FLOAT_AMOUNTS else round(amount)
        return row

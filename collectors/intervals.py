"""Turn successive device readings into sample rows, each covering the interval since the last scrape.

The first reading of a device only primes its state: a row needs two readings to bound its interval.
A device that several owners share becomes one row per owner (schemas/sample_v1.md, "Shared devices").
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from fleetmeter.collectors.attribution.sharing import Share, largest_remainder
from fleetmeter.collectors.counters import counter_delta
from fleetmeter.collectors.readings import Counter, DeviceReading

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
        shares_of: Callable[[DeviceReading], list[Share]],
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
            rows.extend(per_share(self._row(reading, rates, seen, interval_s, seq), shares_of(reading)))
        return rows

    def _row(self, reading: DeviceReading, rates: dict[str, float], seen: _Seen, interval_s: float,
             seq: int) -> dict[str, Any]:
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


def per_share(row: dict[str, Any], shares: list[Share]) -> list[dict[str, Any]]:
    """A device's row as one row per owner: amounts split in proportion (integers by largest remainder,
    so that the parts add up to the device's total), XID events on the row of the largest share.

    Each row also holds ``workloads``, the owner's containers with their parts of its share (Share.workloads):
    /metrics reads it, the wire does not (it is no sample column; ``rows_to_batch`` takes the schema's).
    """
    if len(shares) == 1 and shares[0].fraction is None:  # the usual case, once per device per scrape: no copy
        share = shares[0]
        row.update(tenant=share.owner.tenant, job_id=share.owner.job_id, share=None, share_rule=None,
                   workloads=share.workloads)
        return [row]
    fractions = [share.fraction or 0.0 for share in shares]
    rows = [row | {"tenant": share.owner.tenant, "job_id": share.owner.job_id, "share": share.fraction,
                   "share_rule": share.rule, "workloads": share.workloads} for share in shares]
    for column in AMOUNT_COLUMNS:
        if row[column] is None:
            continue
        parts = ([row[column] * fraction for fraction in fractions] if column in _FLOAT_AMOUNTS
                 else largest_remainder(row[column], fractions))
        for part, amount in zip(rows, parts, strict=True):
            part[column] = amount
    largest = max(range(len(rows)), key=lambda i: fractions[i])
    for i, part in enumerate(rows):
        if i != largest and part["xid_errors"] is not None:
            part["xid_errors"] = ()
    return rows

"""What a correct pipeline stores, computed again in plain Python from the sample rows, without fleetmeter's code.

- :func:`broken_rules`: the rules of schemas/sample_v1.md ("Valid values"), written out again, so that a
  test knows which rows must be stored and which quarantined;
- :func:`windows`, :func:`job_devices`, :func:`jobs`: every measure of the rollup tables;
- :data:`VALID`: each column's valid values, which also drive the fuzzing strategies (tests/strategies.py).

Rows are dicts keyed by column name with ``ts`` in epoch ms, as ``rows_to_batch`` takes them.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

Row = dict[str, Any]
Key = tuple[Any, ...]

LABEL_CHARS = 256
EARLIEST_TS_MS = 946_684_800_000  # 2000-01-01
MAX_POWER_W = 5000.0
SHARE_RULES = ("process_util", "equal")
BINS = 20


@dataclass(frozen=True)
class Valid:
    """The valid values of one column: a closed numeric range, a label, or a list checked item by item."""

    low: float | None = None
    high: float | None = None
    label_chars: int | None = None  # a string: at most this many characters, no control characters
    items: int | None = None  # a list or map: at most this many entries, each valid per ``item``
    item: Callable[[Any], bool] | None = None
    nullable: bool = True


def _is_control(character: str) -> bool:
    """C0, DEL and C1: what breaks a terminal, a CSV file or a log line."""
    return ord(character) < 32 or 127 <= ord(character) <= 159


def _is_label(value: Any, chars: int) -> bool:
    return isinstance(value, str) and len(value) <= chars and not any(map(_is_control, value))


def _number_in(value: Any, low: float, high: float) -> bool:
    return isinstance(value, int | float) and not math.isnan(value) and low <= value <= high


def _process(process: dict[str, Any] | None) -> bool:
    if process is None:
        return False
    pid, memory = process["pid"], process["used_memory_bytes"]
    return pid is not None and pid >= 0 and (memory is None or memory >= 0)


def _extra(entry: tuple[str, float | None]) -> bool:
    key, value = entry
    return _is_label(key, LABEL_CHARS) and (value is None or math.isfinite(value))


LABEL = Valid(label_chars=LABEL_CHARS)
REQUIRED_LABEL = Valid(label_chars=LABEL_CHARS, nullable=False)
RATIO = Valid(0.0, 1.0)
BYTES = Valid(0, 2**53)
ERRORS = Valid(0, 2**32 - 1)

VALID: dict[str, Valid] = {
    "ts": Valid(EARLIEST_TS_MS, None, nullable=False),  # and not after the clock (see broken_rules)
    "interval_s": Valid(0.0, 3600.0, nullable=False),  # above zero
    "cluster": REQUIRED_LABEL, "node": REQUIRED_LABEL, "device_uuid": REQUIRED_LABEL,
    "device_index": Valid(0, 65_535, nullable=False),
    "device_kind": REQUIRED_LABEL, "parent_uuid": LABEL, "vendor": REQUIRED_LABEL, "model": REQUIRED_LABEL,
    "tenant": REQUIRED_LABEL, "job_id": LABEL,
    "util_compute": RATIO, "util_mem_bw": RATIO, "sm_active": RATIO, "tensor_active": RATIO,
    "mem_used_bytes": BYTES, "mem_total_bytes": BYTES,  # and used <= total
    "power_w": Valid(0.0, MAX_POWER_W),
    "energy_j": Valid(0.0, None),  # and at most 5 kW over the interval
    "temp_c": Valid(-50.0, 200.0),
    "sm_clock_mhz": Valid(0.0, 10_000.0),
    "throttle_reasons": Valid(items=32, item=lambda reason: _is_label(reason, 64)),
    "ecc_corrected": ERRORS, "ecc_uncorrected": ERRORS,
    "xid_errors": Valid(items=1000, item=lambda code: code is not None and code >= 0),
    "pcie_tx_bytes": BYTES, "pcie_rx_bytes": BYTES, "nvlink_tx_bytes": BYTES, "nvlink_rx_bytes": BYTES,
    "processes": Valid(items=4096, item=_process),
    "seq": Valid(0, 2**63 - 1, nullable=False),
    "extras": Valid(items=256, item=_extra),
    "share": RATIO,
    "share_rule": Valid(label_chars=LABEL_CHARS),  # and one of the two rules
}


def _column_ok(name: str, value: Any) -> bool:
    rule = VALID[name]
    if value is None:
        return rule.nullable
    if rule.label_chars is not None:
        return _is_label(value, rule.label_chars)
    if rule.items is not None:
        entries = list(value.items()) if isinstance(value, dict) else list(value)
        if name == "extras" and len({key for key, _ in entries}) < len(entries):
            return False  # a key given twice: no reader can tell which value holds
        return len(entries) <= rule.items and all(rule.item(entry) for entry in entries)  # type: ignore[misc]
    low = -math.inf if rule.low is None else rule.low
    high = math.inf if rule.high is None else rule.high
    return _number_in(value, low, high)


def broken_rules(row: Row, now_ms: int, max_future_s: float = 300.0, max_lateness_s: float | None = None,
                 ) -> set[str]:
    """The columns whose value breaks a rule (plus ``ts`` against the clock); empty for a valid row."""
    broken = {name for name in VALID if not _column_ok(name, row.get(name))}
    if row.get("interval_s") == 0.0:
        broken.add("interval_s")
    ts, interval = row.get("ts"), row.get("interval_s")
    if ts is not None and (ts > now_ms + max_future_s * 1000
                           or (max_lateness_s is not None and ts < now_ms - max_lateness_s * 1000)):
        broken.add("ts")
    used, total = row.get("mem_used_bytes"), row.get("mem_total_bytes")
    if used is not None and total is not None and used > total:
        broken.add("mem_used_bytes")
    energy = row.get("energy_j")
    if energy is not None and "interval_s" not in broken and energy > MAX_POWER_W * interval:
        broken.add("energy_j")
    if row.get("share_rule") not in (None, *SHARE_RULES):
        broken.add("share_rule")
    return broken


#: How the pipeline's reasons end; what stands before the ending names the column (``temp_c_out_of_range``).
_REASON_ENDINGS = ("_missing", "_invalid", "_out_of_range", "_negative", "_too_large", "_not_finite", "_too_long",
                   "_in_future", "_too_old", "_unknown", "_above_total")
_REASON_PREFIXES = {"interval": "interval_s", "mem_used": "mem_used_bytes"}


def reason_column(reason: str) -> str:
    """The column a quarantine reason blames: ``temp_c_out_of_range`` -> ``temp_c``, ``interval_invalid`` ->
    ``interval_s``."""
    for ending in _REASON_ENDINGS:
        if reason.endswith(ending):
            prefix = reason.removesuffix(ending)
            return _REASON_PREFIXES.get(prefix, prefix)
    raise AssertionError(f"a reason of no known form: {reason}")


def deduplicated(rows: Iterable[Row]) -> list[Row]:
    """The first of each ``(device_uuid, ts, tenant, job_id)``: what the warehouse keeps of replays."""
    seen: dict[Key, Row] = {}
    for row in rows:
        seen.setdefault((row["device_uuid"], row["ts"], row["tenant"], row["job_id"]), row)
    return list(seen.values())


# -- rollups --------------------------------------------------------------------------------------

SUMMED = ("samples", "device_seconds", "util_known_seconds", "busy_seconds",
          "sm_active_seconds", "sm_active_known_seconds", "tensor_active_seconds", "tensor_active_known_seconds",
          "energy_j", "ecc_corrected", "ecc_uncorrected", "xid_events", "mem_bw_active_seconds",
          "mem_bw_known_seconds", "mem_used_byte_seconds", "mem_total_byte_seconds", "mem_known_seconds",
          "energy_known_seconds", "energy_busy_seconds", "shared_seconds")
MAXIMA = ("mem_used_max_bytes", "mem_total_max_bytes")
HISTOGRAMS = ("util_hist_seconds", "sm_hist_seconds", "util_hist_sm_known_seconds")
WINDOW_MEASURES = (*SUMMED, *MAXIMA, *HISTOGRAMS)
EVENT_COUNTS = ("ecc_corrected", "ecc_uncorrected", "xid_events")
#: device_1h's own sums; it holds the window measures but the histogram besides.
HEALTH = ("temp_seconds", "temp_known_seconds", "throttled_seconds", "throttle_known_seconds")
DEVICE_MEASURES = (*SUMMED, *MAXIMA, *HEALTH)
HELD_DOWN = {"hw_thermal", "hw_slowdown", "sw_thermal"}
MINUTE_MS = 60_000


def _floor(moment: datetime, width: str) -> datetime:
    if width == "1m":
        return moment.replace(second=0, microsecond=0)
    if width == "1h":
        return moment.replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0)


def _extras(row: Row) -> dict[str, float | None]:
    extras = row.get("extras") or {}
    return dict(extras.items() if isinstance(extras, dict) else extras)


def capacity_seconds(row: Row) -> float:
    """Device-seconds of a row: its share of the interval; none for a GPU in MIG mode (its instances count)."""
    if (_extras(row).get("mig.enabled") or 0) > 0:
        return 0.0
    share = row.get("share")
    return row["interval_s"] * (1.0 if share is None else share)


def max_known(current: int | None, value: int | None) -> int | None:
    """The larger of two maxima, either unknown (None)."""
    return current if value is None else value if current is None else max(current, value)


def _new_window() -> dict[str, Any]:
    window: dict[str, Any] = {name: 0.0 for name in SUMMED}
    window |= {"samples": 0, "ecc_corrected": 0, "ecc_uncorrected": 0, "xid_events": 0}
    window |= {name: None for name in MAXIMA} | {name: [0.0] * BINS for name in HISTOGRAMS}
    return window


def _bin(value: float) -> int:
    return min(math.floor(value * BINS), BINS - 1)


def row_amounts(row: Row) -> dict[str, Any]:
    """What one row adds to every measure (``mem_used_max_bytes``: its reading)."""
    seconds = capacity_seconds(row)
    amounts = _new_window() | {"samples": 1, "device_seconds": seconds, "energy_j": row.get("energy_j") or 0.0,
                               "ecc_corrected": row.get("ecc_corrected") or 0,
                               "ecc_uncorrected": row.get("ecc_uncorrected") or 0,
                               "xid_events": len(row.get("xid_errors") or []),
                               "mem_used_max_bytes": row.get("mem_used_bytes"),
                               "mem_total_max_bytes": row.get("mem_total_bytes")}
    for reading, weighted, known in (("sm_active", "sm_active_seconds", "sm_active_known_seconds"),
                                     ("tensor_active", "tensor_active_seconds", "tensor_active_known_seconds"),
                                     ("util_mem_bw", "mem_bw_active_seconds", "mem_bw_known_seconds")):
        if row.get(reading) is not None:
            amounts[weighted] = row[reading] * seconds
            amounts[known] = seconds
    if row.get("mem_used_bytes") is not None and row.get("mem_total_bytes") is not None:
        amounts["mem_used_byte_seconds"] = row["mem_used_bytes"] * seconds
        amounts["mem_total_byte_seconds"] = row["mem_total_bytes"] * seconds
        amounts["mem_known_seconds"] = seconds
    if row.get("energy_j") is not None:
        amounts["energy_known_seconds"] = seconds
        amounts["energy_busy_seconds"] = (row.get("util_compute") or 0.0) * seconds
    if row.get("share") is not None:
        amounts["shared_seconds"] = seconds
    amounts |= {name: 0.0 for name in HEALTH}
    health_seconds = row["interval_s"] * (1.0 if row.get("share") is None else row["share"])  # MIG boards too
    if row.get("temp_c") is not None:
        amounts["temp_seconds"] = row["temp_c"] * health_seconds
        amounts["temp_known_seconds"] = health_seconds
    if row.get("throttle_reasons") is not None:
        amounts["throttle_known_seconds"] = health_seconds
        if HELD_DOWN & set(row["throttle_reasons"]):
            amounts["throttled_seconds"] = health_seconds
    util = row.get("util_compute")
    if util is not None:
        amounts["util_known_seconds"] = seconds
        amounts["busy_seconds"] = util * seconds
        amounts["util_hist_seconds"][_bin(util)] = seconds
    if row.get("sm_active") is not None and (util is not None or row["device_kind"] == "mig"):
        amounts["sm_hist_seconds"][_bin(row["sm_active"])] = seconds
    if row.get("sm_active") is not None and util is not None:
        amounts["util_hist_sm_known_seconds"][_bin(util)] = seconds
    return amounts


def _events_before(count: int, offset_ms: int, duration_ms: int) -> int:
    """Of ``count`` events spread evenly over ``duration_ms``, those in its first ``offset_ms`` (half up)."""
    return math.floor(Fraction(count * offset_ms, duration_ms) + Fraction(1, 2))


def minute_pieces(row: Row) -> list[tuple[datetime, dict[str, Any]]]:
    """The row's amounts per minute its interval ``[ts, ts + interval_s)`` overlaps: summed amounts in
    proportion to the time in each minute, event counts as those of evenly spread events falling in the
    minute (running counts at the edges rounded half up), the sample counted in the minute it starts in."""
    start, end = row["ts"], row["ts"] + row["interval_s"] * 1000
    whole = row_amounts(row)
    if end <= start:  # an interval too short to move a float of epoch ms: all of it in its minute
        return [(datetime.fromtimestamp(start // MINUTE_MS * 60, tz=UTC), whole)]
    whole_ms = round(row["interval_s"] * 1000)
    pieces = []
    minute = start // MINUTE_MS
    while minute * MINUTE_MS < end:
        share = (min(end, (minute + 1) * MINUTE_MS) - max(start, minute * MINUTE_MS)) / (end - start)
        piece = {name: value * share for name, value in whole.items()
                 if name in (*SUMMED, *HEALTH) and name not in (*EVENT_COUNTS, "samples")}
        if minute * MINUTE_MS <= start and end <= (minute + 1) * MINUTE_MS:
            piece |= {name: whole[name] for name in EVENT_COUNTS}
        else:
            before = min(max(minute * MINUTE_MS - start, 0), whole_ms)
            after = min(max((minute + 1) * MINUTE_MS - start, 0), whole_ms)
            piece |= {name: _events_before(whole[name], after, whole_ms) - _events_before(whole[name], before, whole_ms)
                      for name in EVENT_COUNTS}
        piece |= {"samples": 1 if minute == start // MINUTE_MS else 0}
        piece |= {name: whole[name] for name in MAXIMA}
        piece |= {name: [value * share for value in whole[name]] for name in HISTOGRAMS}
        pieces.append((datetime.fromtimestamp(minute * 60, tz=UTC), piece))
        minute += 1
    return pieces


def windows(rows: Iterable[Row], width: str, with_node: bool) -> dict[Key, dict[str, Any]]:
    """``util_1m`` (``width="1m"``, ``with_node=True``), ``util_1h`` and ``util_1d`` keyed like the tables."""
    totals: dict[Key, dict[str, Any]] = defaultdict(_new_window)
    for row in rows:
        for minute, piece in minute_pieces(row):
            key: Key = (_floor(minute, width), row["cluster"], row["tenant"], row["job_id"], row["vendor"],
                        row["model"])
            total = totals[(*key, row["node"]) if with_node else key]
            for name in SUMMED:
                total[name] += piece[name]
            for name in MAXIMA:
                total[name] = max_known(total[name], piece[name])
            for name in HISTOGRAMS:
                total[name] = [a + b for a, b in zip(total[name], piece[name], strict=True)]
    return dict(totals)


def device_hours(rows: Iterable[Row]) -> dict[Key, dict[str, Any]]:
    """``device_1h``: per hour, owner and device, every window measure but the histogram, and health."""
    totals: dict[Key, dict[str, Any]] = {}
    for row in rows:
        for minute, piece in minute_pieces(row):
            key: Key = (_floor(minute, "1h"), row["cluster"], row["tenant"], row["job_id"], row["vendor"],
                        row["model"], row["node"], row["device_uuid"])
            if key not in totals:
                totals[key] = {name: value for name, value in _new_window().items() if name not in HISTOGRAMS}
                totals[key] |= {name: 0.0 for name in HEALTH}
            total = totals[key]
            for name in (*SUMMED, *HEALTH):
                total[name] += piece[name]
            for name in MAXIMA:
                total[name] = max_known(total[name], piece[name])
    return totals


JOB_DEVICE_SUMS = ("samples", "device_seconds", "util_known_seconds", "busy_seconds", "energy_j")


def add_job_span(total: dict[str, Any], part: dict[str, Any], sums: tuple[str, ...] = JOB_DEVICE_SUMS) -> None:
    """Merge ``part`` (a job's or a job device's span and sums) into ``total``."""
    total["first_seen"] = min(total["first_seen"], part["first_seen"])
    total["last_seen"] = max(total["last_seen"], part["last_seen"])
    for name in sums:
        total[name] += part[name]
    total["mem_used_max_bytes"] = max_known(total["mem_used_max_bytes"], part["mem_used_max_bytes"])


def job_devices(rows: Iterable[Row]) -> dict[Key, dict[str, Any]]:
    """``job_devices``: per job and device, when it was seen and its sums (rows without a job left out)."""
    totals: dict[Key, dict[str, Any]] = {}
    for row in rows:
        if row["job_id"] is None:
            continue
        key = (row["cluster"], row["tenant"], row["job_id"], row["device_uuid"], row["vendor"], row["model"],
               row["node"])
        start = datetime.fromtimestamp(row["ts"] / 1000, tz=UTC)
        amounts = row_amounts(row)
        one = {name: amounts[name] for name in ("mem_used_max_bytes", *JOB_DEVICE_SUMS)}
        one |= {"first_seen": start, "last_seen": start + timedelta(milliseconds=round(row["interval_s"] * 1000))}
        if key in totals:
            add_job_span(totals[key], one)
        else:
            totals[key] = one
    return totals


def jobs(rows: Iterable[Row]) -> dict[Key, dict[str, Any]]:
    """The ``jobs`` view: one row per job, its span, sums and devices."""
    result: dict[Key, dict[str, Any]] = {}
    devices: dict[Key, set[str]] = defaultdict(set)
    for key, device in job_devices(rows).items():
        job = key[:3]
        devices[job].add(key[3])
        if job in result:
            add_job_span(result[job], device)
        else:
            result[job] = dict(device)
    return {job: total | {"devices": len(devices[job])} for job, total in result.items()}

"""First stage of the pipeline: turn Kafka messages into valid sample rows and quarantined rest.

A message that cannot be read at all (not Arrow IPC, unknown major version, a required column missing or
of an unconvertible type) is rejected whole, with its reason (:func:`decode`). Otherwise each row is
checked (:func:`check`); rows that break a rule are set aside with the first rule they break and the
others proceed. Columns that a newer minor version added are ignored (schemas/sample_v1.md, "Evolving the
schema"). The rules run once over the rows of many messages: their cost is per call, not per row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, get_args

import polars as pl
import pyarrow as pa

from fleetmeter.schemas import wire
from fleetmeter.schemas.sample_v1 import SAMPLE_SCHEMA
from fleetmeter.schemas.sample_v1_columns import ADDED_SINCE_1_0, COLUMNS

#: Longest interval a row may cover; a collector never reports more than a few scrape intervals.
MAX_INTERVAL_S = 3600.0
#: Power above this is a broken reading, not a device (the largest accelerators draw about 1.2 kW).
MAX_POWER_W = 5000.0

#: Longest label (cluster, node, tenant, job id, ...): labels are names that key every rollup, not documents.
MAX_LABEL_CHARS = 256
#: Earliest sample time (2000-01-01): older ones are broken clocks, with or without a lateness bound.
MIN_TS_MS = 946_684_800_000
#: Plausible device temperatures in degrees C, and SM clocks in MHz.
TEMP_C_RANGE = (-50.0, 200.0)
MAX_SM_CLOCK_MHZ = 10_000.0
MAX_DEVICE_INDEX = 65_535
#: Largest per-interval ECC count, and byte count (memory, PCIe, NVLink): far above any device, and low
#: enough that a day of a whole fleet's rows sums in int64 without overflowing.
MAX_ERRORS = 2**32 - 1
MAX_BYTES = 2**53
#: Longest lists a row may carry: throttle reasons (and each one's length), XID events, processes, extras.
MAX_THROTTLE_REASONS, MAX_REASON_CHARS = 32, 64
MAX_XID_EVENTS = 1_000
MAX_PROCESSES = 4_096
MAX_EXTRAS = 256

_LABELS = tuple(field.name for field in SAMPLE_SCHEMA if pa.types.is_string(field.type))
#: C0, DEL and C1 characters (0x9b opens a terminal escape): they break CSV output, terminals and log lines.
_CONTROL_CHARACTERS = r"[\x00-\x1f\x7f-\x9f]"
_RATIOS = ("util_compute", "util_mem_bw", "sm_active", "tensor_active")
_SHARE_RULES = ("process_util", "equal")
_ERRORS = ("ecc_corrected", "ecc_uncorrected")
_BYTES = ("mem_used_bytes", "mem_total_bytes", "pcie_tx_bytes", "pcie_rx_bytes", "nvlink_tx_bytes", "nvlink_rx_bytes")
_NON_NEGATIVE = ("energy_j", *_ERRORS, *_BYTES)
_REQUIRED = tuple(field.name for field in SAMPLE_SCHEMA if not field.nullable)
#: The v1 schema with every column nullable, so that a row missing a required value is quarantined
#: on its own instead of failing the cast of the whole message.
LENIENT_SCHEMA = pa.schema([field.with_nullable(True) for field in SAMPLE_SCHEMA], metadata=SAMPLE_SCHEMA.metadata)
_TYPE_NAMES = {field.name: str(field.type) for field in SAMPLE_SCHEMA}


#: Why a whole message is rejected: short stable labels for metrics, all known at start (so exported at 0).
MessageReason = Literal["unreadable", "unsupported_schema_version", "missing_columns", "wrong_types", "too_large"]
MESSAGE_REASONS: tuple[MessageReason, ...] = get_args(MessageReason)


class MessageRejected(ValueError):
    """The whole message is unreadable; ``reason`` is a short stable label for metrics."""

    def __init__(self, reason: MessageReason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Validated:
    rows: pl.DataFrame  # valid rows, in the schema's column order and types
    rejected: pl.DataFrame  # the other rows, same columns plus ``reason``


def decode(payload: bytes) -> pa.Table:
    """The message's rows in exactly the v1 columns and types (nulls allowed), or :class:`MessageRejected`."""
    try:
        table = wire.decode(payload)
    except wire.WireFormatError as exc:
        reason: MessageReason = "unsupported_schema_version" if "schema version" in str(exc) else "unreadable"
        raise MessageRejected(reason, str(exc)) from exc
    present = set(table.column_names)
    missing = [name for name in COLUMNS if name not in present and name not in ADDED_SINCE_1_0]
    if missing:
        raise MessageRejected("missing_columns", ", ".join(missing))
    for name in ADDED_SINCE_1_0:  # a message of an older minor version
        if name not in present:
            table = table.append_column(name, pa.nulls(table.num_rows, LENIENT_SCHEMA.field(name).type))
    table = table.select(list(COLUMNS))
    if has_v1_types(table.schema):
        return pa.Table.from_arrays(table.columns, schema=LENIENT_SCHEMA)
    try:
        return table.cast(LENIENT_SCHEMA)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, ValueError) as exc:
        raise MessageRejected("wrong_types", str(exc)) from exc


def has_v1_types(schema: pa.Schema) -> bool:
    """Whether each column has exactly its v1 type, nested field names included: then no cast is needed.

    ``==`` on types ignores nested field names, and a corrupted name that is not UTF-8 crashes polars later;
    a cast costs about 0.3 ms per message.
    """
    return all(str(field.type) == _TYPE_NAMES.get(field.name) for field in schema)


def _bad_label(text: pl.Expr, max_chars: int) -> pl.Expr:
    return (text.str.len_chars() > max_chars) | text.str.contains(_CONTROL_CHARACTERS)


def _row_rules(now_ms: pl.Expr, max_future_ms: int, max_lateness_ms: int | None) -> list[tuple[str, pl.Expr]]:
    """Each rule a row must keep, as (reason, an expression true where a row breaks it), in the order reported."""
    rules: list[tuple[str, pl.Expr]] = [
        (f"{name}_missing", pl.col(name).is_null()) for name in _REQUIRED
    ]
    rules += [(f"{name}_invalid", _bad_label(pl.col(name), MAX_LABEL_CHARS)) for name in _LABELS]
    rules += [
        ("interval_invalid", pl.col("interval_s").is_nan() | (pl.col("interval_s") <= 0)),
        ("interval_too_long", pl.col("interval_s") > MAX_INTERVAL_S),
        ("ts_in_future", pl.col("ts").dt.epoch("ms") > now_ms + max_future_ms),
    ]
    if max_lateness_ms is not None:
        rules.append(("ts_too_old", pl.col("ts").dt.epoch("ms") < now_ms - max_lateness_ms))
    rules += [
        (f"{name}_out_of_range", pl.col(name).is_not_null() & ~pl.col(name).is_between(0.0, 1.0))
        for name in _RATIOS
    ]
    rules += [(f"{name}_negative", pl.col(name) < 0) for name in _NON_NEGATIVE]
    rules += [(f"{name}_too_large", pl.col(name) > MAX_ERRORS) for name in _ERRORS]
    rules += [(f"{name}_too_large", pl.col(name) > MAX_BYTES) for name in _BYTES]
    rules += [
        ("ts_out_of_range", pl.col("ts").dt.epoch("ms") < MIN_TS_MS),
        ("device_index_out_of_range", ~pl.col("device_index").is_between(0, MAX_DEVICE_INDEX)),
        ("seq_negative", pl.col("seq") < 0),
        ("energy_j_not_finite", pl.col("energy_j").is_not_null() & ~pl.col("energy_j").is_finite()),
        ("energy_j_out_of_range", pl.col("energy_j") > MAX_POWER_W * pl.col("interval_s")),
        ("power_w_out_of_range", pl.col("power_w").is_not_null() & ~pl.col("power_w").is_between(0.0, MAX_POWER_W)),
        ("temp_c_out_of_range", pl.col("temp_c").is_not_null() & ~pl.col("temp_c").is_between(*TEMP_C_RANGE)),
        ("sm_clock_mhz_out_of_range",
         pl.col("sm_clock_mhz").is_not_null() & ~pl.col("sm_clock_mhz").is_between(0.0, MAX_SM_CLOCK_MHZ)),
        ("throttle_reasons_invalid", (pl.col("throttle_reasons").list.len() > MAX_THROTTLE_REASONS)
         | pl.col("throttle_reasons").list.eval(
             pl.element().is_null() | _bad_label(pl.element(), MAX_REASON_CHARS)).list.any()),
        ("xid_errors_invalid", (pl.col("xid_errors").list.len() > MAX_XID_EVENTS)
         | pl.col("xid_errors").list.eval(pl.element().is_null() | (pl.element() < 0)).list.any()),
        ("processes_invalid", (pl.col("processes").list.len() > MAX_PROCESSES)
         | pl.col("processes").list.eval(pl.element().struct.field("pid").is_null()
                                         | (pl.element().struct.field("pid") < 0)
                                         | (pl.element().struct.field("used_memory_bytes") < 0)).list.any()),
        ("extras_invalid", (pl.col("extras").map.len() > MAX_EXTRAS)
         | (pl.col("extras").map.keys().list.n_unique() < pl.col("extras").map.len())  # a key twice: which holds?
         | pl.col("extras").map.keys().list.eval(_bad_label(pl.element(), MAX_LABEL_CHARS)).list.any()
         | pl.col("extras").map.values().list.eval(~pl.element().is_finite()).list.any()),
        ("mem_used_above_total", pl.col("mem_used_bytes") > pl.col("mem_total_bytes")),
        ("share_out_of_range", pl.col("share").is_not_null() & ~pl.col("share").is_between(0.0, 1.0)),
        ("share_rule_unknown", pl.col("share_rule").is_not_null() & ~pl.col("share_rule").is_in(_SHARE_RULES)),
    ]
    return rules


#: Why a row is rejected: every label the row rules can give, known at start (so exported at 0).
ROW_REASONS = tuple(reason for reason, _ in _row_rules(pl.lit(0), 0, 0))


def _first_broken_rule(now_ms: pl.Expr, max_future_ms: int, max_lateness_ms: int | None) -> pl.Expr:
    """A string expression naming the first rule a row breaks, or null for a valid row."""
    rules = _row_rules(now_ms, max_future_ms, max_lateness_ms)
    # Fold from the last rule to the first so that the first broken rule is the one reported.
    expression: pl.Expr = pl.lit(None, dtype=pl.String)
    for reason, broken in reversed(rules):
        expression = pl.when(broken.fill_null(False)).then(pl.lit(reason)).otherwise(expression)
    return expression


def check(frame: pl.DataFrame, now_ms: int | pl.Expr, max_future_s: float, max_lateness_s: float | None,
          ) -> Validated:
    """Split decoded rows (v1 columns first, any extra columns kept) into valid and rejected rows.

    ``now_ms`` is when the rows were received (epoch ms): one time, or an expression giving each row's.
    Rows older than ``max_lateness_s`` before it are rejected as ``ts_too_old`` (None: no bound).
    """
    now = pl.lit(now_ms, pl.Int64) if isinstance(now_ms, int) else now_ms
    lateness_ms = None if max_lateness_s is None else int(max_lateness_s * 1000)
    checked = frame.with_columns(_first_broken_rule(now, int(max_future_s * 1000), lateness_ms).alias("reason"))
    valid = checked.filter(pl.col("reason").is_null()).drop("reason")
    return Validated(rows=valid, rejected=checked.filter(pl.col("reason").is_not_null()))


def validate(payload: bytes, now_ms: int, max_future_s: float = 300.0, max_lateness_s: float | None = None,
             ) -> Validated:
    """:func:`check` the rows of one message; raise :class:`MessageRejected` if it is unreadable."""
    frame = pl.from_arrow(decode(payload))
    assert isinstance(frame, pl.DataFrame)
    return check(frame, now_ms, max_future_s, max_lateness_s)

"""Hypothesis strategies for sample rows, derived from the schema itself: every column of ``SAMPLE_SCHEMA`` gets
a strategy from its Arrow type and its valid values in tests/oracle.py, so a column that is added or renamed
cannot drop out of the fuzzing unnoticed (``rows`` fails on a column the oracle does not know).

``valid_rows`` draws rows that every rule accepts, edges included (zero, the largest valid value, null where
allowed); ``hostile_rows`` mixes in, column by column, anything the type can hold: NaN, infinities, the whole
int64 range, huge strings, control characters, nulls in required columns, overlong lists.
"""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa
from hypothesis import strategies as st

from fleetmeter.schemas.sample_v1 import SAMPLE_SCHEMA
from tests import oracle

Row = dict[str, Any]
INT_RANGES = {pa.int32(): (-(2**31), 2**31 - 1), pa.int64(): (-(2**63), 2**63 - 1)}
#: The sample schema with every column nullable, to send rows that lack a required value.
LENIENT_SCHEMA = pa.schema([field.with_nullable(True) for field in SAMPLE_SCHEMA], metadata=SAMPLE_SCHEMA.metadata)

any_float = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from(
    [math.nan, math.inf, -math.inf, -0.0, 1e308, -1e308, 5e-324])
any_text = st.one_of(
    st.text(max_size=40),  # any code point, control characters included
    st.sampled_from(["[/bold]", "\x1b[31mred\x1b[0m", "a\nb", "\x00", "\x9b31m", "[link=https://x.example/]x[/link]"]),
    st.sampled_from([257, 100_000, 3_000_000]).map(lambda n: "x" * n),  # just over the limit, to megabytes
)
label_text = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF,
                                   exclude_characters=[chr(c) for c in range(127, 160)]), max_size=12
                     ) | st.just("l" * 256)  # the longest label


def _hostile(field: pa.Field) -> st.SearchStrategy[Any]:
    kind = field.type
    if pa.types.is_timestamp(kind):
        return st.integers(-(2**63) + 1, 2**63 - 1) | st.sampled_from([0, -1, 253_402_300_800_000])
    if pa.types.is_floating(kind):
        return any_float
    if pa.types.is_integer(kind):
        return st.integers(*INT_RANGES[kind])
    if pa.types.is_string(kind):
        return any_text
    if pa.types.is_map(kind):  # keys may repeat
        entries = st.lists(st.tuples(any_text | st.just("mig.enabled"), st.none() | any_float), max_size=4)
        return entries | st.integers(257, 300).map(lambda n: [(f"k{i}", 0.0) for i in range(n)])
    if pa.types.is_list(kind):
        item = kind.value_type
        if pa.types.is_struct(item):
            process = st.fixed_dictionaries({"pid": st.none() | st.integers(*INT_RANGES[pa.int64()]),
                                             "used_memory_bytes": st.none() | st.integers(*INT_RANGES[pa.int64()])})
            return st.lists(st.none() | process, max_size=3) | st.just([{"pid": 1, "used_memory_bytes": 0}] * 4097)
        text = pa.types.is_string(item)
        values = st.none() | (any_text if text else st.integers(*INT_RANGES[item]))
        overlong = st.sampled_from([33, 1001]).map(lambda n: ["x"] * n if text else [0] * n)  # past each bound
        return st.lists(values, max_size=4) | overlong
    raise AssertionError(f"no hostile strategy for {field}")


def _valid(field: pa.Field, ts_ms: tuple[int, int]) -> st.SearchStrategy[Any]:
    rule = oracle.VALID[field.name]
    kind = field.type
    if pa.types.is_timestamp(kind):
        return st.integers(*ts_ms)
    if rule.label_chars is not None:
        return label_text
    if rule is oracle.RATIO:  # the histogram's bin edges, the idle threshold among them
        return st.floats(0.0, 1.0) | st.sampled_from([i / oracle.BINS for i in range(oracle.BINS + 1)])
    if pa.types.is_floating(kind):
        low, high = rule.low or 0.0, 1e6 if rule.high is None else rule.high
        return st.floats(low, high) | st.sampled_from([low, high])
    if pa.types.is_integer(kind):
        low, high = int(rule.low or 0), int(rule.high if rule.high is not None else INT_RANGES[kind][1])
        return st.integers(low, high) | st.sampled_from([low, high])
    if field.name == "throttle_reasons":
        return st.lists(st.sampled_from(["sw_power_cap", "hw_slowdown", "sw_thermal", "gpu_idle"]), max_size=3)
    if field.name == "xid_errors":
        return st.lists(st.sampled_from([13, 31, 43, 48, 63, 64, 74, 79, 94, 95]), max_size=3)
    if field.name == "processes":
        return st.lists(st.fixed_dictionaries({"pid": st.integers(0, 2**22),
                                               "used_memory_bytes": st.none() | st.integers(0, 2**40)}), max_size=3)
    if field.name == "extras":
        return st.lists(st.tuples(st.sampled_from(["mig.enabled", "gpm.dram_active", "gpm.sm_occupancy"]),
                                  st.none() | st.sampled_from([-1.0, 0.0, 1.0]) | st.floats(0, 1)),
                        max_size=3, unique_by=lambda kv: kv[0])
    raise AssertionError(f"no valid strategy for {field}")


def _coherent(row: Row) -> Row:
    """Make the rules between columns hold: memory used within the total, energy within 5 kW, a known rule."""
    if row["mem_used_bytes"] is not None and row["mem_total_bytes"] is not None:
        row["mem_used_bytes"] = min(row["mem_used_bytes"], row["mem_total_bytes"])
    if row["energy_j"] is not None:
        row["energy_j"] = min(row["energy_j"], oracle.MAX_POWER_W * row["interval_s"])
    if row["share_rule"] is not None:
        row["share_rule"] = oracle.SHARE_RULES[len(row["share_rule"]) % 2]
    return row


@st.composite
def valid_rows(draw: st.DrawFn, ts_ms: tuple[int, int], **fixed: st.SearchStrategy[Any]) -> Row:
    """A row every rule accepts; ``fixed`` replaces a column's strategy (small sets of keys, so rows collide)."""
    row: Row = {}
    for field in SAMPLE_SCHEMA:
        strategy = fixed.get(field.name, _valid(field, ts_ms))
        row[field.name] = draw(strategy if not field.nullable or field.name in fixed else st.none() | strategy)
    if row["interval_s"] == 0.0:
        row["interval_s"] = 10.0
    return _coherent(row)


@st.composite
def hostile_rows(draw: st.DrawFn, ts_ms: tuple[int, int]) -> Row:
    """A valid row in which up to three columns, any of them, hold anything their type can."""
    row = draw(valid_rows(ts_ms))
    for name in draw(st.lists(st.sampled_from(SAMPLE_SCHEMA.names), max_size=3, unique=True)):
        row[name] = draw(st.none() | _hostile(SAMPLE_SCHEMA.field(name)))
    return row


def encode_rows(rows: list[Row]) -> pa.RecordBatch:
    """Rows as a record batch of the sample schema, required nulls allowed (``rows_to_batch`` refuses them)."""
    return pa.RecordBatch.from_pydict({name: [row.get(name) for row in rows] for name in LENIENT_SCHEMA.names},
                                      schema=LENIENT_SCHEMA)

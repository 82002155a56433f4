"""Validation of incoming messages: whole-message rejections and per-row quarantine reasons."""

from __future__ import annotations

import math

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetmeter.pipeline.validate import MessageRejected, check, has_v1_types, validate
from fleetmeter.schemas import wire
from fleetmeter.schemas.sample_v1 import SAMPLE_SCHEMA, rows_to_batch
from fleetmeter.schemas.sample_v1_columns import SCHEMA_VERSION_METADATA_KEY
from tests import oracle
from tests.strategies import LENIENT_SCHEMA, encode_rows, hostile_rows

NOW_MS = 1_767_571_200_000
MAX_INTERVAL_S = 3600.0  # schemas/sample_v1.md, "Valid values"


def row(**values: object) -> dict[str, object]:
    base: dict[str, object] = {
        "ts": NOW_MS - 60_000, "interval_s": 10.0, "cluster": "c", "node": "n", "device_uuid": "GPU-1",
        "device_index": 0, "device_kind": "gpu", "vendor": "nvidia", "model": "H100", "tenant": "t", "seq": 1,
        "util_compute": 0.5, "mem_used_bytes": 10, "mem_total_bytes": 100, "power_w": 300.0, "energy_j": 3000.0,
    }
    return base | values


def message(*rows: dict[str, object]) -> bytes:
    return wire.encode(rows_to_batch(list(rows)))


def test_valid_rows_pass_unchanged() -> None:
    result = validate(message(row(), row(device_uuid="GPU-2", util_compute=None)), NOW_MS)
    assert result.rejected.height == 0
    assert result.rows["device_uuid"].to_list() == ["GPU-1", "GPU-2"]
    assert result.rows["util_compute"].to_list() == [0.5, None]


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({"interval_s": -10.0}, "interval_invalid"),
        ({"interval_s": math.nan}, "interval_invalid"),
        ({"interval_s": MAX_INTERVAL_S + 1}, "interval_too_long"),
        ({"util_compute": 1.5}, "util_compute_out_of_range"),
        ({"util_compute": math.nan}, "util_compute_out_of_range"),
        ({"tensor_active": -0.1}, "tensor_active_out_of_range"),
        ({"ts": NOW_MS + 3_600_000}, "ts_in_future"),
        ({"energy_j": -1.0}, "energy_j_negative"),
        ({"energy_j": math.inf}, "energy_j_not_finite"),
        ({"power_w": 1e9}, "power_w_out_of_range"),
        ({"mem_used_bytes": 200}, "mem_used_above_total"),
        # every rule of schemas/sample_v1.md, "Valid values", just past its bound
        ({"ts": 946_684_799_999}, "ts_out_of_range"),
        ({"interval_s": 0.0}, "interval_invalid"),
        ({"tenant": "a\tb"}, "tenant_invalid"),
        ({"job_id": "j" * 257}, "job_id_invalid"),
        ({"parent_uuid": "GPU-\x7f"}, "parent_uuid_invalid"),
        ({"device_index": -1}, "device_index_out_of_range"),
        ({"device_index": 65_536}, "device_index_out_of_range"),
        ({"seq": -1}, "seq_negative"),
        ({"util_compute": -0.01}, "util_compute_out_of_range"),
        ({"util_mem_bw": 1.01}, "util_mem_bw_out_of_range"),
        ({"sm_active": math.inf}, "sm_active_out_of_range"),
        ({"share": math.nan, "share_rule": "equal"}, "share_out_of_range"),
        ({"mem_used_bytes": -1}, "mem_used_bytes_negative"),
        ({"mem_total_bytes": 2**53 + 1, "mem_used_bytes": 1}, "mem_total_bytes_too_large"),
        ({"pcie_tx_bytes": -5}, "pcie_tx_bytes_negative"),
        ({"pcie_rx_bytes": 2**53 + 1}, "pcie_rx_bytes_too_large"),
        ({"nvlink_tx_bytes": 2**53 + 1}, "nvlink_tx_bytes_too_large"),
        ({"nvlink_rx_bytes": -1}, "nvlink_rx_bytes_negative"),
        ({"ecc_corrected": 2**32}, "ecc_corrected_too_large"),
        ({"ecc_uncorrected": -1}, "ecc_uncorrected_negative"),
        ({"ecc_uncorrected": 2**32}, "ecc_uncorrected_too_large"),
        ({"energy_j": 5000.0 * 10.0 + 0.5}, "energy_j_out_of_range"),
        ({"power_w": -0.5}, "power_w_out_of_range"),
        ({"power_w": math.nan}, "power_w_out_of_range"),
        ({"temp_c": math.nan}, "temp_c_out_of_range"),
        ({"temp_c": -50.5}, "temp_c_out_of_range"),
        ({"temp_c": 200.5}, "temp_c_out_of_range"),
        ({"sm_clock_mhz": -1.0}, "sm_clock_mhz_out_of_range"),
        ({"sm_clock_mhz": 10_000.5}, "sm_clock_mhz_out_of_range"),
        ({"sm_clock_mhz": math.inf}, "sm_clock_mhz_out_of_range"),
        ({"throttle_reasons": ["sw_thermal"] * 33}, "throttle_reasons_invalid"),
        ({"throttle_reasons": ["x" * 65]}, "throttle_reasons_invalid"),
        ({"throttle_reasons": ["\x1b[31m"]}, "throttle_reasons_invalid"),
        ({"xid_errors": [79] * 1001}, "xid_errors_invalid"),
        ({"xid_errors": [79, -1]}, "xid_errors_invalid"),
        ({"xid_errors": [None]}, "xid_errors_invalid"),
        ({"processes": [{"pid": -1, "used_memory_bytes": 1}]}, "processes_invalid"),
        ({"processes": [{"pid": None, "used_memory_bytes": 1}]}, "processes_invalid"),
        ({"processes": [{"pid": 1, "used_memory_bytes": -1}]}, "processes_invalid"),
        ({"processes": [{"pid": 1, "used_memory_bytes": 1}] * 4097}, "processes_invalid"),
        ({"processes": [{"pid": -1, "used_memory_bytes": 1}] * 4097}, "processes_invalid"),  # both rules broken
        ({"processes": [{"pid": -1, "used_memory_bytes": -1}]}, "processes_invalid"),
        ({"extras": [("gpm.dram_active", 0.1), ("gpm.dram_active", 0.9)]}, "extras_invalid"),
        # two parts of one rule broken at once
        ({"tenant": "\x07" * 300}, "tenant_invalid"),
        ({"throttle_reasons": [None]}, "throttle_reasons_invalid"),
        ({"extras": [("k", 1.0)] * 257}, "extras_invalid"),
        ({"extras": [("\x07", 1.0), ("\x07", 2.0)]}, "extras_invalid"),
        ({"extras": [("\x07", math.nan)]}, "extras_invalid"),
        ({"throttle_reasons": ["\x07"] * 33}, "throttle_reasons_invalid"),
        ({"xid_errors": [-1] * 1001}, "xid_errors_invalid"),
        ({"ts": NOW_MS + 300_001}, "ts_in_future"),
        ({"extras": [("gpm.dram_active", math.nan)]}, "extras_invalid"),
        ({"extras": [("gpm.dram_active", -math.inf)]}, "extras_invalid"),
        ({"extras": [("a\nb", 1.0)]}, "extras_invalid"),
        ({"extras": [("k" * 257, 1.0)]}, "extras_invalid"),
        ({"extras": [(f"k{i}", 1.0) for i in range(257)]}, "extras_invalid"),
    ],
)
def test_a_bad_row_is_quarantined_with_its_reason_and_the_rest_proceeds(values: dict[str, object],
                                                                        reason: str) -> None:
    result = validate(message(row(device_uuid="GPU-ok"), row(device_uuid="GPU-bad", **values)), NOW_MS)
    assert result.rows["device_uuid"].to_list() == ["GPU-ok"]
    assert result.rejected["device_uuid"].to_list() == ["GPU-bad"]
    assert result.rejected["reason"].to_list() == [reason]


def test_values_on_every_bound_are_valid() -> None:
    """Each rule's bound itself is valid: the rules reject only what lies beyond (schemas/sample_v1.md)."""
    edges = [
        row(ts=946_684_800_000, interval_s=MAX_INTERVAL_S, energy_j=5000.0 * MAX_INTERVAL_S, power_w=5000.0,
            device_index=65_535, seq=0, util_compute=1.0, util_mem_bw=0.0, sm_active=1.0, tensor_active=0.0,
            temp_c=-50.0, sm_clock_mhz=10_000.0, mem_used_bytes=2**53, mem_total_bytes=2**53,
            pcie_tx_bytes=2**53, pcie_rx_bytes=0, nvlink_tx_bytes=2**53, nvlink_rx_bytes=0,
            ecc_corrected=2**32 - 1, ecc_uncorrected=0, share=1.0, share_rule="process_util", job_id="j" * 256,
            throttle_reasons=["r" * 64] * 32, xid_errors=[0] * 1000,
            processes=[{"pid": 0, "used_memory_bytes": None}] * 4095 + [{"pid": 1, "used_memory_bytes": 0}],
            extras=[(f"{i:0>256}", None if i % 2 else -1e300) for i in range(256)]),
        row(device_uuid="GPU-2", ts=NOW_MS + 300_000, temp_c=200.0, sm_clock_mhz=0.0, energy_j=0.0, power_w=0.0,
            util_compute=0.0, share=0.0, share_rule="equal", throttle_reasons=[], xid_errors=[], processes=[],
            extras=[]),
    ]
    result = validate(message(*edges), NOW_MS)
    assert result.rejected["reason"].to_list() == []
    assert result.rows.height == 2


def test_unreadable_payloads_are_rejected_whole_with_a_reason() -> None:
    with pytest.raises(MessageRejected) as garbage:
        validate(b"not arrow at all", NOW_MS)
    assert garbage.value.reason == "unreadable"
    truncated = message(row())[:-40]
    with pytest.raises(MessageRejected) as cut:
        validate(truncated, NOW_MS)
    assert cut.value.reason == "unreadable"


def test_unknown_major_version_and_missing_columns_are_rejected() -> None:
    batch = rows_to_batch([row()])
    v2 = batch.replace_schema_metadata({SCHEMA_VERSION_METADATA_KEY: b"2.0"})
    with pytest.raises(MessageRejected) as version:
        validate(wire.encode(v2), NOW_MS)
    assert version.value.reason == "unsupported_schema_version"
    narrow = batch.drop_columns(["tenant"]).replace_schema_metadata(SAMPLE_SCHEMA.metadata)
    with pytest.raises(MessageRejected) as missing:
        validate(wire.encode(narrow), NOW_MS)
    assert missing.value.reason == "missing_columns" and "tenant" in missing.value.detail


def test_a_required_value_missing_in_a_row_is_quarantined() -> None:
    batch = rows_to_batch([row(), row(device_uuid="GPU-2")])
    tenants = pa.array(["t", None])
    broken = pa.RecordBatch.from_arrays(
        [tenants if name == "tenant" else batch.column(name) for name in SAMPLE_SCHEMA.names], schema=LENIENT_SCHEMA
    )
    result = validate(wire.encode(broken), NOW_MS)
    assert result.rows.height == 1 and result.rejected["reason"].to_list() == ["tenant_missing"]


def test_a_newer_minor_version_with_extra_columns_is_accepted_and_the_extras_ignored() -> None:
    batch = rows_to_batch([row()]).append_column("new_reading", pa.array([7.0]))
    newer = batch.replace_schema_metadata({SCHEMA_VERSION_METADATA_KEY: b"1.3"})
    result = validate(wire.encode(newer), NOW_MS)
    assert result.rows.height == 1 and "new_reading" not in result.rows.columns


def test_an_older_minor_version_without_the_share_columns_reads_as_whole_devices() -> None:
    batch = rows_to_batch([row(), row(device_uuid="GPU-2")])
    older = batch.drop_columns(["share", "share_rule"]).replace_schema_metadata({SCHEMA_VERSION_METADATA_KEY: b"1.0"})
    result = validate(wire.encode(older), NOW_MS)
    assert result.rows.height == 2 and result.rows["share"].to_list() == [None, None]


@pytest.mark.parametrize(("share", "rule", "reason"), [(1.5, "equal", "share_out_of_range"),
                                                        (-0.1, "equal", "share_out_of_range"),
                                                        (0.5, "by_vibes", "share_rule_unknown")])
def test_a_share_outside_0_to_1_or_an_unknown_rule_is_quarantined(share: float, rule: str, reason: str) -> None:
    result = validate(message(row(share=share, share_rule=rule)), NOW_MS)
    assert result.rows.height == 0 and result.rejected["reason"].to_list() == [reason]


KNOWN_REJECTIONS = {"unreadable", "unsupported_schema_version", "missing_columns", "wrong_types"}


def check_outcome(payload: bytes) -> None:
    """Either a whole-message rejection with a known reason, or rows that all obey the rules."""
    try:
        result = validate(payload, NOW_MS)
    except MessageRejected as exc:
        assert exc.reason in KNOWN_REJECTIONS
        return
    rows = result.rows
    assert rows.columns == list(SAMPLE_SCHEMA.names)
    assert rows.filter((pl.col("interval_s") <= 0) | pl.col("interval_s").is_nan()).height == 0
    assert rows.filter(~pl.col("util_compute").is_between(0.0, 1.0)).height == 0
    assert all(rows[name].null_count() == 0 for name in ("ts", "device_uuid", "tenant", "seq"))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_are_rejected_with_a_known_reason(payload: bytes) -> None:
    check_outcome(payload)


@settings(max_examples=300, deadline=None)
@given(flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=8))
def test_corrupted_messages_never_let_a_bad_row_through(flips: list[tuple[int, int]]) -> None:
    payload = bytearray(message(row(), row(device_uuid="GPU-2", util_compute=0.9)))
    for position, mask in flips:
        payload[position % len(payload)] ^= mask
    check_outcome(bytes(payload))


@settings(deadline=None)  # as many examples as the profile gives (fewer under ./dev mutate)
@given(rows=st.lists(hostile_rows((NOW_MS - 40 * 86_400_000, NOW_MS + 600_000)), min_size=1, max_size=8),
       lateness_days=st.none() | st.sampled_from([1.0, 30.0]))
def test_every_row_is_judged_as_the_oracle_judges_it(rows: list[dict[str, object]], lateness_days: float | None,
                                                     ) -> None:
    """Rows of any values: valid exactly when tests/oracle.py's rules say so, else a reason naming a column
    the row breaks."""
    lateness_s = None if lateness_days is None else lateness_days * 86_400
    frame = pl.from_arrow(encode_rows(rows))
    assert isinstance(frame, pl.DataFrame)
    result = check(frame.with_row_index("_row"), NOW_MS, 300.0, lateness_s)
    broken = [oracle.broken_rules(row, NOW_MS, 300.0, lateness_s) for row in rows]
    assert result.rows["_row"].to_list() == [i for i, columns in enumerate(broken) if not columns]
    for i, reason in result.rejected.select("_row", "reason").iter_rows():
        assert oracle.reason_column(reason) in broken[i], (reason, broken[i])


def test_columns_of_a_castable_type_are_converted_with_their_values() -> None:
    """A producer that writes int32 seq and float32 intervals (another Arrow library's defaults) is read."""
    batch = rows_to_batch([row(seq=7, interval_s=2.5)])
    narrower = pa.RecordBatch.from_arrays(
        [batch.column(name).cast(pa.int32() if name == "seq" else pa.float32()) if name in ("seq", "interval_s")
         else batch.column(name) for name in SAMPLE_SCHEMA.names],
        schema=pa.schema([field.with_type(pa.int32() if field.name == "seq" else pa.float32())
                          if field.name in ("seq", "interval_s") else field for field in SAMPLE_SCHEMA],
                         metadata=SAMPLE_SCHEMA.metadata))
    assert has_v1_types(SAMPLE_SCHEMA) and not has_v1_types(narrower.schema)  # read without, and with, a cast
    result = validate(wire.encode(narrower), NOW_MS)
    assert result.rows.select("seq", "interval_s").rows() == [(7, 2.5)]
    assert result.rows.schema["seq"] == pl.Int64 and result.rows.schema["interval_s"] == pl.Float64


def test_a_column_that_cannot_be_converted_rejects_the_message_whole() -> None:
    batch = rows_to_batch([row()])
    index = batch.schema.get_field_index("util_compute")
    wrong = pa.Table.from_batches([batch]).set_column(index, "util_compute", pa.array(["high"])).to_batches()[0]
    with pytest.raises(MessageRejected) as rejected:
        validate(wire.encode(wrong), NOW_MS)
    assert rejected.value.reason == "wrong_types"


@pytest.mark.parametrize(("age_ms", "reason"), [(3_600_000, None), (3_600_001, "ts_too_old")])
def test_the_lateness_bound_is_inclusive(age_ms: int, reason: str | None) -> None:
    result = validate(message(row(ts=NOW_MS - age_ms)), NOW_MS, max_lateness_s=3600.0)
    assert result.rejected["reason"].to_list() == ([] if reason is None else [reason])

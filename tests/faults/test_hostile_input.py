"""Hostile and malformed messages: garbage and truncated Arrow IPC, wrong types, unknown schema versions,
extreme values, labels with control characters or megabytes of text, messages over the size limit.

The worker never raises, every row it stores obeys the rules (checked here in plain Python on the rows
read back from Parquet), the good rows beside the bad ones are stored, and every message or row set aside
is in ``quarantine/`` with a reason.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka import KafkaProducer

from fleetmeter.demo.broker import EmbeddedBroker
from fleetmeter.pipeline.metrics import PipelineMetrics
from fleetmeter.pipeline.partition import PartitionWriter
from fleetmeter.pipeline.quarantine import Message
from fleetmeter.pipeline.warehouse.delta import DeltaWarehouse
from fleetmeter.pipeline.worker import PipelineWorker
from fleetmeter.schemas import wire
from fleetmeter.schemas.sample_v1 import rows_to_batch
from fleetmeter.schemas.sample_v1_columns import SCHEMA_VERSION_METADATA_KEY
from tests import oracle
from tests.faults.figures import record
from tests.pipeline.fleet import assert_rollups_match, pipeline_settings, read_table, samples_frame
from tests.strategies import LENIENT_SCHEMA, encode_rows, hostile_rows

NOW_MS = int(datetime.now(UTC).timestamp() * 1000) // 60_000 * 60_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: Hypothesis examples of the in-process fuzz test; raise it for a soak (FLEETMETER_FUZZ_EXAMPLES=5000).
EXAMPLES = int(os.environ.get("FLEETMETER_FUZZ_EXAMPLES", "100"))


def good_row(device: int) -> dict[str, Any]:
    return {"ts": NOW_MS - 600_000, "interval_s": 10.0, "cluster": "c", "node": "n", "device_uuid": f"GPU-{device}",
            "device_index": device, "device_kind": "gpu", "vendor": "nvidia", "model": "H100", "tenant": "t",
            "seq": 1, "util_compute": 0.5, "mem_used_bytes": 10, "mem_total_bytes": 100, "power_w": 300.0,
            "energy_j": 3000.0}


def encode(rows: list[dict[str, Any]]) -> bytes:
    return wire.encode(rows_to_batch(rows))


def with_column(payload: bytes, name: str, values: pa.Array) -> bytes:
    batch = pa.ipc.open_stream(payload).read_next_batch()
    index = batch.schema.get_field_index(name)
    table = pa.Table.from_batches([batch]).set_column(index, name, values)
    return wire.encode(table.to_batches()[0])


def with_version(payload: bytes, version: str) -> bytes:
    batch = pa.ipc.open_stream(payload).read_next_batch()
    metadata = {**(batch.schema.metadata or {}), SCHEMA_VERSION_METADATA_KEY: version.encode()}
    return wire.encode(batch.replace_schema_metadata(metadata))


#: Rows of every column, each possibly hostile (tests/strategies.py), over the two days before the clock.
ROWS = st.lists(hostile_rows((NOW_MS - 2 * 86_400_000, NOW_MS)), min_size=1, max_size=3)
#: A producer sets a record's timestamp to any int64: filing what it sent must not depend on it.
KAFKA_TIMESTAMPS = st.integers(-(2**63), 2**63 - 1) | st.sampled_from([-1, 0, 253_402_300_800_000])


@st.composite
def hostile_messages(draw: st.DrawFn) -> tuple[str, bytes]:
    """A message of some kind: ``rows`` (a well-formed message of any values) or a broken one."""
    kind = draw(st.sampled_from(["rows", "rows", "garbage", "truncated", "flipped", "wrong_type", "version"]))
    return kind, draw(_payload(kind))


@st.composite
def _payload(draw: st.DrawFn, kind: str) -> bytes:
    valid = encode([good_row(100), good_row(101)])
    if kind == "rows":
        return wire.encode(encode_rows(draw(ROWS)))
    if kind == "garbage":
        return draw(st.binary(max_size=2048))
    if kind == "truncated":
        return valid[: draw(st.integers(0, len(valid) - 1))]
    if kind == "flipped":
        payload = bytearray(valid)
        for position, mask in draw(st.lists(st.tuples(st.integers(0, len(valid) - 1), st.integers(1, 255)),
                                            min_size=1, max_size=6)):
            payload[position] ^= mask
        return bytes(payload)
    if kind == "wrong_type":
        return with_column(valid, draw(st.sampled_from(["util_compute", "ts", "seq"])), pa.array(["high", "low"]))
    return with_version(valid, draw(st.sampled_from(["2.0", "0.9", "", "1.x", "\x00"])))


def rows_of(payload: bytes) -> list[dict[str, Any]]:
    """A readable message's rows, decoded by pyarrow alone into the sample columns (``ts`` in epoch ms); the
    columns of minor version 1.1 are null in a message that lacks them."""
    table = pa.ipc.open_stream(payload).read_all()
    for name in ("share", "share_rule"):
        if name not in table.column_names:
            table = table.append_column(name, pa.nulls(table.num_rows, LENIENT_SCHEMA.field(name).type))
    table = table.select(LENIENT_SCHEMA.names).cast(LENIENT_SCHEMA)
    return table.set_column(0, "ts", table["ts"].cast(pa.int64())).to_pylist()


def comparable(row: dict[str, Any]) -> dict[str, Any]:
    """A sample row with its map and timestamp in one form, whichever reader produced it."""
    extras = row["extras"]
    if extras is not None:  # polars gives a dict, pyarrow a list of pairs
        extras = sorted(extras.items() if isinstance(extras, dict) else map(tuple, extras))
    ts = row["ts"] if isinstance(row["ts"], int) else round(row["ts"].timestamp() * 1000)
    return row | {"ts": ts, "extras": extras}


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.tuples(hostile_messages(), KAFKA_TIMESTAMPS), min_size=1, max_size=6))
def test_hostile_messages_are_stored_or_quarantined_exactly(messages: list[tuple[tuple[str, bytes], int]]) -> None:
    """Each row of a readable message is stored (the first of its key) if the oracle's rules accept it, else
    quarantined with a reason that names a column its own row breaks; every rollup equals the oracle's; a
    well-formed message is never rejected whole. Expectations come from pyarrow and tests/oracle.py alone."""
    good = encode([good_row(1), good_row(2)])
    sent = [("rows", good, NOW_MS), *[(kind, payload, ts) for (kind, payload), ts in messages], ("rows", good, -1)]
    records = [Message("t", 0, offset, ts, b"node", payload) for offset, (_, payload, ts) in enumerate(sent)]
    record(messages_fuzzed=len(messages))
    with tempfile.TemporaryDirectory() as directory:
        config = pipeline_settings("unused:9092", "t", directory)
        rules = config.validation
        writer = PartitionWriter(DeltaWarehouse(directory, {}, config.consumer.group_id), "t", 0, "topic-id", config,
                                 PipelineMetrics())
        writer.add(records, NOW_MS)
        writer.flush(lambda next_offset: None)
        stored = [comparable(row) for row in samples_frame(directory).to_dicts()]
        quarantined = read_table(directory, "quarantine")
        whole = {row["offset"]: row["reason"] for row in quarantined if row["row_json"] is None}
        readable = [(record.offset, rows_of(record.value or b"")) for record in records if record.offset not in whole]
        broken = {offset: [oracle.broken_rules(row, NOW_MS, rules.max_future_s, rules.max_lateness_s) for row in rows]
                  for offset, rows in readable}
        expected = oracle.deduplicated(row for offset, rows in readable
                                       for row, columns in zip(rows, broken[offset], strict=True) if not columns)
        assert_rollups_match(directory, expected)

    by_key = {(row["device_uuid"], row["ts"], row["tenant"], row["job_id"]): row for row in stored}
    assert len(by_key) == len(stored) == len(expected)
    for want in map(comparable, expected):
        got = by_key[(want["device_uuid"], want["ts"], want["tenant"], want["job_id"])]
        diff = [(name, got[name], value) for name, value in want.items() if got[name] != value]
        assert diff == [], repr(diff)[:500]
    assert {"GPU-1", "GPU-2"} <= {row["device_uuid"] for row in stored}
    for offset, (kind, payload, _) in enumerate(sent):
        too_large = len(payload) > rules.max_message_bytes
        if kind == "rows" or too_large:  # a well-formed message is read, unless it is too large
            assert whole.get(offset) == ("too_large" if too_large else None)
    for offset, rows in readable:  # each reason names a column its own row breaks (rows matched by seq)
        reasons = [(json.loads(row["row_json"])["seq"], row["reason"]) for row in quarantined
                   if row["offset"] == offset and row["row_json"] is not None]
        assert len(reasons) == sum(1 for columns in broken[offset] if columns)
        for seq, reason in reasons:
            assert any(oracle.reason_column(reason) in columns
                       for row, columns in zip(rows, broken[offset], strict=True) if row["seq"] == seq), reason
    for row in quarantined:  # the record's Kafka timestamp, null where no reader could hold it
        kafka_ts = sent[row["offset"]][2]
        assert row["kafka_ts"] == (EPOCH + timedelta(milliseconds=kafka_ts)
                                   if 0 <= kafka_ts < 253_402_300_800_000 else None)


def test_hostile_messages_through_the_broker(kafka_broker: EmbeddedBroker, topic: str, tmp_path: Path) -> None:
    kafka_broker.create_topic(topic, partitions=1)
    valid = encode([good_row(1), good_row(2)])
    hostile = {
        "unreadable": b"\x00" * 100,
        "truncated": valid[: len(valid) // 2],
        "wrong_types": with_column(valid, "util_compute", pa.array(["high", "low"])),
        "unsupported_schema_version": with_version(valid, "2.0"),
        "too_large": b"\xff" * (3 << 20),
        "tenant_invalid": encode([good_row(3) | {"tenant": "acme\n{\"injected\": true}"}]),
        "job_id_invalid": encode([good_row(4) | {"job_id": "j" * 2_000_000}]),
        "power_w_out_of_range": encode([good_row(5) | {"power_w": math.inf}]),
        "interval_invalid": encode([good_row(6) | {"interval_s": math.nan}]),
        "temp_c_out_of_range": encode([good_row(9) | {"temp_c": math.nan}]),
    }
    record(messages_fuzzed=len(hostile))
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap_servers, max_request_size=8 << 20)
    # Kafka timestamps a producer may choose (none, year 10000, far beyond) and headers of any bytes
    timestamps = itertools.cycle([None, 253_402_300_800_000, 2**62])
    headers = [("fleetmeter-schema-version", b"\xff\xfe"), ("x" * 300, bytes(range(256))), ("", b"")]
    for payload in [valid, *hostile.values(), encode([good_row(7)])]:
        producer.send(topic, key=b"node", value=payload, timestamp_ms=next(timestamps), headers=headers)
    producer.flush()
    producer.close()
    warehouse = tmp_path / "warehouse"
    PipelineWorker(pipeline_settings(kafka_broker.bootstrap_servers, topic, warehouse,
                                     validation={"max_message_bytes": 2 << 20})).run()

    assert sorted(row["device_uuid"] for row in samples_frame(warehouse).to_dicts()) == ["GPU-1", "GPU-2", "GPU-7"]
    reasons = sorted(row["reason"] for row in read_table(warehouse, "quarantine"))
    assert reasons == sorted(["unreadable", "unreadable", *list(hostile)[2:]])


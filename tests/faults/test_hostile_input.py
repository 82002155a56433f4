"""Hostile and malformed messages: garbage and truncated Arrow IPC, wrong types, unknown schema versions,
extreme values, labels with control characters or megabytes of text, messages over the size limit.

The worker never raises, every row it stores obeys the rules (checked here in plain Python on the rows
read back from Parquet), the good rows beside the bad ones are stored, and every message or row set aside
is in ``quarantine/`` with a reason.
"""

from __future__ import annotations

import math
import os
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kafka import KafkaProducer

from fleetmeter.demo.broker import EmbeddedBroker
from fleetmeter.pipeline.metrics import PipelineMetrics
from fleetmeter.pipeline.partition import PartitionWriter
from fleetmeter.pipeline.warehouse.storage import Storage
from fleetmeter.pipeline.worker import PipelineWorker
from fleetmeter.schemas import wire
from fleetmeter.schemas.sample_v1 import SCHEMA_VERSION_METADATA_KEY, rows_to_batch
from tests.faults.figures import record
from tests.pipeline.fleet import pipeline_settings, read_table, samples_frame

NOW_MS = int(datetime.now(UTC).timestamp() * 1000) // 60_000 * 60_000
#: Hypothesis examples of the in-process fuzz test; raise it for a soak (FLEETMETER_FUZZ_EXAMPLES=5000).
EXAMPLES = int(os.environ.get("FLEETMETER_FUZZ_EXAMPLES", "60"))
LABELS = ("cluster", "node", "device_uuid", "device_kind", "vendor", "model", "tenant", "job_id")


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


labels = st.one_of(
    st.text(max_size=40),  # any code points, control characters included
    st.sampled_from([1_000, 1_000_000, 3_000_000]).map(lambda n: "x" * n),  # kilobytes to megabytes
)
numbers = st.floats(allow_nan=True, allow_infinity=True)
row_overrides = st.fixed_dictionaries({}, optional={
    **{name: labels for name in LABELS},
    "ts": st.integers(-(2**40), 2**45),
    "interval_s": numbers, "util_compute": numbers, "power_w": numbers, "energy_j": numbers, "temperature_c": numbers,
    "mem_used_bytes": st.integers(-(2**63), 2**63 - 1), "mem_total_bytes": st.integers(-(2**63), 2**63 - 1),
    "share": numbers, "share_rule": labels,
})


@st.composite
def hostile_messages(draw: st.DrawFn) -> bytes:
    valid = encode([good_row(100), good_row(101)])
    kind = draw(st.sampled_from(["rows", "garbage", "truncated", "flipped", "wrong_type", "version"]))
    if kind == "rows":
        return encode([good_row(200 + i) | draw(row_overrides) for i in range(draw(st.integers(1, 3)))])
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


@dataclass(frozen=True)
class Record:
    """A Kafka message as the consumer returns it (the fields the worker reads)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


def assert_stored_rows_obey_the_rules(rows: list[dict[str, Any]]) -> None:
    """The rules of schemas/sample_v1.md, written out again here."""
    for row in rows:
        ts_ms = row["ts"].timestamp() * 1000
        assert NOW_MS - 30 * 86_400_000 <= ts_ms <= NOW_MS + 300_000 + 60_000, row["ts"]
        assert 0 < row["interval_s"] <= 3600
        for name in LABELS:
            value = row[name]
            assert value is None or (len(value) <= 256 and not any(ord(c) < 32 or ord(c) == 127 for c in value))
        for name in ("util_compute", "share"):
            assert row[name] is None or 0 <= row[name] <= 1
        assert row["power_w"] is None or 0 <= row["power_w"] <= 5000
        assert row["energy_j"] is None or (math.isfinite(row["energy_j"]) and row["energy_j"] >= 0)
        assert row["mem_used_bytes"] is None or 0 <= row["mem_used_bytes"] <= (row["mem_total_bytes"] or 2**63)


@settings(max_examples=EXAMPLES, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(hostile_messages(), min_size=1, max_size=6))
def test_hostile_messages_never_crash_the_worker_nor_reach_samples(payloads: list[bytes]) -> None:
    good = encode([good_row(1), good_row(2)])
    records = [Record("t", 0, offset, NOW_MS, b"node", payload)
               for offset, payload in enumerate([good, *payloads, good])]
    record(messages_fuzzed=len(payloads))
    metrics = PipelineMetrics()
    with tempfile.TemporaryDirectory() as directory:
        config = pipeline_settings("unused:9092", "t", directory)
        writer = PartitionWriter(Storage(directory), "t", 0, config, metrics, [])
        writer.add(records, NOW_MS)
        writer.flush(lambda next_offset: None)
        stored = samples_frame(directory).to_dicts()
        quarantined = read_table(directory, "quarantine")

    assert_stored_rows_obey_the_rules(stored)
    assert {"GPU-1", "GPU-2"} <= {row["device_uuid"] for row in stored}
    assert all(row["reason"] for row in quarantined)
    # Nothing vanishes: each row of a readable message is stored, quarantined or counted as a duplicate.
    rejected_whole = {row["offset"] for row in quarantined if row["row_json"] is None}
    rows_read = sum(pa.ipc.open_stream(record.value).read_all().num_rows
                    for record in records if record.offset not in rejected_whole)
    duplicates = metrics.rows.labels("duplicate")._value.get()
    assert duplicates >= 2  # the good message, twice
    assert rows_read == len(stored) + (len(quarantined) - len(rejected_whole)) + duplicates


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
    }
    record(messages_fuzzed=len(hostile))
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap_servers, max_request_size=8 << 20)
    for payload in [valid, *hostile.values(), encode([good_row(7)])]:
        producer.send(topic, key=b"node", value=payload)
    producer.flush()
    producer.close()
    warehouse = tmp_path / "warehouse"
    PipelineWorker(pipeline_settings(kafka_broker.bootstrap_servers, topic, warehouse,
                                     validation={"max_message_bytes": 2 << 20})).run()

    assert sorted(row["device_uuid"] for row in samples_frame(warehouse).to_dicts()) == ["GPU-1", "GPU-2", "GPU-7"]
    reasons = sorted(row["reason"] for row in read_table(warehouse, "quarantine"))
    assert reasons == sorted(["unreadable", "unreadable", *list(hostile)[2:]])


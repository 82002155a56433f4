"""The worker's message reader: the batch-by-batch path for a known schema gives what the general path gives,
and anything it cannot vouch for goes the general way."""

from __future__ import annotations

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetmeter.pipeline.messages import MessageReader
from fleetmeter.pipeline.validate import LENIENT_SCHEMA, MessageRejected, decode
from fleetmeter.schemas import wire
from fleetmeter.schemas.sample_v1 import rows_to_batch
from tests.pipeline.test_validate import KNOWN_REJECTIONS, message, row


def test_a_known_schema_is_read_batch_by_batch_with_the_same_rows() -> None:
    reader = MessageReader()
    first, second = message(row(), row(device_uuid="GPU-2")), message(row(device_uuid="GPU-3", util_compute=0.1))
    reader.read(first)  # the general path, which makes the schema known
    read = reader.read(second)
    assert isinstance(read, pa.RecordBatch)  # the batch-by-batch path
    assert pa.Table.from_batches([read]).equals(decode(second))


def test_rows_keep_the_offset_of_their_message_and_unreadable_ones_are_set_aside() -> None:
    batch = rows_to_batch([row(device_uuid="GPU-a"), row(device_uuid="GPU-b")])
    several = pa.BufferOutputStream()
    with pa.ipc.new_stream(several, batch.schema) as writer:  # two record batches in one stream
        writer.write_batch(batch)
        writer.write_batch(batch.slice(1))
    payloads = [(10, message(row(device_uuid="GPU-1"))), (11, b"garbage"), (12, several.getvalue().to_pybytes()),
                (13, message(row(device_uuid="GPU-4")))]
    decoded, rejected = MessageReader().read_all(payloads, "offset")
    assert decoded is not None and decoded.messages == 3
    assert decoded.rows.schema.remove(decoded.rows.schema.get_field_index("offset")) == LENIENT_SCHEMA
    assert decoded.rows.column("device_uuid").chunks[0].to_pylist() == ["GPU-1", "GPU-a", "GPU-b", "GPU-b", "GPU-4"]
    assert decoded.rows.column("offset").to_pylist() == [10, 12, 12, 12, 13]
    assert [(offset, exc.reason) for offset, exc in rejected] == [(11, "unreadable")]


GOOD = message(row(), row(device_uuid="GPU-2", util_compute=0.9))
PREFIX = 8 + int.from_bytes(GOOD[4:8], "little")


@settings(max_examples=300, deadline=None)
@given(flips=st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=8))
def test_a_corrupted_batch_behind_a_known_schema_is_never_read_as_rows(flips: list[tuple[int, int]]) -> None:
    """The schema bytes stay intact, so the batch-by-batch path is tried: a corrupted batch falls back to
    the general path, which rejects it or returns rows that decode on their own."""
    reader = MessageReader()
    reader.read(GOOD)
    payload = bytearray(GOOD)
    for position, mask in flips:
        payload[PREFIX + position % (len(payload) - PREFIX)] ^= mask
    try:
        read = reader.read(bytes(payload))
    except MessageRejected as exc:
        assert exc.reason in KNOWN_REJECTIONS
        return
    table = pa.Table.from_batches([read]) if isinstance(read, pa.RecordBatch) else read
    table.validate(full=True)
    assert table.schema == LENIENT_SCHEMA


def test_a_stream_of_another_schema_takes_the_general_path() -> None:
    narrow = rows_to_batch([row()]).select(["ts", "device_uuid"])
    reader = MessageReader()
    for _ in range(2):
        with pytest.raises(MessageRejected) as rejected:
            reader.read(wire.encode(narrow))
        assert rejected.value.reason == "missing_columns"


def test_a_field_name_that_is_not_utf8_is_rejected_not_raised() -> None:
    """Found by the hostile-input fuzzer: a flipped bit in a column name made the worker raise."""
    payload = message(row())
    broken = payload.replace(b"tenant", b"t\xc4nant", 1)
    assert len(broken) == len(payload)
    decoded, rejected = MessageReader().read_all([(7, broken)], "offset")
    assert decoded is None and [(offset, exc.reason) for offset, exc in rejected] == [(7, "unreadable")]

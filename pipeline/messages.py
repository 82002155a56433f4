"""Reading a poll's messages into one Arrow table at a small, fixed cost per message.

The general path (:func:`fleetmeter.pipeline.validate.decode`) parses each message's schema, compares it with v1 and
converts it: about 250 µs a message, which held a worker near 1,400 messages/s. But a fleet's collectors
send the same schema again and again, and an Arrow IPC stream starts with its schema message, the same
bytes for the same schema. So a schema prefix is checked once; if its columns are exactly v1's (names,
order, types, a known major version), each later message that starts with those bytes and holds one record
batch is read by decoding that batch alone against the known schema and validating it in full (about
60 µs). Anything else (another schema, several batches, a corrupt batch) takes the general path, which
rejects what it cannot read with a reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from fleetmeter.pipeline.validate import LENIENT_SCHEMA, MessageRejected, decode, has_v1_types
from fleetmeter.schemas.sample_v1_columns import COLUMNS, SCHEMA_MAJOR, SCHEMA_VERSION_METADATA_KEY

_CONTINUATION = b"\xff\xff\xff\xff"
_END_OF_STREAM = _CONTINUATION + b"\x00\x00\x00\x00"
_PREFIX_HEADER = 8  # continuation marker and metadata length before each IPC message
#: Distinct schema prefixes remembered; a stream of ever new schemas only takes the general path.
_MAX_PREFIXES = 64


@dataclass(frozen=True)
class Decoded:
    """The readable messages' rows together, with the offset of each row's message."""

    rows: pa.Table  # LENIENT_SCHEMA columns plus ``offset_column``
    messages: int


class MessageReader:
    def __init__(self) -> None:
        self._fast: dict[bytes, bool] = {}  # schema message bytes -> exactly v1, readable batch by batch

    def read(self, payload: bytes) -> pa.RecordBatch | pa.Table:
        """The message's rows in the v1 columns (nulls allowed), or :class:`MessageRejected`."""
        prefix = _schema_prefix(payload)
        if prefix is not None and self._is_fast(prefix):
            batch = _single_batch(payload, len(prefix))
            if batch is not None:
                return batch
        try:
            return decode(payload)
        except UnicodeDecodeError as exc:  # Arrow does not check that names are UTF-8; pyarrow fails reading them
            raise MessageRejected("unreadable", f"a name in the schema is not UTF-8: {exc}") from exc

    def read_all(self, payloads: Sequence[tuple[int, bytes]], offset_column: str,
                 ) -> tuple[Decoded | None, list[tuple[int, MessageRejected]]]:
        """Every readable message of ``(offset, payload)`` in one single-chunk table; the rejected beside."""
        batches: list[pa.RecordBatch] = []
        offsets: list[int] = []
        rows: list[int] = []
        rejected: list[tuple[int, MessageRejected]] = []
        for offset, payload in payloads:
            try:
                read = self.read(payload)
            except MessageRejected as exc:
                rejected.append((offset, exc))
                continue
            batches += [read] if isinstance(read, pa.RecordBatch) else read.to_batches()
            offsets.append(offset)
            rows.append(read.num_rows)
        if not offsets:
            return None, rejected
        table = pa.Table.from_batches(batches, schema=LENIENT_SCHEMA).combine_chunks()
        table = table.append_column(offset_column, pa.array(np.repeat(np.array(offsets, np.int64), rows)))
        return Decoded(table, len(offsets)), rejected

    def _is_fast(self, prefix: bytes) -> bool:
        fast = self._fast.get(prefix)
        if fast is None:
            fast = _is_exactly_v1(prefix)
            if len(self._fast) < _MAX_PREFIXES:
                self._fast[prefix] = fast
        return fast


def _schema_prefix(payload: bytes) -> bytes | None:
    """The stream's first IPC message (its schema), framing included; None if the framing is not there."""
    if not payload.startswith(_CONTINUATION) or len(payload) < _PREFIX_HEADER:
        return None
    end = _PREFIX_HEADER + int.from_bytes(payload[4:8], "little")
    return payload[:end] if end < len(payload) else None


def _is_exactly_v1(prefix: bytes) -> bool:
    try:
        schema = pa.ipc.read_schema(pa.py_buffer(prefix))
        version = (schema.metadata or {}).get(SCHEMA_VERSION_METADATA_KEY, b"").decode(errors="replace")
        return version.split(".")[0] == str(SCHEMA_MAJOR) and tuple(schema.names) == COLUMNS and has_v1_types(schema)
    except (pa.ArrowException, OSError, ValueError):  # a field name that is not UTF-8 included
        return False


def _single_batch(payload: bytes, prefix_length: int) -> pa.RecordBatch | None:
    """The stream's one record batch, fully validated; None if the stream holds anything else."""
    try:
        message = pa.ipc.read_message(pa.py_buffer(payload).slice(prefix_length))
        consumed = prefix_length + _PREFIX_HEADER + message.metadata.size + message.body.size
        if message.type != "record batch" or consumed + len(_END_OF_STREAM) != len(payload) \
                or not payload.endswith(_END_OF_STREAM):
            return None
        batch = pa.ipc.read_record_batch(message, LENIENT_SCHEMA)
        batch.validate(full=True)
    except (pa.ArrowException, OSError, ValueError):
        return None
    return batch

"""The Kafka message contract between collectors and any consumer.

One message = one Arrow IPC *stream* (schema + record batches) holding the rows of one or a few scrapes
of one node, keyed by node. Compression is Kafka's own (batch-level), so any Kafka client can read the
payload without an Arrow codec. Documented for other consumers in ``wire_v1.md``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from fleetmeter.schemas.sample_v1_columns import SCHEMA_MAJOR, SCHEMA_VERSION, SCHEMA_VERSION_METADATA_KEY
from fleetmeter.schemas.sample_v1_ipc import encode_rows as _encode_rows

if TYPE_CHECKING:  # pyarrow is imported where a batch is encoded or decoded: the collector needs neither
    import pyarrow as pa

DEFAULT_TOPIC = f"fleetmeter.samples.v{SCHEMA_MAJOR}"
CONTENT_TYPE = "application/vnd.apache.arrow.stream"

HEADER_CONTENT_TYPE = "content-type"
HEADER_SCHEMA_VERSION = "fleetmeter-schema-version"
HEADER_PRODUCER = "fleetmeter-producer"


class WireFormatError(ValueError):
    """A payload that is not a readable Arrow IPC stream of a supported schema version."""


def encode_rows(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """Sample rows (dicts keyed by column) as one Arrow IPC stream, written without pyarrow (the collector's)."""
    return _encode_rows(rows)


def encode(batch: pa.RecordBatch) -> bytes:
    """Serialize rows as one Arrow IPC stream (uncompressed: Kafka compresses the batch)."""
    import pyarrow as pa

    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, batch.schema) as writer:
        writer.write_batch(batch)
    payload: bytes = sink.getvalue().to_pybytes()
    return payload


def headers(producer: str) -> list[tuple[str, bytes]]:
    """Kafka headers that every message carries."""
    return [
        (HEADER_CONTENT_TYPE, CONTENT_TYPE.encode()),
        (HEADER_SCHEMA_VERSION, SCHEMA_VERSION.encode()),
        (HEADER_PRODUCER, producer.encode()),
    ]


def decode(payload: bytes) -> pa.Table:
    """Read one message back into a table; reject unreadable or inconsistent payloads and unknown major versions."""
    import pyarrow as pa

    try:
        table = pa.ipc.open_stream(pa.py_buffer(payload)).read_all()
        # Reading checks the framing, not the buffers: corrupt offsets inside a well-framed stream
        # would crash whatever reads the columns next (seen: a segfault in polars.from_arrow).
        table.validate(full=True)
    except (pa.ArrowException, OSError, ValueError) as exc:  # any malformed stream, whatever part broke
        raise WireFormatError(f"not an Arrow IPC stream: {exc}") from exc
    version = (table.schema.metadata or {}).get(SCHEMA_VERSION_METADATA_KEY, b"").decode(errors="replace")
    if version.split(".")[0] != str(SCHEMA_MAJOR):
        raise WireFormatError(f"unsupported schema version {version!r} (this reader knows {SCHEMA_VERSION})")
    return table

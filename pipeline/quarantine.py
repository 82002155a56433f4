"""Rows of the ``quarantine/`` table: what was set aside, where it came from, and why.

A whole message that cannot be read keeps its raw bytes (``payload``) so it can be inspected or replayed;
a single rejected row keeps its values as JSON (``row_json``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import polars as pl

SCHEMA = pl.Schema({
    "topic": pl.String(), "partition": pl.Int32(), "offset": pl.Int64(), "kafka_ts": pl.Datetime("ms", "UTC"),
    "key": pl.String(), "reason": pl.String(), "detail": pl.String(), "row_json": pl.String(), "payload": pl.Binary(),
})


class Record(Protocol):
    """A Kafka message as the consumer returns it (kafka-python's ``ConsumerRecord``)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


@dataclass(frozen=True)
class Message:
    """A message made here rather than read from Kafka (an import's batch), in a ``Record``'s shape."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None


#: The last millisecond of year 9999. A producer may set any int64 as a record's timestamp (-1: none); outside
#: 1970..9999 ``kafka_ts`` is null, since most readers (Python's datetime, Spark) cannot hold the value.
_LAST_MS = 253_402_300_799_999


@dataclass(frozen=True)
class Origin:
    """Where a Kafka message came from."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: str | None

    @classmethod
    def of(cls, record: Record) -> Origin:
        return cls(record.topic, record.partition, record.offset, record.timestamp, key_text(record.key))

    def columns(self) -> dict[str, pl.Expr]:
        return {"topic": pl.lit(self.topic), "partition": pl.lit(self.partition, pl.Int32),
                "offset": pl.lit(self.offset, pl.Int64),
                "kafka_ts": pl.lit(self.timestamp_ms if 0 <= self.timestamp_ms <= _LAST_MS else None, pl.Int64
                                   ).cast(pl.Datetime("ms", "UTC")),
                "key": pl.lit(self.key, pl.String)}


#: A rejected message's bytes kept in quarantine: enough to see what it was, not a way to fill the disk.
KEPT_PAYLOAD_BYTES = 1 << 20


def message(origin: Origin, reason: str, detail: str, payload: bytes) -> pl.DataFrame:
    """One quarantine row for a message rejected whole (its first :data:`KEPT_PAYLOAD_BYTES` kept)."""
    if len(payload) > KEPT_PAYLOAD_BYTES:
        detail += f" (payload of {len(payload)} bytes, the first {KEPT_PAYLOAD_BYTES} kept)"
        payload = payload[:KEPT_PAYLOAD_BYTES]
    return pl.DataFrame({"reason": [reason], "detail": [detail], "row_json": [None], "payload": [payload]},
                        schema_overrides={"row_json": pl.String, "payload": pl.Binary}
                        ).with_columns(**origin.columns()).select(SCHEMA.names())


def rows(origin: Origin, rejected: pl.DataFrame) -> pl.DataFrame:
    """Quarantine rows for the rejected rows of a readable message (``rejected`` has a ``reason`` column)."""
    # ``ts`` as epoch ms, as on the wire: a producer's ts may lie beyond the dates a JSON encoder can write.
    values = rejected.drop("reason").with_columns(pl.col("ts").dt.epoch("ms")).select(
        pl.struct(pl.all()).struct.json_encode().alias("row_json"))
    return values.with_columns(
        reason=rejected["reason"], detail=pl.lit("row failed validation"), payload=pl.lit(None, pl.Binary),
        **origin.columns(),
    ).select(SCHEMA.names())


def key_text(key: bytes | None) -> str | None:
    return key.decode(errors="replace") if key is not None else None

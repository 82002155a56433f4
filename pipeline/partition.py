"""One Kafka partition's share of the warehouse: buffer its messages and commit them exactly once.

A flush appends to each table of ``schemas/warehouse.py`` (in ``TABLES`` order, ``samples`` last) one Delta
commit that carries this Kafka partition's application transaction: its id (``app_id``) and, as version,
the next offset to read. On assignment the writer reads every table's version: reading resumes from
``samples``'s, and a table whose version is further on (a crash between two tables' commits) skips the
rows it already holds, so nothing is lost or counted twice. Rollup and job tables are appended as
partials, which ``compaction.py`` merges later.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import structlog
from deltalake.exceptions import CommitFailedError

from fleetmeter.pipeline import quarantine, rollups
from fleetmeter.pipeline.dedup import KEY, KEY_SCHEMA, StoredKeys
from fleetmeter.pipeline.messages import MessageReader
from fleetmeter.pipeline.metrics import PipelineMetrics
from fleetmeter.pipeline.settings import PipelineSettings
from fleetmeter.pipeline.validate import MessageRejected, check
from fleetmeter.pipeline.warehouse.delta import DeltaWarehouse
from fleetmeter.schemas.sample_v1 import SAMPLE_SCHEMA
from fleetmeter.schemas.warehouse import (
    DEVICE_1H,
    JOB_DEVICES,
    QUARANTINE,
    ROLLUP_WIDTHS,
    SAMPLES,
    TABLES,
    TIMESTAMP,
    UTIL_1M,
    WINDOW_KEYS,
    app_id,
)

log = structlog.get_logger(__name__)

#: Called with the next offset before a flush commits; raises if the partition was lost.
Fence = Callable[[int], None]

_OFFSET = "_kafka_offset"  # each row's message: a table that holds an offset already skips its rows
_RECEIVED = "_received_ms"  # when each row's poll returned it, for the checks against the clock


class PartitionLost(Exception):
    """The partition is no longer this worker's: Kafka took it away, or another worker committed it."""


@dataclass
class _Pending:
    """Messages read since the last commit."""

    first_offset: int | None = None
    last_offset: int = -1
    decoded: list[pa.Table] = field(default_factory=list)  # readable messages' rows, checked at the commit
    sources: dict[int, tuple[int, bytes | None]] = field(default_factory=dict)  # offset -> Kafka timestamp, key
    quarantined: list[pl.DataFrame] = field(default_factory=list)
    checked: pl.DataFrame | None = None  # the rows that passed the checks, once a commit has checked them
    checked_batches: int = 0  # how many of ``decoded`` are in ``checked``
    rows: int = 0
    since: float = 0.0  # monotonic time of the first message
    arrived_ms: int = 0  # when the first message arrived (epoch ms, the reader's clock): files the quarantine


class PartitionWriter:
    def __init__(self, warehouse: DeltaWarehouse, topic: str, partition: int, topic_id: str | None,
                 settings: PipelineSettings, metrics: PipelineMetrics) -> None:
        self.warehouse = warehouse
        self.topic = topic
        self.partition = partition
        self.topic_id = topic_id
        self.settings = settings
        self.metrics = metrics
        self.app_id = app_id(settings.consumer.group_id, topic, topic_id, partition)
        #: per table: the version of our application transaction it records (None: none yet); a table that
        #: records another was committed by another worker
        self.recorded = {name: warehouse.version_of(name, self.app_id) for name in TABLES}
        #: per table: the next offset it holds rows up to (None: nothing of this partition yet)
        self.stored_up_to = dict(self.recorded)
        self.keys = StoredKeys(self._stored_keys, settings.warehouse.dedup_cache_hours)
        self._restarted = False  # the log's offsets restarted: commit every table at the next flush
        self.pending = _Pending()
        self.reader = MessageReader()

    @property
    def next_offset(self) -> int | None:
        """Where reading resumes: the offset after the last one ``samples`` holds; None when it holds none."""
        return self.stored_up_to[SAMPLES.name]

    def offsets_restarted(self) -> None:
        """The log was cut back: its offsets start again below what the tables record. The next flush commits
        every table, rows or not, so that all their versions restart with it (a table left at the old, higher
        version would skip rows of the new offsets after a crash)."""
        self.stored_up_to = dict.fromkeys(TABLES)
        self._restarted = True

    # -- reading ---------------------------------------------------------------------------------

    def add(self, records: Sequence[quarantine.Record], now_ms: int) -> None:
        """Decode a poll's messages of this partition and hold their rows until the next commit.

        The rows are checked at the commit, all pending polls together: the checks cost milliseconds
        a call, whatever the rows, and a poll may bring only a few hundred rows.
        """
        if not records:
            return
        pending = self.pending
        if pending.first_offset is None:
            pending.first_offset, pending.since, pending.arrived_ms = records[0].offset, time.monotonic(), now_ms
        pending.last_offset = records[-1].offset
        payloads = [(record.offset, record.value or b"") for record in records]
        self.metrics.bytes_in.inc(sum(len(payload) for _, payload in payloads))
        limit = self.settings.validation.max_message_bytes
        decoded, rejected = self.reader.read_all([(o, p) for o, p in payloads if len(p) <= limit], _OFFSET)
        rejected += [(offset, MessageRejected("too_large", f"{len(payload)} bytes, over validation.max_message_bytes"))
                     for offset, payload in payloads if len(payload) > limit]
        by_offset = {record.offset: record for record in records} if rejected else {}
        for offset, exc in rejected:
            self.metrics.quarantined.labels("message", exc.reason).inc()
            pending.quarantined.append(quarantine.message(quarantine.Origin.of(by_offset[offset]), exc.reason,
                                                          exc.detail, by_offset[offset].value or b""))
        self.metrics.messages.labels("rejected").inc(len(rejected))
        if decoded is not None:
            self.metrics.messages.labels("accepted").inc(decoded.messages)
            rows = decoded.rows
            pending.decoded.append(rows.append_column(_RECEIVED, pa.repeat(pa.scalar(now_ms, pa.int64()), len(rows))))
            pending.sources.update((record.offset, (record.timestamp, record.key)) for record in records)
            pending.rows += len(rows)

    def set_aside(self, offset: int, reason: str, detail: str, payload: bytes) -> None:
        """Quarantine, with the message at ``offset`` (already added), input its producer could not make rows
        of (an import's series without a device label)."""
        pending = self.pending
        kafka_ts, key = pending.sources.get(offset, (int(time.time() * 1000), None))
        origin = quarantine.Origin(self.topic, self.partition, offset, kafka_ts, quarantine.key_text(key))
        pending.quarantined.append(quarantine.message(origin, reason, detail, payload))
        self.metrics.quarantined.labels("set_aside", reason).inc()

    def _checked(self) -> pl.DataFrame:
        """The pending rows that pass the checks; the others quarantined with their reason.

        Each batch is checked once: a commit that failed (a full disk) is retried with the same rows and
        quarantine, plus whatever was read since.
        """
        pending = self.pending
        unchecked = pending.decoded[pending.checked_batches:]
        if unchecked or pending.checked is None:
            passed = self._check(unchecked)
            pending.checked = passed if pending.checked is None else pl.concat([pending.checked, passed])
            pending.checked_batches = len(pending.decoded)
        return pending.checked

    def _check(self, batches: list[pa.Table]) -> pl.DataFrame:
        pending = self.pending
        if not batches:
            return pl.DataFrame(pl.from_arrow(SAMPLE_SCHEMA.empty_table())).with_columns(
                pl.lit(None, pl.Int64).alias(_OFFSET))
        frame = pl.from_arrow(pa.concat_tables(batches).combine_chunks())
        assert isinstance(frame, pl.DataFrame)
        checks = self.settings.validation
        result = check(frame, pl.col(_RECEIVED), checks.max_future_s, checks.max_lateness_s)
        for (offset,), rejected in result.rejected.group_by(_OFFSET):
            kafka_ts, key = pending.sources[int(offset)]
            origin = quarantine.Origin(self.topic, self.partition, int(offset),
                                       kafka_ts, quarantine.key_text(key))
            pending.quarantined.append(quarantine.rows(origin, rejected.drop(_OFFSET, _RECEIVED)))
        for reason, count in result.rejected.group_by("reason").len().iter_rows():
            self.metrics.quarantined.labels("row", reason).inc(count)
        self.metrics.rows.labels("quarantined").inc(result.rejected.height)
        return result.rows.drop(_RECEIVED)

    def due(self) -> bool:
        pending = self.pending
        return pending.first_offset is not None and (
            pending.rows >= self.settings.flush.max_rows
            or time.monotonic() - pending.since >= self.settings.flush.max_delay_s)

    # -- committing ------------------------------------------------------------------------------

    def flush(self, fence: Fence) -> None:
        """Commit everything pending, one Delta commit per table that has rows (always one to ``samples``)."""
        pending = self.pending
        if pending.first_offset is None:
            return
        started = time.monotonic()
        next_offset = pending.last_offset + 1
        rows = self._checked()
        fresh = self.keys.new_rows(rows)
        fence(next_offset)
        try:
            if self.recorded[SAMPLES.name] is None:  # mark where this partition starts, before any table's rows
                self._append(SAMPLES.name, rows.clear().drop(_OFFSET), pending.first_offset)
            for table, frame in self._commits(fresh, next_offset):
                self._append(table, frame, next_offset)
                self.stored_up_to[table] = next_offset
                self.metrics.rows_written.labels(table).inc(frame.height)
        except CommitFailedError as exc:  # a commit of our application id won the race: the partition moved
            raise PartitionLost(f"partition {self.partition}: {exc}") from exc
        self.keys.remember(fresh)
        self._restarted = False
        self.metrics.commits.labels("flush").inc()
        self.metrics.committed_offset.labels(str(self.partition)).set(next_offset)
        self.metrics.rows.labels("stored").inc(fresh.height)
        self.metrics.rows.labels("duplicate").inc(rows.height - fresh.height)
        self.metrics.commit_seconds.labels("flush").observe(time.monotonic() - started)
        self.metrics.batch_delay.observe(time.monotonic() - pending.since)
        self.pending = _Pending()

    def _append(self, table: str, frame: pl.DataFrame, version: int) -> None:
        """Commit ``frame`` to ``table`` as ``version`` of our transaction, unless another worker has committed
        one since we read or wrote it (the table as this worker last read it; Delta's conflict check refuses
        one committed after that)."""
        if self.warehouse.version_of(table, self.app_id) != self.recorded[table]:
            raise PartitionLost(f"partition {self.partition}: another worker committed it to {table}")
        self.warehouse.append(table, frame, self.app_id, version)
        self.recorded[table] = version

    def _commits(self, fresh: pl.DataFrame, next_offset: int) -> Iterator[tuple[str, pl.DataFrame]]:
        """Each table's rows of this flush, in commit order, leaving out what a table already holds."""
        pending = self.pending
        assert pending.first_offset is not None
        pieces: dict[int, pl.DataFrame] = {}  # by the first offset included: computed once per distinct set
        minutes: dict[int, pl.DataFrame] = {}
        for name in TABLES:
            since = self.stored_up_to[name] or 0
            if since >= next_offset:
                continue  # committed before a crash, or a failed flush being retried
            rows = fresh.filter(pl.col(_OFFSET) >= since) if since > pending.first_offset else fresh
            if name == QUARANTINE.name:
                frame = self._quarantine(since)
            elif name == SAMPLES.name:
                frame = rows.drop(_OFFSET)
            elif name == JOB_DEVICES.name:
                frame = rollups.job_device_partials(rows)
            else:
                if since not in pieces:
                    pieces[since] = rollups.minute_pieces(rows)
                    minutes[since] = rollups.node_partials(pieces[since])
                if name == DEVICE_1H.name:
                    frame = rollups.device_hour_partials(pieces[since])
                elif name == UTIL_1M.name:
                    frame = minutes[since]
                else:
                    frame = rollups.merge(minutes[since], WINDOW_KEYS, ROLLUP_WIDTHS[name])
            if not frame.is_empty() or name == SAMPLES.name or self._restarted:  # samples': where reading resumes
                yield name, frame

    def _quarantine(self, since: int) -> pl.DataFrame:
        pending = self.pending
        received = pl.lit(pending.arrived_ms).cast(pl.Datetime("ms", "UTC")).alias("received_at")
        rows = pl.concat(pending.quarantined, how="vertical") if pending.quarantined else pl.DataFrame(
            schema=quarantine.SCHEMA)
        return rows.filter(pl.col("offset") >= since).with_columns(received)

    # -- stored keys -----------------------------------------------------------------------------

    def _stored_keys(self, hour_ms: int) -> pl.DataFrame:
        hour = datetime.fromtimestamp(hour_ms / 1000, tz=UTC)
        within = (pc.field("ts") >= pa.scalar(hour, TIMESTAMP)) & (pc.field("ts") < pa.scalar(
            hour + timedelta(hours=1), TIMESTAMP))
        keys = self.warehouse.read(SAMPLES.name, (("date", hour.date().isoformat()),), list(KEY), within)
        if keys.is_empty():
            return pl.DataFrame(schema=KEY_SCHEMA)
        return keys.cast(KEY_SCHEMA)

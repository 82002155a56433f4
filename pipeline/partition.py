"""One Kafka partition's share of the warehouse: buffer its messages, commit them, compact its files.

A commit (see ``warehouse/manifest.py``) writes every new file under the partition's next generation,
then checks that the group still assigns this worker the partition (``fence``), then rewrites the
partition's commit record. Rollup files are rewritten whole (merged with the new partials) rather
than appended to, so each rollup bucket holds one file per partition; the files they replace are
deleted after a grace period. Everything from one batch of offsets lands in one commit.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import polars as pl
import pyarrow as pa
import structlog

from fleetmeter.pipeline import quarantine, rollups, tables
from fleetmeter.pipeline.dedup import KEY, KEY_SCHEMA, StoredKeys
from fleetmeter.pipeline.messages import MessageReader
from fleetmeter.pipeline.metrics import PipelineMetrics
from fleetmeter.pipeline.settings import PipelineSettings
from fleetmeter.pipeline.validate import MessageRejected, check
from fleetmeter.pipeline.warehouse import layout
from fleetmeter.pipeline.warehouse.layout import FileName
from fleetmeter.pipeline.warehouse.manifest import load_state, save_state
from fleetmeter.pipeline.warehouse.storage import TEMPORARY_SUFFIX, Storage

log = structlog.get_logger(__name__)

#: Called with the next offset before a commit record is written; raises if the partition was lost.
Fence = Callable[[int], None]

_ROLLUPS = ((layout.UTIL_1M, rollups.MINUTE_KEYS, None), (layout.UTIL_1H, rollups.WINDOW_KEYS, "1h"),
            (layout.UTIL_1D, rollups.WINDOW_KEYS, "1d"))
_COMPACTED = (layout.SAMPLES, layout.QUARANTINE)
_OFFSET = "_kafka_offset"  # each row's message, while pending rows are validated together
_RECEIVED = "_received_ms"  # when each row's poll returned it, for the checks against the clock
_TIER_BASE = 1 << 20  # compaction tiers: below 1 MiB, then each compact_min_files times larger
_CLOSED_AFTER_MS = 2 * 3600 * 1000  # an hour of samples this far behind the clock gets no more fresh rows


@dataclass
class _Pending:
    """Messages read since the last commit."""

    first_offset: int | None = None
    last_offset: int = -1
    decoded: list[pa.Table] = field(default_factory=list)  # readable messages' rows, checked at the commit
    sources: dict[int, tuple[int, bytes | None]] = field(default_factory=dict)  # offset -> Kafka timestamp, key
    quarantined: list[pl.DataFrame] = field(default_factory=list)
    checked: pl.DataFrame | None = None  # the rows that passed the checks, once a commit has checked them
    rows: int = 0
    since: float = 0.0  # monotonic time of the first message
    arrived_ms: int = 0  # when the first message arrived (epoch ms, the reader's clock): files the quarantine


@dataclass
class _Commit:
    """Files one commit adds and replaces, by bucket directory."""

    name: FileName
    added: dict[str, str] = field(default_factory=dict)
    replaced: list[str] = field(default_factory=list)


class PartitionWriter:
    def __init__(self, storage: Storage, topic: str, partition: int, settings: PipelineSettings,
                 metrics: PipelineMetrics, stored: list[str]) -> None:
        """``stored``: the warehouse's files (:func:`stored_files`), listed once for all partitions assigned."""
        self.storage = storage
        self.topic = topic
        self.partition = partition
        self.settings = settings
        self.metrics = metrics
        self.state = load_state(storage, topic, partition)
        self.files: dict[str, list[str]] = defaultdict(list)  # bucket directory -> this partition's live files
        self.sizes: dict[str, int] = {}  # bytes of the files written or looked at, by path
        self._clean_up(stored)
        self.keys = StoredKeys(self._stored_keys, settings.warehouse.dedup_cache_hours)
        self.pending = _Pending()
        self.reader = MessageReader()

    @property
    def next_offset(self) -> int | None:
        """Where reading resumes, per the warehouse; None when it holds nothing of this partition."""
        return self.state.next_offset

    def read_topic(self, topic_id: str | None) -> bool:
        """Note the id of the topic being read; True if it is not the one the warehouse's offsets refer to
        (the topic was deleted and created again, or a broker lost its data and created it anew). Then
        reading starts again from the beginning of the new topic; replayed samples are duplicates and dropped.
        """
        renewed = None not in (topic_id, self.state.topic_id) and topic_id != self.state.topic_id
        self.state = self.state.reading(topic_id, None if renewed else self.state.next_offset)
        return renewed

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

    def _checked(self) -> pl.DataFrame:
        """The pending rows that pass the checks; the others quarantined with their reason.

        Checked once: a commit that failed (a full disk) is retried with the same rows and quarantine.
        """
        pending = self.pending
        if pending.checked is None:
            pending.checked = self._check()
        return pending.checked

    def _check(self) -> pl.DataFrame:
        pending = self.pending
        if not pending.decoded:
            return tables.empty(layout.SAMPLES)
        frame = pl.from_arrow(pa.concat_tables(pending.decoded).combine_chunks())
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
        return result.rows.drop(_OFFSET, _RECEIVED)

    def due(self) -> bool:
        pending = self.pending
        return pending.first_offset is not None and (
            pending.rows >= self.settings.flush.max_rows
            or time.monotonic() - pending.since >= self.settings.flush.max_delay_s)

    # -- committing ------------------------------------------------------------------------------

    def flush(self, fence: Fence) -> None:
        """Commit everything pending: samples, rollups, jobs, quarantine, and the next offset."""
        pending = self.pending
        if pending.first_offset is None:
            return
        started = time.monotonic()
        commit = self._new_commit(pending.first_offset, pending.last_offset)
        rows = self._checked()
        fresh = self.keys.new_rows(rows)
        if not fresh.is_empty():
            self._write_samples(commit, fresh)
            self._write_rollups(commit, fresh)
            self._write_jobs(commit, fresh)
        if pending.quarantined:  # filed by the day it arrived: a producer's Kafka timestamp can be any int64
            arrived = layout.bucket(layout.QUARANTINE, pending.arrived_ms)
            self._write(commit, arrived, pl.concat(pending.quarantined, how="vertical"))
        self._commit(commit, pending.last_offset + 1, fence, "flush")
        self.keys.remember(fresh)
        self.metrics.rows.labels("stored").inc(fresh.height)
        self.metrics.rows.labels("duplicate").inc(rows.height - fresh.height)
        self.metrics.commit_seconds.labels("flush").observe(time.monotonic() - started)
        self.metrics.batch_delay.observe(time.monotonic() - pending.since)
        self.pending = _Pending()

    def compact_next(self, fence: Fence, now_ms: int) -> bool:
        """Merge the small files of one bucket into one, if any bucket needs it; True if one was."""
        for directory, paths in self.files.items():
            if directory.split("/")[0] in _COMPACTED:
                chosen = self._to_compact(directory, paths, now_ms)
                if chosen:
                    self._compact(directory, chosen, fence)
                    return True
        return False

    def _to_compact(self, directory: str, paths: list[str], now_ms: int) -> list[str]:
        """The files of one size tier once it holds ``compact_min_files`` (or every small file of a bucket
        that takes no more rows); files of ``compact_target_bytes`` or more are left alone.

        Tiers grow by a factor of ``compact_min_files`` from 1 MiB, so merged files merge again only with
        files of their own size: a row is rewritten about once per tier, not once per flush, however
        many flushes an hour takes.
        """
        if len(paths) < 2:
            return []
        warehouse = self.settings.warehouse
        sizes = {path: self._size(path) for path in paths}
        small = [path for path in paths if sizes[path] < warehouse.compact_target_bytes]
        if len(small) > 1 and _is_closed(directory, now_ms):
            return small
        tiers: dict[int, list[str]] = defaultdict(list)
        for path in small:
            tiers[int(math.log(max(sizes[path], _TIER_BASE) / _TIER_BASE, warehouse.compact_min_files))].append(path)
        return next((tier for _, tier in sorted(tiers.items()) if len(tier) >= warehouse.compact_min_files), [])

    def _size(self, path: str) -> int:
        if path not in self.sizes:
            self.sizes[path] = self.storage.size(path)
        return self.sizes[path]

    def _compact(self, directory: str, paths: list[str], fence: Fence) -> None:
        started = time.monotonic()
        names = [name for name in map(FileName.parse, paths) if name is not None]
        commit = self._new_commit(min(n.first_offset for n in names), max(n.last_offset for n in names))
        frame = self.storage.read_parquet(paths)
        table = directory.split("/")[0]
        if table == layout.SAMPLES:
            frame = frame.sort(KEY)
        self._write(commit, directory, frame)
        commit.replaced += paths
        self._commit(commit, self.state.next_offset, fence, "compaction")
        self.metrics.files_compacted.labels(table).inc(len(paths))
        self.metrics.commit_seconds.labels("compaction").observe(time.monotonic() - started)
        log.info("compacted", directory=directory, files=len(paths), rows=frame.height)

    def _new_commit(self, first_offset: int, last_offset: int) -> _Commit:
        generation = self.state.generation + 1
        return _Commit(FileName(self.topic, self.partition, generation, first_offset, last_offset))

    def _write_samples(self, commit: _Commit, fresh: pl.DataFrame) -> None:
        # In arrival order (by node and time): compaction sorts by key, so sorting here would be done twice.
        self._write_by_bucket(commit, layout.SAMPLES, fresh, pl.col("ts"))

    def _write_rollups(self, commit: _Commit, fresh: pl.DataFrame) -> None:
        minutes = rollups.minute_partials(fresh, self.settings.rollup.idle_threshold)
        for table, keys, every in _ROLLUPS:
            partial = minutes if every is None else rollups.merge(minutes, keys, every)
            for start_ms, part in _split(partial, pl.col("window_start"), layout.BUCKET_WIDTH[table]):
                directory = layout.bucket(table, start_ms)
                stored = self.files.get(directory, [])
                merged = rollups.merge(pl.concat([self.storage.read_parquet(stored), part], how="diagonal_relaxed")
                                       if stored else part, keys)
                self._replace(commit, directory, merged)

    def _write_jobs(self, commit: _Commit, fresh: pl.DataFrame) -> None:
        partial = rollups.job_device_partials(fresh, self.settings.rollup.idle_threshold)
        if partial.is_empty():
            return
        stored = self.files.get(layout.JOB_DEVICES, [])
        devices = rollups.merge_job_devices(
            pl.concat([self.storage.read_parquet(stored), partial], how="vertical") if stored else partial)
        self._replace(commit, layout.JOB_DEVICES, devices)
        self._replace(commit, layout.JOBS, rollups.jobs(devices))

    def _write_by_bucket(self, commit: _Commit, table: str, frame: pl.DataFrame, time_column: pl.Expr) -> None:
        for start_ms, part in _split(frame, time_column, layout.BUCKET_WIDTH[table]):
            self._write(commit, layout.bucket(table, start_ms), part)

    def _replace(self, commit: _Commit, directory: str, frame: pl.DataFrame) -> None:
        commit.replaced += self.files.get(directory, [])
        self._write(commit, directory, frame)

    def _write(self, commit: _Commit, directory: str, frame: pl.DataFrame) -> None:
        name = commit.name
        path = f"{directory}/{name}"
        metadata = {"fleetmeter.topic": name.topic, "fleetmeter.partition": str(name.partition),
                    "fleetmeter.generation": str(name.generation), "fleetmeter.first_offset": str(name.first_offset),
                    "fleetmeter.last_offset": str(name.last_offset),
                    "fleetmeter.idle_threshold": str(self.settings.rollup.idle_threshold)}
        written = self.storage.write_parquet(path, frame, metadata)
        self.sizes[path] = written
        table = directory.split("/")[0]
        self.metrics.files_written.labels(table).inc()
        self.metrics.bytes_written.labels(table).inc(written)
        commit.added[directory] = path

    def _commit(self, commit: _Commit, next_offset: int | None, fence: Fence, kind: str) -> None:
        if next_offset is not None:
            fence(next_offset)
        now_ms = int(time.time() * 1000)
        expired = self.state.expired(now_ms, self.settings.warehouse.replaced_grace_s * 1000)
        state = self.state.committed(next_offset, commit.replaced, expired, now_ms)
        save_state(self.storage, state)  # the commit; if it fails, nothing of it happened and it can be retried
        self.state = state
        self.metrics.commits.labels(kind).inc()
        self.metrics.committed_offset.labels(str(self.partition)).set(next_offset or 0)
        for path in expired:
            self.storage.delete(path)
        for path in commit.replaced:
            self.sizes.pop(path, None)
        for directory, path in commit.added.items():
            self.files[directory] = [p for p in self.files.get(directory, []) if p not in commit.replaced] + [path]

    # -- starting --------------------------------------------------------------------------------

    def _clean_up(self, stored: list[str]) -> None:
        """Index this partition's committed files; delete files of commits that never happened."""
        prefix = f"{self.topic}+{self.partition}+"
        for path in stored:
            name = path.rpartition("/")[2]
            if name.startswith(f".{prefix}") and name.endswith(TEMPORARY_SUFFIX):
                log.info("removing half-written file", path=path)
                self.storage.delete(path)
                continue
            if not name.startswith(prefix):
                continue
            if self.state.is_live(path):
                self.files[path.rpartition("/")[0]].append(path)
            elif path not in self.state.replaced:
                log.info("removing uncommitted file", path=path)
                self.storage.delete(path)

    def _stored_keys(self, hour_ms: int) -> pl.DataFrame:
        paths = self.files.get(layout.bucket(layout.SAMPLES, hour_ms), [])
        if not paths:
            return pl.DataFrame(schema=KEY_SCHEMA)
        return self.storage.read_parquet(paths, columns=list(KEY))


def stored_files(storage: Storage) -> list[str]:
    """Every file of every table, half-written ones included: what partitions opened together sort out among
    themselves."""
    return [path for table in layout.TABLES for path in storage.list_files(table, temporaries=True)]


def _split(frame: pl.DataFrame, time_column: pl.Expr, width: str) -> list[tuple[int, pl.DataFrame]]:
    """``frame`` cut into the time buckets of ``width``, each with its start in epoch ms, rows kept in order."""
    starts = frame.select(time_column.dt.truncate(width).dt.epoch("ms").alias("_bucket")).to_series()
    first, last = starts.min(), starts.max()
    if first == last:  # the usual case: partitioning would copy every column for nothing
        return [(int(first), frame)] if first is not None else []  # type: ignore[arg-type]
    return [(int(key[0]), part.drop("_bucket"))
            for key, part in frame.with_columns(starts).partition_by("_bucket", as_dict=True).items()]


def _is_closed(directory: str, now_ms: int) -> bool:
    """Whether an hour bucket (``.../date=YYYY-MM-DD/hour=HH``) ended long enough ago to take no fresh rows."""
    parts = dict(part.split("=", 1) for part in directory.split("/")[1:] if "=" in part)
    start = datetime.strptime(f"{parts['date']} {parts.get('hour', '23')}", "%Y-%m-%d %H").replace(tzinfo=UTC)
    return start.timestamp() * 1000 + _CLOSED_AFTER_MS < now_ms

"""A pipeline worker: one member of a Kafka consumer group, keeping the warehouse for its partitions.

On assignment it opens each partition's share of the warehouse and seeks to the offset the warehouse's
Delta transactions recorded (Kafka's committed offsets only serve lag monitoring); on revocation and on
shutdown it commits what it holds. Between polls it commits partitions whose rows are due, and when nothing
is due it compacts one Delta partition or vacuums files that no retained version reads.
"""

from __future__ import annotations

import contextlib
import threading
import time
from datetime import UTC, datetime
from typing import Any

import structlog
from deltalake.exceptions import DeltaError
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError, OffsetOutOfRangeError
from kafka.structs import OffsetAndMetadata

from fleetmeter import __version__
from fleetmeter.common.backoff import Backoff
from fleetmeter.common.kafka_client import client_kwargs
from fleetmeter.pipeline.compaction import compact_next
from fleetmeter.pipeline.metrics import PipelineMetrics
from fleetmeter.pipeline.partition import Fence, PartitionLost, PartitionWriter
from fleetmeter.pipeline.settings import PipelineSettings
from fleetmeter.pipeline.warehouse.delta import DeltaWarehouse

log = structlog.get_logger(__name__)

_POLL_MS = 200
_LAG_EVERY_S = 5.0


class WarehouseUnavailable(OSError):
    """The worker stopped while the warehouse refused writes."""


class PipelineWorker:
    def __init__(self, settings: PipelineSettings, metrics: PipelineMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or PipelineMetrics()
        self.metrics.info.info({"version": __version__, "group_id": settings.consumer.group_id,
                                "topic": settings.kafka.topic})
        self.stopping = threading.Event()
        self.writers: dict[int, PartitionWriter] = {}
        self._consumer: KafkaConsumer | None = None
        self._assignment_changed: float | None = None  # None until the group has given this worker its share
        self._warehouse: DeltaWarehouse | None = None
        self._topic_read: dict[int, str] = {}  # partition -> id of the topic it was last read from
        self._vacuumed = time.monotonic()
        self.storage_trouble = Backoff()
        self.kafka_trouble = Backoff(first_s=0.5, most_s=10.0)
        self.maintenance_trouble = Backoff()  # compaction and vacuum: retried later, reading goes on

    def run(self) -> None:
        """Consume until stopped (or, with ``until_idle``, until the assigned partitions are drained)."""
        self._warehouse = self._open_warehouse()
        if self._warehouse is None:
            return
        consumer = self._consumer = self._connect()
        idle_since: float | None = None
        lag_checked = 0.0
        try:
            while not self.stopping.is_set():
                records = self._poll(consumer)
                self._add(records)
                if self.storage_trouble.ready():
                    self._flush_due()
                busy = bool(records) or (self.storage_trouble.ready() and self.maintenance_trouble.ready()
                                         and (self._compact_one() or self._vacuum()))
                idle_since = None if busy or self.storage_trouble.failing else idle_since or time.monotonic()
                if time.monotonic() - lag_checked >= _LAG_EVERY_S:
                    self._check_topic()
                    self._update_lag()
                    lag_checked = time.monotonic()
                if self.settings.until_idle and idle_since is not None and self._drained(idle_since):
                    break
            self._flush_all()
            if self.storage_trouble.failing:
                raise WarehouseUnavailable("the warehouse refused the last commit; its rows are read again next time")
            while self.settings.until_idle and self._compact_one():
                pass
        finally:
            consumer.close()
            self._consumer = None
        log.info("worker stopped", partitions=sorted(self.writers))

    def _open_warehouse(self) -> DeltaWarehouse | None:
        """The warehouse's tables (created where missing), before joining the group: a worker of another group
        is refused before it reads anything. A warehouse that refuses writes (a full disk) is waited for."""
        settings = self.settings.warehouse
        while not self.stopping.is_set():
            try:
                warehouse = DeltaWarehouse(settings.uri, settings.storage_options, self.settings.consumer.group_id)
            except (OSError, DeltaError) as exc:
                delay_s = self.storage_trouble.failed()
                self.metrics.storage_errors.labels("open").inc()
                log.error("cannot open the warehouse; retrying", error=str(exc), retry_in_s=round(delay_s, 1))
                self.stopping.wait(delay_s)
                continue
            self.storage_trouble.recovered()
            return warehouse
        return None

    def _connect(self) -> KafkaConsumer:
        consumer_settings = self.settings.consumer
        consumer = KafkaConsumer(
            **client_kwargs(self.settings.kafka),
            group_id=consumer_settings.group_id,
            enable_auto_commit=False,
            auto_offset_reset="none",  # every partition is positioned explicitly; see _out_of_range
            allow_auto_create_topics=False,  # a reader must not create the topic with the broker's defaults
            bootstrap_timeout_ms=self.settings.kafka.request_timeout_ms,
            max_poll_interval_ms=consumer_settings.max_poll_interval_ms,
            session_timeout_ms=consumer_settings.session_timeout_ms,
            heartbeat_interval_ms=consumer_settings.heartbeat_interval_ms,
        )
        consumer.subscribe([self.settings.kafka.topic], listener=_Rebalance(self))
        return consumer

    # -- partitions coming and going ---------------------------------------------------------------

    def assigned(self, partitions: set[TopicPartition]) -> None:
        self._require_warehouse().refresh()
        for tp in sorted(partitions):
            self._open(tp)
            log.info("partition assigned", partition=tp.partition, resume_from=self.writers[tp.partition].next_offset)
        self.metrics.assigned.set(len(self.writers))
        self._assignment_changed = time.monotonic()

    def _open(self, tp: TopicPartition) -> None:
        """(Re)start a partition from the warehouse's transactions: never from Kafka's committed offset, which
        a fenced commit may have moved past what reached the warehouse."""
        consumer = self._require_consumer()
        topic_id = self._topic_id()
        writer = PartitionWriter(self._require_warehouse(), tp.topic, tp.partition, topic_id, self.settings,
                                 self.metrics)
        self.writers[tp.partition] = writer
        read_before = self._topic_read.get(tp.partition)
        if topic_id is not None:
            self._topic_read[tp.partition] = topic_id
        if writer.next_offset is not None:
            consumer.seek(tp, writer.next_offset)
        elif read_before not in (None, topic_id):
            log.error("the topic was created anew (its id changed): reading the partition again from its start",
                      partition=tp.partition, topic_id=topic_id)
            self.metrics.log_resets.labels("topic_recreated").inc()
            consumer.seek_to_beginning(tp)
        elif self.settings.consumer.start_from == "earliest":
            consumer.seek_to_beginning(tp)
        else:
            consumer.seek_to_end(tp)

    def revoked(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            writer = self.writers.pop(tp.partition, None)
            if writer is not None:
                # the next owner redoes what this one could not commit
                with contextlib.suppress(PartitionLost, OSError, DeltaError):
                    writer.flush(self._fence(tp.partition))
            with contextlib.suppress(KeyError):  # no lag was reported for it yet
                self.metrics.lag.remove(str(tp.partition))
            log.info("partition revoked", partition=tp.partition)
        self.metrics.assigned.set(len(self.writers))
        # kafka-python calls this before every JoinGroup, which a broker may hold for seconds (Tansu about a
        # session timeout): the share is unknown until the group answers
        self._assignment_changed = None

    # -- the log changing under the warehouse -------------------------------------------------------

    def _poll(self, consumer: KafkaConsumer) -> dict[TopicPartition, list[Any]]:
        """The next records; none while Kafka is out of reach (the worker waits it out, backing off)."""
        try:
            try:
                records: dict[TopicPartition, list[Any]] = consumer.poll(
                    timeout_ms=_POLL_MS, max_records=self.settings.consumer.max_poll_records)
                if self.kafka_trouble.failing:
                    log.info("kafka reachable again")
                    self.kafka_trouble.recovered()
                return records
            except OffsetOutOfRangeError as exc:
                self._out_of_range(exc.args[0])
        except KafkaError as exc:
            if not exc.retriable:
                raise
            delay_s = self.kafka_trouble.failed()
            self.metrics.kafka_errors.inc()
            log.warning("kafka out of reach; retrying", error=str(exc), retry_in_s=round(delay_s, 1))
            self.stopping.wait(delay_s)
        return {}

    def _out_of_range(self, positions: dict[TopicPartition, int]) -> None:
        """The broker no longer has the offset the warehouse resumes from.

        Below the log's start, retention deleted messages before they were read: they are lost, and
        counted. Past its end, the log was cut back (a broker lost data): read it again from its start.
        """
        consumer = self._require_consumer()
        starts = consumer.beginning_offsets(list(positions))
        for tp, offset in positions.items():
            start = starts[tp]
            if offset < start:
                log.error("messages deleted by retention before they were read", partition=tp.partition,
                          first_lost=offset, lost=start - offset)
                self.metrics.messages_lost.labels("retention").inc(start - offset)
            else:
                log.error("offset past the end of the log: the log was truncated; reading it again from its start",
                          partition=tp.partition, offset=offset, start=start)
                self.metrics.log_resets.labels("truncated").inc()
                if tp.partition in self.writers:
                    self._flush(self.writers[tp.partition])  # what was read before the cut, at the old offsets
                    self.writers[tp.partition].offsets_restarted()
            consumer.seek(tp, start)

    def _topic_id(self) -> str | None:
        """The topic's id in the cluster metadata (Kafka 2.8+ and Tansu give one; None where not known).

        kafka-python keeps it in its cluster metadata only, which it does not expose publicly.
        """
        topic_id = self._require_consumer()._client.cluster.topic_id(self.settings.kafka.topic)
        return None if topic_id is None else str(topic_id)

    def _check_topic(self) -> None:
        """Restart the partitions from the beginning if the topic was created anew since they were read: what
        was read from the old topic is committed first. Their offsets in the new topic are recorded under an
        application id of their own (``schemas.warehouse.app_id``); replayed samples are duplicates, dropped.

        The ids a partition was read from are known to this process only: a worker started after the topic
        was recreated finds no offsets for the new id and starts where ``consumer.start_from`` says."""
        topic_id = self._topic_id()
        for writer in list(self.writers.values()):
            if None in (topic_id, writer.topic_id) or writer.topic_id == topic_id:
                continue
            self._flush(writer)
            if writer.pending.first_offset is None:  # committed: or read again, after the warehouse is back
                self._open(TopicPartition(writer.topic, writer.partition))

    # -- the loop's steps --------------------------------------------------------------------------

    def _add(self, records: dict[TopicPartition, list[Any]]) -> None:
        now_ms = int(time.time() * 1000)
        for tp, messages in records.items():
            writer = self.writers.get(tp.partition)
            if writer is None:  # records of a partition revoked during this poll
                continue
            writer.add(messages, now_ms)

    def _flush_due(self) -> None:
        for writer in list(self.writers.values()):
            if writer.due():
                self._flush(writer)

    def _flush_all(self) -> None:
        for writer in list(self.writers.values()):
            self._flush(writer)

    def _flush(self, writer: PartitionWriter) -> None:
        try:
            writer.flush(self._fence(writer.partition))
            self._storage_ok()
        except PartitionLost as exc:
            self._restart(writer, exc)
        except (OSError, DeltaError) as exc:
            self._storage_failed("flush", exc)

    def _compact_one(self) -> bool:
        """Compact one due Delta partition (compaction.py)."""
        try:
            compacted = compact_next(self._require_warehouse(), self.settings.warehouse, self.metrics,
                                     datetime.now(UTC))
        except (OSError, DeltaError) as exc:
            self._maintenance_failed("compaction", exc)
            return False
        self.maintenance_trouble.recovered()
        return compacted

    def _vacuum(self) -> bool:
        """Every ``vacuum_every_s``: delete the files that no version within ``retain_hours`` reads."""
        settings = self.settings.warehouse
        if time.monotonic() - self._vacuumed < settings.vacuum_every_s:
            return False
        self._vacuumed = time.monotonic()
        try:
            deleted = self._require_warehouse().vacuum(settings.retain_hours)
        except (OSError, DeltaError) as exc:
            self._maintenance_failed("vacuum", exc)
            return False
        log.info("vacuumed", files_deleted=deleted, retain_hours=settings.retain_hours)
        return True

    def _maintenance_failed(self, operation: str, exc: Exception) -> None:
        """Compaction or vacuum failed: nothing of it happened, and it is tried again later; reading goes on
        (flushes then meet the trouble themselves, if it lasts)."""
        delay_s = self.maintenance_trouble.failed()
        self.metrics.storage_errors.labels(operation).inc()
        log.error("warehouse maintenance failed; retrying later", operation=operation, error=str(exc),
                  retry_in_s=round(delay_s, 1))

    def _storage_failed(self, operation: str, exc: Exception) -> None:
        """The warehouse refused a write (a full disk, an object store away): stop reading and retry the
        commit later with the same rows. The commit record was not written, so nothing is half stored."""
        consumer = self._require_consumer()
        delay_s = self.storage_trouble.failed()
        self.metrics.storage_errors.labels(operation).inc()
        log.error("warehouse write failed; reading paused, retrying", operation=operation, error=str(exc),
                  retry_in_s=round(delay_s, 1))
        consumer.pause(*consumer.assignment())

    def _storage_ok(self) -> None:
        if self.storage_trouble.failing:
            log.info("warehouse writes work again; reading resumed")
            self.storage_trouble.recovered()
            consumer = self._require_consumer()
            consumer.resume(*consumer.paused())

    def _restart(self, writer: PartitionWriter, exc: PartitionLost) -> None:
        """Drop what the refused commit would have written and read the partition again from the tables'
        transactions; if the group no longer assigns it here, drop it (the next poll revokes it anyway).
        """
        log.warning("commit refused; restarting the partition from the warehouse", partition=writer.partition,
                    error=str(exc))
        tp = TopicPartition(writer.topic, writer.partition)
        if tp not in self._require_consumer().assignment():
            self.writers.pop(writer.partition, None)
            return
        self._require_warehouse().refresh()
        self._open(tp)

    def _fence(self, partition: int) -> Fence:
        def still_owned(next_offset: int) -> None:
            """Refuse the commit if the group has taken the partition away; tell Kafka the offset.

            Kafka's committed offset only serves lag monitoring (the warehouse is the record), so it is
            committed asynchronously: kafka-python refuses synchronous commits while a rebalance is
            pending, which would stall every commit whenever a worker joins the group.
            """
            consumer = self._require_consumer()
            tp = TopicPartition(self.settings.kafka.topic, partition)
            if tp not in consumer.assignment():
                raise PartitionLost(f"partition {partition} is no longer assigned to this worker")
            consumer.commit_async({tp: OffsetAndMetadata(next_offset, "", -1)})
        return still_owned

    def _drained(self, idle_since: float) -> bool:
        """Nothing pending, nothing new for ``idle_s``, and every assigned partition read to its end.

        The worker must have been given its share (perhaps none) by the group, and the assignment must have
        held for a session timeout: a member killed earlier may still hold
        partitions until the group expels it, and they are this worker's to drain once it does. A worker
        given no partition stops after that too (live peers drain theirs). End offsets alone are not
        enough to tell drained: Tansu under-reports them for multi-record batches.
        """
        if self._assignment_changed is None:
            return False
        consumer = self._require_consumer()
        if not self.writers and not consumer._client.cluster.partitions_for_topic(self.settings.kafka.topic):
            # A group leader without metadata for the topic hands out nothing, and rejoins once metadata
            # comes: an empty share counts only from when the topic is known (kafka-python keeps that private).
            self._assignment_changed = time.monotonic()
            return False
        settled = time.monotonic() - self._assignment_changed >= self.settings.consumer.session_timeout_ms / 1000
        if not settled or time.monotonic() - idle_since < self.settings.idle_s:
            return False
        if not self.writers:
            return True
        assignment = consumer.assignment()
        try:
            ends = consumer.end_offsets(list(assignment))
            return all(consumer.position(tp) >= end for tp, end in ends.items())
        except KafkaError:
            return False

    def _update_lag(self) -> None:
        consumer = self._require_consumer()
        assignment = consumer.assignment()
        if not assignment:
            return
        try:
            ends = consumer.end_offsets(list(assignment))
        except KafkaError as exc:
            log.warning("cannot read end offsets for lag", error=str(exc))
            return
        for tp, end in ends.items():
            writer = self.writers.get(tp.partition)
            committed = writer.next_offset if writer is not None and writer.next_offset is not None else 0
            self.metrics.lag.labels(str(tp.partition)).set(max(0, end - committed))

    def _require_warehouse(self) -> DeltaWarehouse:
        if self._warehouse is None:
            raise RuntimeError("the worker is not running")
        return self._warehouse

    def _require_consumer(self) -> KafkaConsumer:
        if self._consumer is None:
            raise RuntimeError("the worker is not running")
        return self._consumer


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, worker: PipelineWorker) -> None:
        self.worker = worker

    def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        self.worker.revoked(revoked)

    def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        self.worker.assigned(assigned)


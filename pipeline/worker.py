"""A pipeline worker: one member of a Kafka consumer group, keeping the warehouse for its partitions.

On assignment it opens each partition's share of the warehouse and seeks to the offset the warehouse
recorded (Kafka's committed offsets only serve lag monitoring); on revocation and on
shutdown it commits what it holds. Between polls it commits partitions whose rows are due and compacts
one bucket of small files when nothing is due.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

import structlog
from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from fleetmeter.kafka_client import client_kwargs
from pipeline.metrics import PipelineMetrics
from pipeline.partition import Fence, PartitionWriter, stored_files
from pipeline.settings import PipelineSettings
from pipeline.warehouse.storage import Storage

log = structlog.get_logger(__name__)

_POLL_MS = 200
_LAG_EVERY_S = 5.0


class PartitionLost(Exception):
    """Kafka refused our offset commit: the partition may have moved to another worker."""


class PipelineWorker:
    def __init__(self, settings: PipelineSettings, metrics: PipelineMetrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or PipelineMetrics()
        self.storage = Storage(settings.warehouse.uri)
        self.stopping = threading.Event()
        self.writers: dict[int, PartitionWriter] = {}
        self._consumer: KafkaConsumer | None = None
        self._assignment_changed = time.monotonic()

    def run(self) -> None:
        """Consume until stopped (or, with ``until_idle``, until the assigned partitions are drained)."""
        consumer = self._consumer = self._connect()
        idle_since: float | None = None
        lag_checked = 0.0
        try:
            while not self.stopping.is_set():
                records = consumer.poll(timeout_ms=_POLL_MS, max_records=self.settings.consumer.max_poll_records)
                self._add(records)
                self._flush_due()
                busy = bool(records) or self._compact_one()
                idle_since = None if busy else idle_since or time.monotonic()
                if time.monotonic() - lag_checked >= _LAG_EVERY_S:
                    self._update_lag()
                    lag_checked = time.monotonic()
                if self.settings.until_idle and idle_since is not None and self._drained(idle_since):
                    break
            self._flush_all()
            while self.settings.until_idle and self._compact_one():
                pass
        finally:
            consumer.close()
            self._consumer = None
        log.info("worker stopped", partitions=sorted(self.writers))

    def _connect(self) -> KafkaConsumer:
        consumer_settings = self.settings.consumer
        consumer = KafkaConsumer(
            **client_kwargs(self.settings.kafka),
            group_id=consumer_settings.group_id,
            enable_auto_commit=False,
            auto_offset_reset=consumer_settings.start_from,
            max_poll_interval_ms=consumer_settings.max_poll_interval_ms,
            session_timeout_ms=consumer_settings.session_timeout_ms,
            heartbeat_interval_ms=consumer_settings.heartbeat_interval_ms,
        )
        consumer.subscribe([self.settings.kafka.topic], listener=_Rebalance(self))
        return consumer

    # -- partitions coming and going ---------------------------------------------------------------

    def assigned(self, partitions: set[TopicPartition]) -> None:
        stored = stored_files(self.storage)
        for tp in sorted(partitions):
            self._open(tp, stored)
            log.info("partition assigned", partition=tp.partition, resume_from=self.writers[tp.partition].next_offset)
        self.metrics.assigned.set(len(self.writers))
        self._assignment_changed = time.monotonic()

    def _open(self, tp: TopicPartition, stored: list[str]) -> None:
        """(Re)start a partition from the warehouse's record: never from Kafka's committed offset, which a
        fenced commit may have moved past what reached the warehouse."""
        consumer = self._require_consumer()
        writer = PartitionWriter(self.storage, tp.topic, tp.partition, self.settings, self.metrics, stored)
        self.writers[tp.partition] = writer
        if writer.next_offset is not None:
            consumer.seek(tp, writer.next_offset)
        elif self.settings.consumer.start_from == "earliest":
            consumer.seek_to_beginning(tp)
        else:
            consumer.seek_to_end(tp)

    def revoked(self, partitions: set[TopicPartition]) -> None:
        for tp in partitions:
            writer = self.writers.pop(tp.partition, None)
            if writer is not None:
                with contextlib.suppress(PartitionLost):  # the next owner redoes what this one could not commit
                    writer.flush(self._fence(tp.partition))
            with contextlib.suppress(KeyError):  # no lag was reported for it yet
                self.metrics.lag.remove(str(tp.partition))
            log.info("partition revoked", partition=tp.partition)
        self.metrics.assigned.set(len(self.writers))
        self._assignment_changed = time.monotonic()

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
        except PartitionLost as exc:
            self._restart(writer, exc)

    def _compact_one(self) -> bool:
        now_ms = int(time.time() * 1000)
        for writer in list(self.writers.values()):
            try:
                if writer.compact_next(self._fence(writer.partition), now_ms):
                    return True
            except PartitionLost as exc:
                self._restart(writer, exc)
        return False

    def _restart(self, writer: PartitionWriter, exc: PartitionLost) -> None:
        """Drop what the failed commit wrote and read the partition again from the warehouse's record.

        If the partition really moved to another worker, the next poll revokes it.
        """
        log.warning("commit refused by Kafka; restarting the partition from the warehouse",
                    partition=writer.partition, error=str(exc))
        self._open(TopicPartition(writer.topic, writer.partition), stored_files(self.storage))

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

        The assignment must also have held for a session timeout: a member killed earlier may still hold
        partitions until the group expels it, and they are this worker's to drain once it does. A worker
        given no partition stops after that too (live peers drain theirs). End offsets alone are not
        enough to tell drained: Tansu under-reports them for multi-record batches.
        """
        settled = time.monotonic() - self._assignment_changed >= self.settings.consumer.session_timeout_ms / 1000
        if not settled or time.monotonic() - idle_since < self.settings.idle_s:
            return False
        if not self.writers:
            return True
        consumer = self._require_consumer()
        assignment = consumer.assignment()
        try:
            ends = consumer.end_offsets(list(assignment))
        except KafkaError:
            return False
        return all(consumer.position(tp) >= end for tp, end in ends.items())

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


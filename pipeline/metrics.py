"""The worker's own Prometheus metrics (names prefixed ``fleetmeter_pipeline_``, base units)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, disable_created_metrics

from fleetmeter.pipeline.validate import MESSAGE_REASONS, ROW_REASONS
from fleetmeter.schemas.warehouse import TABLES

#: Warehouse operations that can fail and are retried (``storage_errors``).
STORAGE_OPERATIONS = ("open", "flush", "compaction", "vacuum")


class PipelineMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series only double the output
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages = Counter("fleetmeter_pipeline_messages", "Kafka messages read, by outcome.",
                                ["outcome"], registry=r)
        self.bytes_in = Counter("fleetmeter_pipeline_bytes_in", "Bytes of Kafka message payloads read.",
                                registry=r)
        self.rows = Counter("fleetmeter_pipeline_rows", "Sample rows by outcome: stored, duplicate, quarantined.",
                            ["outcome"], registry=r)
        self.quarantined = Counter("fleetmeter_pipeline_quarantined", "Rows or whole messages quarantined, by reason.",
                                   ["kind", "reason"], registry=r)
        self.rows_written = Counter("fleetmeter_pipeline_rows_written", "Rows appended to each Delta table "
                                    "(rollup and job tables: partials).", ["table"], registry=r)
        self.files_compacted = Counter("fleetmeter_pipeline_files_compacted",
                                       "Files merged away by compaction, by table.", ["table"], registry=r)
        self.commits = Counter("fleetmeter_pipeline_commits", "Flushes (one Delta commit per table that has rows) "
                               "and compactions (one commit each), by kind.", ["kind"], registry=r)
        self.commit_seconds = Histogram(
            "fleetmeter_pipeline_commit_duration_seconds", "Time to write one flush or compaction.",
            ["kind"], buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r)
        self.batch_delay = Histogram(
            "fleetmeter_pipeline_batch_delay_seconds",
            "From reading a batch's first message to its commit: how long rows wait to become visible.",
            buckets=(0.1, 0.5, 1, 5, 10, 30, 60, 120, 300), registry=r)
        self.lag = Gauge("fleetmeter_pipeline_consumer_lag", "Messages in the partition not yet committed.",
                         ["partition"], registry=r)
        self.committed_offset = Gauge("fleetmeter_pipeline_committed_offset",
                                      "Next offset to read, per the warehouse.", ["partition"], registry=r)
        self.storage_errors = Counter("fleetmeter_pipeline_storage_errors",
                                      "Warehouse writes that failed (full disk, object store away), by operation; "
                                      "each is retried.", ["operation"], registry=r)
        self.kafka_errors = Counter("fleetmeter_pipeline_kafka_errors",
                                    "Polls that failed because Kafka was out of reach; each is retried.", registry=r)
        self.log_resets = Counter("fleetmeter_pipeline_log_resets",
                                  "Partitions read again from the start because the topic was created anew or "
                                  "its log was cut back, by cause.", ["cause"], registry=r)
        self.messages_lost = Counter("fleetmeter_pipeline_messages_lost",
                                     "Messages deleted from Kafka before they were read, by cause.", ["cause"],
                                     registry=r)
        self.assigned = Gauge("fleetmeter_pipeline_assigned_partitions", "Partitions this worker owns.", registry=r)
        self.info = Info("fleetmeter_pipeline", "This worker: its version, consumer group and topic.", registry=r)
        self._start_at_zero()

    def _start_at_zero(self) -> None:
        """Every series whose labels are known at start exists from the start at 0: an alert on ``increase``
        sees the first event, and a panel shows 0 instead of "no data"."""
        for outcome in ("accepted", "rejected"):
            self.messages.labels(outcome)
        for outcome in ("stored", "duplicate", "quarantined"):
            self.rows.labels(outcome)
        for kind, reasons in (("message", MESSAGE_REASONS), ("row", ROW_REASONS)):
            for reason in reasons:
                self.quarantined.labels(kind, reason)
        for table in TABLES:
            self.rows_written.labels(table)
            self.files_compacted.labels(table)
        for kind in ("flush", "compaction"):
            self.commits.labels(kind)
            self.commit_seconds.labels(kind)
        for operation in STORAGE_OPERATIONS:
            self.storage_errors.labels(operation)
        for cause in ("topic_recreated", "truncated"):
            self.log_resets.labels(cause)
        self.messages_lost.labels("retention")

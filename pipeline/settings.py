"""Configuration of a pipeline worker (``fleetmeter pipeline run``), layered as every command's is."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from fleetmeter.common.settings import EndpointSettings, KafkaSettings, LayeredSettings, LoggingSettings, Section


class ConsumerSettings(Section):
    group_id: str = Field(default="fleetmeter-pipeline", min_length=1)
    start_from: Literal["earliest", "latest"] = Field(
        default="earliest", description="Where a partition the warehouse has never seen starts.")
    max_poll_records: int = Field(default=2000, gt=0)
    max_poll_interval_ms: int = Field(default=300_000, gt=0, description="Kafka's rebalance timeout.")
    session_timeout_ms: int = Field(default=30_000, gt=0)
    heartbeat_interval_ms: int = Field(default=3_000, gt=0)


class FlushSettings(Section):
    max_delay_s: float = Field(default=30.0, gt=0, description="Rows reach the warehouse within this long.")
    max_rows: int = Field(default=500_000, gt=0, description="A partition flushes once this many rows wait.")


class ValidationSettings(Section):
    max_message_bytes: int = Field(
        default=16 << 20, gt=0, description="Larger messages are quarantined whole as too_large.")
    max_future_s: float = Field(default=300.0, ge=0, description="Rows further ahead of the clock are rejected.")
    max_lateness_s: float | None = Field(
        default=30 * 86_400, gt=0,
        description="Rows older than this are quarantined as ts_too_old; null accepts any age.")


class WarehouseSettings(Section):
    uri: str = Field(default="warehouse", min_length=1,
                     description="Directory or object-store URI (s3://bucket/prefix, gs://, az://, ...).")
    storage_options: dict[str, str] = Field(
        default_factory=dict, description="delta-rs object-store options (AWS_ENDPOINT_URL, ...); the "
                                          "environment's AWS_*, GOOGLE_*, AZURE_* variables are read too.")
    compact_min_files: int = Field(
        default=8, ge=2, description="Merge a rollup partition's partials after this many appends of this "
                                     "worker to it (samples are compacted once their day is closed).")
    retain_hours: float = Field(
        default=168.0, ge=1, description="Files replaced by compaction are vacuumed after this long: readers "
                                         "and `fleetmeter query --as-of` can read any version this recent.")
    vacuum_every_s: float = Field(default=3600.0, gt=0, description="How often a worker vacuums.")
    dedup_cache_hours: int = Field(default=6, ge=1, description="Hours of (device_uuid, ts) keys kept in memory.")


class PipelineMetricsSettings(EndpointSettings):
    port: int = Field(default=9411, ge=0, le=65535)


class PipelineSettings(LayeredSettings):
    kafka: KafkaSettings = KafkaSettings()
    consumer: ConsumerSettings = ConsumerSettings()
    warehouse: WarehouseSettings = WarehouseSettings()
    flush: FlushSettings = FlushSettings()
    validation: ValidationSettings = ValidationSettings()
    metrics: PipelineMetricsSettings = PipelineMetricsSettings()
    logging: LoggingSettings = LoggingSettings()
    until_idle: bool = Field(default=False, description="Drain the topic, finish the rollups and exit.")
    idle_s: float = Field(default=2.0, gt=0, description="With until_idle: how long nothing new means drained.")

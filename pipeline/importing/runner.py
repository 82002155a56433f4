"""An import runs a source's rows through the live path: the same checks, quarantine, dedup, rollups and
exactly-once Delta commits as a Kafka partition's.

A source has an identity (for a file, its content's hash and the batch size) and is cut into numbered
batches, always the same way. Each batch goes through a ``PartitionWriter`` as the message at that number's
offset of a topic named after the source, so the tables' application transactions record how far the
import got: interrupted at any point and run again, it resumes after the last committed batch, and what it
stored before is never stored twice (and neither is what live collectors stored: same dedup key).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import pyarrow as pa

from fleetmeter.pipeline.metrics import PipelineMetrics
from fleetmeter.pipeline.partition import PartitionWriter
from fleetmeter.pipeline.quarantine import Message
from fleetmeter.pipeline.settings import PipelineSettings
from fleetmeter.pipeline.warehouse.delta import DeltaWarehouse
from fleetmeter.schemas import wire

#: Batches committed together: fewer, larger Delta commits; an interruption redoes at most this many.
FLUSH_EVERY = 8


@dataclass
class Summary:
    batches: int = 0
    resumed_after: int = 0  # batches an earlier run had committed, skipped
    rows: int = 0
    stored: int = 0
    duplicates: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)


def for_history(settings: PipelineSettings) -> PipelineSettings:
    """An import's settings: history of any age is accepted (rows from the future are still refused)."""
    return settings.model_copy(update={"validation": settings.validation.model_copy(update={"max_lateness_s": None})})


def run_import(source: str, batches: Iterable[pa.RecordBatch], settings: PipelineSettings) -> Summary:
    """Store ``batches`` (schema-v1 rows) of the source named ``source``; what an earlier run stored is skipped."""
    topic = f"import.{source}"
    metrics = PipelineMetrics()
    warehouse = DeltaWarehouse(settings.warehouse.uri, settings.warehouse.storage_options,
                               settings.consumer.group_id)
    writer = PartitionWriter(warehouse, topic, 0, None, for_history(settings), metrics)
    summary = Summary(resumed_after=writer.next_offset or 0)
    for offset, batch in enumerate(batches):
        summary.batches += 1
        if offset < summary.resumed_after:
            continue
        now_ms = int(time.time() * 1000)
        writer.add([Message(topic, 0, offset, now_ms, None, wire.encode(batch))], now_ms)
        summary.rows += batch.num_rows
        if (offset + 1) % FLUSH_EVERY == 0:
            writer.flush(_unfenced)
    writer.flush(_unfenced)
    rows = "fleetmeter_pipeline_rows_total"
    summary.stored = int(metrics.registry.get_sample_value(rows, {"outcome": "stored"}) or 0)
    summary.duplicates = int(metrics.registry.get_sample_value(rows, {"outcome": "duplicate"}) or 0)
    summary.quarantined = {sample.labels["reason"]: int(sample.value) for family in metrics.quarantined.collect()
                           for sample in family.samples if sample.name.endswith("_total") and sample.value}
    return summary


def _unfenced(next_offset: int) -> None:
    """An import's partition belongs to no consumer group: nothing can take it away."""

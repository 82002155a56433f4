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
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc

from fleetmeter.pipeline.importing.overlap import covered
from fleetmeter.pipeline.metrics import PipelineMetrics
from fleetmeter.pipeline.partition import PartitionWriter
from fleetmeter.pipeline.quarantine import Message
from fleetmeter.pipeline.settings import PipelineSettings
from fleetmeter.pipeline.warehouse.delta import DeltaWarehouse
from fleetmeter.schemas import wire

#: Batches committed together: fewer, larger Delta commits; an interruption redoes at most this many.
FLUSH_EVERY = 8


@dataclass(frozen=True)
class SetAside:
    """Input that cannot become rows (a series without a device label): quarantined with its reason."""

    reason: str
    detail: str
    payload: bytes
    count: int  # the points or rows it stands for


@dataclass(frozen=True)
class Batch:
    rows: pa.RecordBatch
    set_aside: tuple[SetAside, ...] = ()


class Source(Protocol):
    @property
    def identity(self) -> str:
        """Names the import: the same arguments give the same identity and the same batches."""
        ...

    def batches(self, first: int) -> Iterator[Batch]:
        """The batches from number ``first`` on (those before were stored by an earlier run)."""
        ...


@dataclass
class Summary:
    batches: int = 0  # read in this run
    resumed_after: int = 0  # batches an earlier run had committed, skipped
    rows: int = 0
    stored: int = 0
    duplicates: int = 0
    covered: int = 0  # rows whose time the warehouse already holds for their device (live data)
    quarantined: dict[str, int] = field(default_factory=dict)
    set_aside: Counter[str] = field(default_factory=Counter)



def for_history(settings: PipelineSettings) -> PipelineSettings:
    """An import's settings: history of any age is accepted (rows from the future are still refused)."""
    return settings.model_copy(update={"validation": settings.validation.model_copy(update={"max_lateness_s": None})})


def run_import(source: Source, settings: PipelineSettings, *, yield_to_stored: bool = False) -> Summary:
    """Store the source's batches; what an earlier run stored is skipped. With ``yield_to_stored``, rows whose
    interval overlaps one the warehouse holds for the same device (a collector's) are left out."""
    topic = f"import.{source.identity}"
    metrics = PipelineMetrics()
    warehouse = DeltaWarehouse(settings.warehouse.uri, settings.warehouse.storage_options,
                               settings.consumer.group_id)
    writer = PartitionWriter(warehouse, topic, 0, None, for_history(settings), metrics)
    summary = Summary(resumed_after=writer.next_offset or 0)
    for offset, batch in enumerate(source.batches(summary.resumed_after), start=summary.resumed_after):
        rows = batch.rows
        if yield_to_stored and rows.num_rows:
            overlapping = covered(warehouse, rows)
            summary.covered += overlapping.true_count
            rows = rows.filter(pc.invert(overlapping))
        now_ms = int(time.time() * 1000)
        writer.add([Message(topic, 0, offset, now_ms, None, payload)
                    for payload in payloads(rows, settings.validation.max_message_bytes)], now_ms)
        for aside in batch.set_aside:
            writer.set_aside(offset, aside.reason, aside.detail, aside.payload)
            summary.set_aside[aside.reason] += aside.count
        summary.batches += 1
        summary.rows += batch.rows.num_rows
        if (offset + 1) % FLUSH_EVERY == 0:
            writer.flush(_unfenced)
    writer.flush(_unfenced)
    rows_total = "fleetmeter_pipeline_rows_total"
    summary.stored = int(metrics.registry.get_sample_value(rows_total, {"outcome": "stored"}) or 0)
    summary.duplicates = int(metrics.registry.get_sample_value(rows_total, {"outcome": "duplicate"}) or 0)
    summary.quarantined = {sample.labels["reason"]: int(sample.value) for family in metrics.quarantined.collect()
                           for sample in family.samples if sample.name.endswith("_total") and sample.value
                           and sample.labels["kind"] != "set_aside"}
    return summary


def payloads(rows: pa.RecordBatch, max_bytes: int) -> Iterator[bytes]:
    """The rows as wire messages of at most ``max_bytes`` each, where a row fits (halved until they do)."""
    payload = wire.encode(rows)
    if len(payload) <= max_bytes or rows.num_rows <= 1:
        yield payload  # a single row over the bound is quarantined as too large, like a collector's
        return
    half = rows.num_rows // 2
    yield from payloads(rows.slice(0, half), max_bytes)
    yield from payloads(rows.slice(half), max_bytes)


def _unfenced(next_offset: int) -> None:
    """An import's partition belongs to no consumer group: nothing can take it away."""

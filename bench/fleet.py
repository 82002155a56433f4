"""Seeded benchmark data: sample rows and Kafka messages of a simulated fleet, produced by the collector's code.

A template fleet is read through the real collector path (simulated backend -> IntervalBuilder ->
attribution -> ``rows_to_batch``), so every column holds what a daemon would send. Larger fleets are
copies of the template with their node and device names made unique: the readings repeat, the keys
(device, node, tenant, job) do not, which is what the pipeline's work depends on. Messages are one Arrow
IPC stream per node and ``scrapes_per_message`` scrapes, exactly as the daemon ships them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import polars as pl
import pyarrow as pa

from fleetmeter.collectors.attribution import Attribution, BackendHint
from fleetmeter.collectors.backends.simulated import SimulatedBackend
from fleetmeter.collectors.intervals import IntervalBuilder
from fleetmeter.collectors.settings import SimulatedSettings
from fleetmeter.schemas import wire
from fleetmeter.schemas.sample_v1 import SAMPLE_SCHEMA, rows_to_batch

CLUSTER = "bench"
DEVICES_PER_NODE = 8
TEMPLATE_NODES = 16  # 128 simulated GPUs; bigger fleets are copies of them


@dataclass(frozen=True)
class Message:
    key: bytes
    payload: bytes
    rows: int
    collected_ms: int  # when the newest of its scrapes was taken (its rows' ts + interval_s)


def template_rows(scrapes: int, interval_s: float, start: datetime, seed: int = 7,
                  nodes: int = TEMPLATE_NODES) -> pl.DataFrame:
    """``scrapes`` intervals of ``nodes`` simulated 8-GPU nodes, as the collector builds its rows."""
    settings = SimulatedSettings(nodes=nodes, devices_per_node=DEVICES_PER_NODE, seed=seed, start=start)
    backend = SimulatedBackend(settings, CLUSTER)
    builder = IntervalBuilder(CLUSTER, interval_s * 3)
    attribution = Attribution([BackendHint()])
    start_ms = int(start.timestamp() * 1000)
    rows = []
    for scrape in range(scrapes + 1):  # the first reading only primes the counters
        now_ms = start_ms + int(scrape * interval_s * 1000)
        rows += builder.rows(backend.read(now_ms), now_ms, scrape, attribution.shares_of)
    frame = pl.from_arrow(rows_to_batch(rows))
    assert isinstance(frame, pl.DataFrame)
    return frame


def replicate(template: pl.DataFrame, copies: int) -> pl.DataFrame:
    """``copies`` fleets like ``template``, each with its own node, device and job names."""
    def copy(number: int) -> pl.DataFrame:
        suffix = f"-c{number:05d}"
        return template.with_columns(pl.col("node") + suffix, pl.col("device_uuid") + suffix,
                                     pl.col("job_id") + suffix)
    return pl.concat([copy(number) for number in range(copies)])


def messages(rows: pl.DataFrame, scrapes_per_message: int) -> list[Message]:
    """The rows cut into the daemon's messages: one per node and ``scrapes_per_message`` scrapes, in time order."""
    ordered = rows.with_columns(_group=pl.col("seq") // scrapes_per_message).sort("_group", "node", "ts")
    ends = (ordered["ts"].dt.epoch("ms") + (ordered["interval_s"] * 1000).cast(pl.Int64)).to_list()
    boundaries = ordered.select(pl.struct("_group", "node").rle().struct.field("len")).to_series().to_list()
    table = ordered.drop("_group").to_arrow().cast(SAMPLE_SCHEMA)
    nodes = table.column("node").to_pylist()
    out, start = [], 0
    for length in boundaries:
        # take, not slice: a slice of a list column would carry the whole table's child values into the message
        batch = table.take(pa.array(range(start, start + length))).combine_chunks().to_batches()[0]
        out.append(Message(nodes[start].encode(), wire.encode(batch), length, max(ends[start:start + length])))
        start += length
    return out


def fleet_messages(devices: int, scrapes: int, scrapes_per_message: int, interval_s: float = 10.0,
                   start: datetime | None = None) -> list[Message]:
    """Messages of a ``devices``-GPU fleet (a multiple of the template's size) over ``scrapes`` intervals."""
    start = start or datetime(2026, 1, 5, tzinfo=UTC)
    template_devices = TEMPLATE_NODES * DEVICES_PER_NODE
    if devices < template_devices:
        template = template_rows(scrapes, interval_s, start, nodes=max(1, devices // DEVICES_PER_NODE))
        return messages(template, scrapes_per_message)
    template = template_rows(scrapes, interval_s, start)
    return messages(replicate(template, devices // template_devices), scrapes_per_message)


def as_table(rows: pl.DataFrame) -> pa.Table:
    return rows.to_arrow().cast(SAMPLE_SCHEMA)

"""A Prometheus history import as the importer's batches: one per chunk of the plan, series that name no
device set aside with their reason."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

from fleetmeter.collectors.prometheus.history import ChunkRows
from fleetmeter.collectors.prometheus.source import Chunk, Plan, PrometheusSource
from fleetmeter.pipeline.importing.runner import Batch, SetAside

ChunkDone = Callable[[Chunk, ChunkRows], None]


class PrometheusBatches:
    def __init__(self, source: PrometheusSource, plan: Plan, chunk_done: ChunkDone | None = None) -> None:
        self.source = source
        self.plan = plan
        self.chunk_done = chunk_done

    @property
    def identity(self) -> str:
        return self.source.identity(self.plan)

    def batches(self, first: int) -> Iterator[Batch]:
        for chunk in self.plan.chunks[first:]:
            result = self.source.rows(self.plan, chunk)
            if self.chunk_done is not None:
                self.chunk_done(chunk, result)
            yield Batch(result.rows, tuple(
                SetAside(rejected.reason, rejected.detail, json.dumps(
                    {"series": rejected.series, "points": rejected.points, "window_start": chunk.start_s,
                     "window_end": chunk.end_s, "nodes": list(chunk.nodes)}).encode(), rejected.points)
                for rejected in result.rejected.values()))

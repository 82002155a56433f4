"""A Prometheus history import as numbered chunks of schema-v1 rows, cut the same way on every run.

The range is cut into windows (``window_s``) and the nodes found in it into groups (``nodes_per_query``);
a chunk is one window of one group, in the order window then group. Each chunk is read with one range query
per mapped metric, starting ``gap_steps`` before the window so that the window's first rows have their
previous points, and gives the rows of the points inside the window. An answer over one of Prometheus's
limits is asked again in halves (by nodes, then by time) inside the chunk, so the chunks stay the same.

Points are on multiples of the step since the epoch, so two imports of overlapping ranges make the same
rows with the same keys, and the pipeline's dedup stores them once.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import httpx
from pydantic import Field, field_validator, model_validator

from fleetmeter.collectors.prometheus.api import AnswerTooLarge, PrometheusAPI, Series
from fleetmeter.collectors.prometheus.history import ChunkRows, Fetched, chunk_rows
from fleetmeter.collectors.prometheus.mapping import Column, Mapping, MappingChanges, Source, resolve
from fleetmeter.common.settings import Section

_AGE = re.compile(r"^(\d+)\s*(s|m|h|d|w)$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
#: Prometheus refuses a range query of more points than this per series.
MAX_POINTS_PER_SERIES = 11_000


class PrometheusImportSettings(Section):
    url: str = Field(default="http://localhost:9090", pattern=r"^https?://", max_length=2048)
    exporter: Literal["dcgm", "amd"] = "dcgm"
    mapping: MappingChanges = MappingChanges()
    cluster: str = Field(default="default", min_length=1, max_length=256)
    step_s: int = Field(default=30, ge=1, le=3600, description="Seconds between points (the rows' length).")
    gap_steps: int = Field(default=3, ge=1, le=100,
                           description="Points further apart than this many steps are a gap, not a long row.")
    window_s: float = Field(default=21_600.0, gt=0, le=30 * 86_400, description="Time per chunk.")
    nodes_per_query: int = Field(default=16, ge=1, le=10_000, description="Nodes per chunk.")
    timeout_s: float = Field(default=120.0, gt=0, le=3600, description="Per request.")
    retries: int = Field(default=6, ge=0, le=100, description="Tries after a failed request, with backoff.")
    max_answer_bytes: int = Field(default=256 * 1024**2, ge=1024, description="Larger answers are asked in parts.")
    bearer_token_file: Path | None = Field(default=None, description="Its content is sent as a bearer token.")

    @field_validator("url")
    @classmethod
    def _a_url(cls, url: str) -> str:
        try:
            httpx.URL(url)
        except httpx.InvalidURL as exc:
            raise ValueError(f"not a URL: {exc}") from None
        return url.rstrip("/")

    @model_validator(mode="after")
    def _rows_within_the_pipelines_bound(self) -> PrometheusImportSettings:
        if self.step_s * self.gap_steps > 3600:
            raise ValueError("step_s x gap_steps must be at most 3600: a row longer than an hour is refused")
        return self

    def headers(self) -> dict[str, str]:
        if self.bearer_token_file is None:
            return {}
        return {"Authorization": f"Bearer {self.bearer_token_file.read_text().strip()}"}


@dataclass(frozen=True)
class Chunk:
    number: int
    start_s: float  # rows of points after this ...
    end_s: float  # ... up to and including this
    nodes: tuple[str, ...]  # empty: the series that have no node label


@dataclass
class Plan:
    start_s: float
    end_s: float
    nodes: list[str]
    sources: list[tuple[Column, int, Source]]  # the mapping's sources whose metric Prometheus has in the range
    missing: list[str]  # the mapping's metrics it has not: their columns come from other sources, or are null
    chunks: list[Chunk] = field(default_factory=list)


def parse_moment(text: str, now: datetime) -> datetime:
    """``90d``, ``36h``, ``30m``, ``2w``: that long before ``now``; else an RFC 3339 time (UTC without an offset)."""
    match = _AGE.match(text.strip().lower())
    if match:
        try:
            return now - timedelta(seconds=int(match.group(1)) * _UNITS[match.group(2)])
        except OverflowError:
            raise ValueError(f"{text!r}: further back than any calendar") from None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r}: give a duration back from now (90d, 36h, 30m) or a time "
                         "(2026-09-01T00:00:00Z)") from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


class PrometheusSource:
    """The chunks of one import and their rows; ``identity`` names the import for resuming."""

    def __init__(self, settings: PrometheusImportSettings, api: PrometheusAPI, since: datetime,
                 until: datetime) -> None:
        self.settings = settings
        self.mapping: Mapping = resolve(settings.exporter, settings.mapping)
        self.api = api
        step = settings.step_s
        self.start_s = math.ceil(since.timestamp() / step) * step
        self.end_s = math.floor(until.timestamp() / step) * step
        if self.end_s <= self.start_s:
            raise ValueError(f"nothing to import: {since.isoformat()} to {until.isoformat()} holds no whole step")
        self.window_s = max(step, math.floor(settings.window_s / step) * step)
        #: Prometheus 3 leaves a range's start out ((t - step, t]); 2 includes it, so there it is 1 ms shorter
        self.left_open = api.major_version() >= 3

    def identity(self, plan: Plan) -> str:
        """Names the import: its arguments and what they found (the nodes, the metrics), which decide the chunks.
        A rerun that finds other nodes (Prometheus's retention deleted a block meanwhile) is another import."""
        described = json.dumps({"url": self.api.url, "mapping": self.mapping.model_dump(mode="json"),
                                "cluster": self.settings.cluster, "step": self.settings.step_s,
                                "gap": self.settings.gap_steps, "window": self.window_s,
                                "nodes_per_query": self.settings.nodes_per_query, "start": self.start_s,
                                "end": self.end_s, "nodes": plan.nodes, "missing": plan.missing,
                                "groups": len(plan.chunks)}, sort_keys=True)
        return f"prometheus-{hashlib.sha256(described.encode()).hexdigest()[:24]}"

    def plan(self) -> Plan:
        """The nodes that have any mapped series in the range, and the chunks."""
        names = sorted({source.name for _, _, source in self.mapping.sources()})
        selector = "{__name__=~\"" + "|".join(names) + "\"}"
        node_label = self.mapping.labels.node
        nodes = sorted(node for node in self.api.label_values(node_label, selector, self.start_s, self.end_s) if node)
        present = set(self.api.label_values("__name__", selector, self.start_s, self.end_s))
        plan = Plan(self.start_s, self.end_s, nodes,
                    [entry for entry in self.mapping.sources() if entry[2].name in present],
                    [name for name in names if name not in present])
        per_query = self.settings.nodes_per_query
        groups = [tuple(nodes[i:i + per_query]) for i in range(0, len(nodes), per_query)]
        if self.api.label_values("__name__", selector[:-1] + f',{node_label}=""}}', self.start_s, self.end_s):
            groups.append(())  # series without a node label: read to be set aside, and counted
        window_start = self.start_s
        while window_start < self.end_s:
            window_end = min(self.end_s, window_start + self.window_s)
            for group in groups:
                plan.chunks.append(Chunk(len(plan.chunks), window_start, window_end, group))
            window_start = window_end
        return plan

    def rows(self, plan: Plan, chunk: Chunk) -> ChunkRows:
        step = self.settings.step_s
        query_start = chunk.start_s - self.settings.gap_steps * step
        fetched = [Fetched(column, rank, source.kind, source.scale,
                           self._read(source, chunk.nodes, query_start, chunk.end_s))
                   for column, rank, source in plan.sources]
        return chunk_rows(self.mapping, self.settings.cluster, step, self.settings.gap_steps, chunk.start_s, fetched)

    def queries(self, plan: Plan, chunk: Chunk) -> list[str]:
        """The range queries of one chunk (for ``--dry-run``)."""
        return [self._query(source, chunk.nodes) for _, _, source in plan.sources]

    def _read(self, source: Source, nodes: tuple[str, ...], start_s: float, end_s: float) -> list[Series]:
        """One source's series of ``nodes`` in [start, end]; asked in halves while an answer is too large."""
        step = self.settings.step_s
        steps = round((end_s - start_s) / step) + 1
        if steps <= MAX_POINTS_PER_SERIES:
            try:
                return self.api.query_range(self._query(source, nodes), start_s, end_s, step)
            except AnswerTooLarge:
                if len(nodes) <= 1 and steps == 1:
                    raise
        if len(nodes) > 1 and steps <= MAX_POINTS_PER_SERIES:
            half = len(nodes) // 2
            return self._read(source, nodes[:half], start_s, end_s) + self._read(source, nodes[half:], start_s, end_s)
        middle = start_s + (steps // 2) * step
        return _joined(self._read(source, nodes, start_s, middle - step) + self._read(source, nodes, middle, end_s))

    def _query(self, source: Source, nodes: tuple[str, ...]) -> str:
        """``avg_over_time`` (gauges, rates) or ``last_over_time`` of the source's samples in each step."""
        function = "avg_over_time" if source.kind in ("gauge", "rate") else "last_over_time"
        node_label = self.mapping.labels.node
        matcher = f'{node_label}=~"{_promql_string(_re2_alternatives(nodes))}"' if nodes else f'{node_label}=""'
        name, brace, rest = source.metric.partition("{")
        inner = rest.rstrip("}").strip().rstrip(",")
        selector = f"{name}{{{inner + ',' if brace and inner else ''}{matcher}}}"
        window_ms = round(self.settings.step_s * 1000) - (0 if self.left_open else 1)  # each sample in one step
        return f"{function}({selector}[{window_ms}ms])"


def _joined(series: list[Series]) -> list[Series]:
    """Series asked in two time halves, as one series per label set."""
    by_labels: dict[tuple[tuple[str, str], ...], list[tuple[float, float]]] = {}
    for one in series:
        by_labels.setdefault(tuple(sorted(one.labels.items())), []).extend(one.points)
    return [Series(dict(labels), sorted(points)) for labels, points in by_labels.items()]


def _re2_alternatives(values: tuple[str, ...]) -> str:
    return "|".join(re.sub(r"([\\.+*?()|\[\]{}^$])", r"\\\1", value) for value in values)


def _promql_string(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

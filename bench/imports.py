"""Import rate: a dcgm-exporter history read from a local Prometheus and stored in the warehouse.

The history: ``nodes`` x 8 GPUs scraped every 30 s for ``hours``, each GPU owned by one pod, with the eight
metrics a default dcgm-exporter writes most (utilization, SM activity, framebuffer used and free, power,
energy counter, temperature, XID). ``promtool tsdb create-blocks-from openmetrics`` writes it into a TSDB that
Debian's ``prometheus`` serves on loopback. The import runs in this process with the defaults (6-hour
windows, 16 nodes a chunk, 30 s steps) into an empty local warehouse; the time spent waiting for Prometheus's
answers (and parsing them) is measured apart from the rest (rows, checks, rollups, Delta commits).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fleetmeter.collectors.prometheus.api import PrometheusAPI
from fleetmeter.collectors.prometheus.source import PrometheusImportSettings, PrometheusSource
from fleetmeter.importing.prometheus import PrometheusBatches
from fleetmeter.pipeline.importing.runner import run_import
from fleetmeter.pipeline.settings import PipelineSettings
from tests.prometheus_server import run_prometheus

STEP_S = 30
GPUS = 8


@dataclass(frozen=True)
class ImportRate:
    devices: int
    hours: float
    points: int  # points read from Prometheus (series x steps)
    rows: int
    build_s: float  # writing the TSDB with promtool
    wall_s: float
    prometheus_s: float  # waiting for and parsing Prometheus's answers
    requests: int

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.wall_s

    @property
    def points_per_s(self) -> float:
        return self.points / self.wall_s


def openmetrics(nodes: int, hours: float, end_s: int) -> Iterator[str]:
    steps = int(hours * 3600 / STEP_S)
    start_s = end_s - steps * STEP_S
    metrics = ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_PROF_SM_ACTIVE", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE",
               "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "DCGM_FI_DEV_GPU_TEMP",
               "DCGM_FI_DEV_XID_ERRORS")
    for number, metric in enumerate(metrics):
        yield f"# TYPE {metric} gauge\n"
        for node in range(nodes):
            for gpu in range(GPUS):
                labels = (f'Hostname="node-{node:04d}",UUID="GPU-{node:04d}-{gpu}",gpu="{gpu}",'
                          f'modelName="NVIDIA H100 80GB HBM3",namespace="team-{node % 7}",pod="job-{node}-{gpu // 4}"')
                yield "".join(f"{metric}{{{labels}}} {_value(number, k, gpu)} {start_s + k * STEP_S}\n"
                              for k in range(steps + 1))
    yield "# EOF\n"


def _value(metric: int, k: int, gpu: int) -> float:
    util = (k * 7 + gpu * 13) % 101
    return (util, util / 200, 20_000 + k % 100, 60_000 - k % 100, 300 + k % 50, 1e9 + k * 9e6, 50 + k % 20, 0)[metric]


def measure(nodes: int, hours: float) -> ImportRate:
    end_s = (int(time.time()) // 3600 - 1) * 3600
    with tempfile.TemporaryDirectory() as root:
        built = time.perf_counter()
        server = run_prometheus(Path(root), "".join(openmetrics(nodes, hours, end_s)))
        url = next(server)
        build_s = time.perf_counter() - built
        try:
            settings = PrometheusImportSettings(url=url)
            api = _TimedAPI(url, timeout_s=settings.timeout_s, retries=0, max_answer_bytes=settings.max_answer_bytes)
            source = PrometheusSource(settings, api, datetime.fromtimestamp(end_s - hours * 3600, UTC),
                                      datetime.fromtimestamp(end_s, UTC))
            started = time.perf_counter()
            summary = run_import(PrometheusBatches(source, source.plan()),
                                 PipelineSettings(warehouse={"uri": f"{root}/warehouse"}),  # type: ignore[arg-type]
                                 yield_to_stored=True)
            wall_s = time.perf_counter() - started
        finally:
            server.close()
    points = api.points
    return ImportRate(nodes * GPUS, hours, points, summary.stored, build_s, wall_s, api.seconds, api.requests)


class _TimedAPI(PrometheusAPI):
    """Counts the time spent on Prometheus's answers and the points they hold."""

    seconds = 0.0
    points = 0

    def query_range(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        answer = super().query_range(*args, **kwargs)
        self.seconds += time.perf_counter() - started
        self.points += sum(len(series.points) for series in answer)
        return answer

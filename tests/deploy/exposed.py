"""The metric names fleetmeter really exposes, read off a running collector's and a worker's registries, so
that rules and dashboards can be checked against them."""

from __future__ import annotations

import tempfile
from pathlib import Path

from prometheus_client import CollectorRegistry

from fleetmeter.anomalies.cli import Metrics as AnomalyMetrics
from fleetmeter.collectors.backends import open_backends
from fleetmeter.collectors.daemon import CollectorDaemon
from fleetmeter.pipeline.metrics import PipelineMetrics
from tests.conftest import StepClock, collector_settings

_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "summary": ("_sum", "_count")}


def series_names(registry: CollectorRegistry) -> set[str]:
    """Every series name the registry's families can expose (a counter's ``_total``, a histogram's parts)."""
    names = set()
    for family in registry.collect():
        names.add(family.name)
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ()))
    return names


def exposed_metric_names() -> set[str]:
    """The collector's (simulated devices, both scrapes done), the pipeline worker's and the anomaly watcher's
    series names."""
    with tempfile.TemporaryDirectory() as directory:
        settings = collector_settings(Path(directory), "127.0.0.1:1", "unused")
        daemon = CollectorDaemon(settings, open_backends(settings))
        daemon.clock = StepClock()
        daemon.scrape_once()
        daemon.scrape_once()
        names = series_names(daemon.registry)
        daemon.spool.close()
    return names | series_names(PipelineMetrics().registry) | series_names(AnomalyMetrics().registry)

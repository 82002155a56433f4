"""A Prometheus collector that builds the device families from each device's latest sample row."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fleetmeter.collectors.exposition.profiles import Profile, Row, Totals
from fleetmeter.collectors.intervals import AMOUNT_COLUMNS


class DeviceMetrics(Collector):
    """Holds the latest row and running totals per device; ``collect`` renders them in a profile."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self._lock = threading.Lock()
        self._latest: dict[str, Row] = {}
        self._totals: dict[str, Totals] = {}

    def update(self, rows: Iterable[Row]) -> None:
        with self._lock:
            for row in rows:
                uuid = row["device_uuid"]
                self._latest[uuid] = row
                totals = self._totals.setdefault(uuid, {})
                for name in AMOUNT_COLUMNS:
                    if row[name] is not None:
                        totals[name] = totals.get(name, 0.0) + row[name]
                xids = row["xid_errors"]
                if xids is not None:
                    totals["xid_count"] = totals.get("xid_count", 0.0) + len(xids)
                    totals["last_xid"] = float(xids[-1]) if xids else totals.get("last_xid", 0.0)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            devices = [(row, dict(self._totals[uuid])) for uuid, row in self._latest.items()]
        families: dict[str, Any] = {}
        for spec in self.profile.families:
            family = families.get(spec.name)
            if family is None:
                label_names = [*self.profile.label_names, *(name for name, _ in spec.labels)]
                metric_type: Callable[..., Any] = (
                    CounterMetricFamily if spec.kind == "counter" else GaugeMetricFamily
                )
                family = metric_type(spec.name, spec.documentation, labels=label_names)
                families[spec.name] = family
            extra_values = [value for _, value in spec.labels]
            for row, totals in devices:
                value = spec.value(row, totals)
                if value is not None:
                    family.add_metric([*self.profile.labels(row), *extra_values], value)
        yield from families.values()


class BackendErrors(Collector):
    """Failed readings per backend and error name, read from the backends at scrape time."""

    def __init__(self, errors: Callable[[], Mapping[str, Mapping[str, int]]]) -> None:
        self._errors = errors

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "fleetmeter_collector_read_errors", "Device readings that failed, by backend and error.",
            labels=["backend", "error"],
        )
        for backend, counts in self._errors().items():
            for error, count in counts.items():
                family.add_metric([backend, error], count)
        yield family


class AttributionErrors(Collector):
    """Failures of each attribution source (it fell back to the next source for those devices)."""

    def __init__(self, errors: Callable[[], Mapping[str, int]]) -> None:
        self._errors = errors

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily("fleetmeter_collector_attribution_errors",
                                     "Failures of an attribution source, by source.", labels=["source"])
        for source, count in self._errors().items():
            family.add_metric([source], count)
        yield family

"""A Prometheus collector that builds the device families from each device's latest sample rows."""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from fleetmeter.collectors.exposition.profiles import Profile, Row, Series, Totals
from fleetmeter.collectors.intervals import AMOUNT_COLUMNS
from fleetmeter.collectors.readings import Device, Workload

#: A series of a pod-aware profile: the owner (tenant, job) and the pod, on one device.
_SeriesKey = tuple[str, str | None, Workload | None]


def _accumulate(totals: Totals, row: Row, part: float) -> None:
    """Add ``part`` of the row's amounts to running totals; XID events count on the row that carries them."""
    for name in AMOUNT_COLUMNS:
        if row[name] is not None:
            totals[name] = totals.get(name, 0.0) + row[name] * part
    xids = row["xid_errors"]
    if xids is not None:
        totals["xid_count"] = totals.get("xid_count", 0.0) + len(xids)
        totals["last_xid"] = float(xids[-1]) if xids else totals.get("last_xid", 0.0)


class DeviceMetrics(Collector):
    """Holds each device's latest rows and running totals; ``collect`` renders them in a profile.

    A profile with ``per_workload`` gets a series per owner and pod of the device, with running totals of its
    own (its parts of the device's amounts), kept while the pod holds the device. The other gets one series per
    device with the device's running totals, named by one owner: the one it named before while that owner
    still holds the device (shares follow SM use and swap often), else the first.
    """

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self._lock = threading.Lock()
        self._series: dict[str, list[Series]] = {}
        self._device_totals: dict[str, Totals] = {}
        self._series_totals: dict[str, dict[_SeriesKey, Totals]] = {}
        self._named_by: dict[str, tuple[str, str | None]] = {}

    def update(self, rows: Iterable[Row], devices: Mapping[str, Device] | None = None) -> None:
        """The rows of one scrape (a device shared by several owners has one each), and what identifies each
        device (PCI address, driver), by UUID."""
        by_device: dict[str, list[Row]] = defaultdict(list)
        for row in rows:
            by_device[row["device_uuid"]].append(row)
        with self._lock:
            for uuid, device_rows in by_device.items():
                device = (devices or {}).get(uuid)
                totals = self._device_totals.setdefault(uuid, {})
                for row in device_rows:
                    _accumulate(totals, row, 1.0)
                if self.profile.per_workload:
                    self._series[uuid] = self._pod_series(uuid, device_rows, device, totals)
                else:
                    row = self._naming_row(uuid, device_rows)
                    self._series[uuid] = [Series(row, device, None, frozenset(), 1.0, totals, totals)]

    def _naming_row(self, uuid: str, rows: list[Row]) -> Row:
        before = self._named_by.get(uuid)
        row = next((row for row in rows if (row["tenant"], row["job_id"]) == before), rows[0])
        self._named_by[uuid] = (row["tenant"], row["job_id"])
        return row

    def _pod_series(self, uuid: str, rows: list[Row], device: Device | None, device_totals: Totals,
                    ) -> list[Series]:
        before = self._series_totals.get(uuid, {})
        kept: dict[_SeriesKey, Totals] = {}
        series = []
        for row in rows:
            for workload, part, pids in row.get("workloads") or ((None, 1.0, frozenset()),):
                key = (row["tenant"], row["job_id"], workload)
                totals = kept[key] = before.get(key, {})
                _accumulate(totals, row, part)
                share = 1.0 if row["share"] is None else row["share"]
                series.append(Series(row, device, workload, pids, share * part, totals, device_totals))
        self._series_totals[uuid] = kept  # a pod gone from the device takes its totals with it
        return series

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            series = [replace(item, totals=dict(item.totals), device_totals=dict(item.device_totals))
                      for items in self._series.values() for item in items]
        labels = [self.profile.labels(item.row, item.device, item.workload) for item in series]
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
            for item, item_labels in zip(series, labels, strict=True):
                value = spec.value(item)
                if value is not None:
                    family.add_metric([*item_labels, *extra_values], value)
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

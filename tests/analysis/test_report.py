"""``fleetmeter report``: its figures against the test's own, and the HTML page: self-contained, with charts
that plot the figures."""

from __future__ import annotations

import re
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleetmeter.cli import app
from fleetmeter.reports.build import build_report
from fleetmeter.reports.html import render_html
from fleetmeter.sql.catalog import Catalog
from fleetmeter.sql.output import cell
from fleetmeter.sql.since import parse_since
from tests.analysis.conftest import Fleet
from tests.analysis.fleet import GPU_MODEL, MIG_MODEL, capacity_s, floor, group


class Page(HTMLParser):
    """What a browser would fetch or run, the charts' series, and the text of each element with an id."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: dict[str, int] = defaultdict(int)
        self.external: list[str] = []
        self.series: dict[str, list[str]] = {}  # gid -> path data inside it
        self.text: dict[str, str] = {}
        self._open: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        self.tags[tag] += 1
        for name in ("src", "href", "xlink:href"):
            link = values.get(name) or ""
            if link.startswith(("http:", "https:", "//")):
                self.external.append(link)
        if tag == "g" and values.get("id"):
            self.series.setdefault(values["id"] or "", [])
        if tag == "path" and self._open and self._open[-1] in self.series:
            self.series[self._open[-1] or ""].append(values.get("d") or "")
        self._open.append(values.get("id"))

    def handle_endtag(self, tag: str) -> None:
        if self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for element in self._open:
            if element:
                self.text[element] = self.text.get(element, "") + data


def report_of(fleet: Fleet, **overrides: object):  # type: ignore[no-untyped-def]
    return build_report(Catalog.open(fleet.settings(**overrides), parse_since(None)))


def test_headline_figures(fleet: Fleet) -> None:
    everything = group(fleet.rows, lambda row: "all")["all"]
    allocated = group(fleet.rows, lambda row: "all", where=lambda row: row["tenant"] != "unallocated")["all"]
    per_hour: dict[object, set[str]] = defaultdict(set)
    for row in fleet.rows:
        if capacity_s(row) > 0:
            per_hour[floor(row["ts"], "hour")].add(row["device_uuid"])
    report = report_of(fleet)
    headline = report.headline
    assert headline["device_hours"] == pytest.approx(everything.device_s / 3600)
    assert headline["allocated_device_hours"] == pytest.approx(allocated.device_s / 3600)
    assert headline["utilization"] == pytest.approx(everything.utilization)
    assert headline["idle_allocated_device_hours"] == pytest.approx(allocated.idle_s / 3600)
    assert headline["cost"] == pytest.approx(everything.cost)
    assert headline["wasted_cost"] == pytest.approx(allocated.wasted_cost)
    assert report.peak_devices == max(len(devices) for devices in per_hour.values())
    tenants = group(fleet.rows, lambda row: row["tenant"], where=lambda row: row["tenant"] != "unallocated")
    ranking = sorted(tenants, key=lambda tenant: (-tenants[tenant].wasted_cost, tenant))
    assert report.tenants["tenant"].to_list() == ranking
    assert sum(report.util_histogram_hours) == pytest.approx(everything.known_s / 3600)


def test_models_without_a_price_are_named(fleet: Fleet) -> None:
    report = report_of(fleet, prices=[{"model": "NVIDIA A100*", "per_device_hour": 2.0}])
    assert report.unpriced_models == sorted([GPU_MODEL, MIG_MODEL])
    # a MIG instance without a price of its own: its board's price x its profile's compute share (1g: 1/7)
    priced = fleet.query(f"SELECT per_device_hour FROM model_prices WHERE model = '{MIG_MODEL}'",
                         prices=[{"model": GPU_MODEL, "per_device_hour": 3.5}])
    assert priced == [{"per_device_hour": pytest.approx(3.5 / 7)}]


def test_the_html_page_is_self_contained_and_charts_the_figures(fleet: Fleet) -> None:
    report = report_of(fleet)
    page = Page()
    page.feed(render_html(report))
    assert page.tags["script"] == 0 and page.tags["link"] == 0 and page.tags["img"] == 0
    assert page.external == []
    assert page.tags["svg"] == 4
    # one point per time bucket with a known utilization (a gap, not a zero, where none is known)
    points = sum(len(re.findall(r"[ML] ", d)) for d in page.series["fleet-utilization"])
    assert points == report.timeline["utilization"].drop_nulls().len() > 10
    assert {"capacity-present", "capacity-allocated", "capacity-busy", "tenant-idle", "util-histogram"} <= \
        set(page.series)
    headline = report.headline
    assert page.text["tile-device-hours"].startswith(cell(headline["device_hours"]))
    assert page.text["tile-wasted"].startswith(f"{headline['wasted_cost']:,.0f} USD")
    assert page.text["tile-busy-idle"].startswith(f"{headline['busy_idle_cost']:,.0f} USD")
    assert all(tenant in page.text["table-tenants"] for tenant in report.tenants["tenant"].to_list())
    assert all(model in page.text["table-efficiency"] for model in report.efficiency["model"].to_list())


def test_report_command_prints_and_writes_the_page(fleet: Fleet, tmp_path: Path) -> None:
    html = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", "--warehouse", str(fleet.warehouse), "--since", "30d",
                                      "--html", str(html)])
    assert result.exit_code == 0, result.output
    assert "Tenants by wasted cost" in result.stdout and "Top idle jobs" in result.stdout
    assert "Efficiency by model" in result.stdout
    assert "no price configured" in result.stdout  # no --config: no prices
    assert html.read_text().count("<svg") == 4

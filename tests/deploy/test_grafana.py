"""deploy/grafana: the dashboards use the provisioned data source and only metric names that fleetmeter's
freshly started daemons expose or that the recording rules produce."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from tests.deploy.exposed import Series
from tests.deploy.test_prometheus import RULES

GRAFANA = Path(__file__).parents[2] / "deploy" / "grafana"
#: A fleetmeter series or a recorded name (``level:metric:operation``) in PromQL.
METRIC = re.compile(r"(?<![\w:])(?:[a-z_]+:fleetmeter_[a-z_]+:[a-z_]+|fleetmeter_[a-z_]+)\b")


def dashboards() -> dict[str, dict[str, Any]]:
    return {path.stem: json.loads(path.read_text()) for path in sorted((GRAFANA / "dashboards").glob("*.json"))}


def queries(dashboard: dict[str, Any]) -> list[str]:
    panels = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    return panels + [variable["definition"] for variable in dashboard["templating"]["list"]]


def recorded_names() -> set[str]:
    return {rule["record"] for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
            if "record" in rule}


def test_the_four_dashboards_use_the_provisioned_data_source() -> None:
    boards = dashboards()
    assert set(boards) == {"fleet-overview", "tenant", "job", "node-health"}
    assert len({board["uid"] for board in boards.values()}) == len(boards)
    (source,) = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text())[
        "datasources"]
    for board in boards.values():
        for panel in board["panels"]:
            assert panel["datasource"]["uid"] == source["uid"]
            assert all(target["datasource"]["uid"] == source["uid"] for target in panel["targets"])


def test_dashboards_only_query_metrics_that_fresh_daemons_expose(fresh_series: Series) -> None:
    known = set(fresh_series) | recorded_names()
    for name, board in dashboards().items():
        used = {metric for query in queries(board) for metric in METRIC.findall(query)}
        assert len(used) >= 3, name
        assert used <= known, (name, used - known)

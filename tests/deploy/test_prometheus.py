"""deploy/prometheus: promtool accepts the configuration and the rules, the rules' unit tests pass, and every
metric the rules read is on the /metrics of freshly started daemons."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.exposed import Series

PROMETHEUS = Path(__file__).parents[2] / "deploy" / "prometheus"
RULES = PROMETHEUS / "rules" / "fleetmeter.rules.yml"
#: fleetmeter series in PromQL; recorded names (``level:metric:operation``) are skipped by the lookbehind.
FLEETMETER_SERIES = re.compile(r"(?<![:\w])fleetmeter_[a-z_]+\b")

promtool = pytest.mark.skipif(shutil.which("promtool") is None,
                              reason="promtool not installed (Debian: apt-get install prometheus; CI installs it)")


def run_promtool(*args: str) -> str:
    result = subprocess.run(["promtool", *args], cwd=PROMETHEUS, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@promtool
def test_promtool_accepts_the_configuration_and_rules() -> None:
    assert "SUCCESS" in run_promtool("check", "config", "prometheus.yml")
    assert "SUCCESS" in run_promtool("check", "rules", str(RULES.relative_to(PROMETHEUS)))


@promtool
def test_the_rules_unit_tests_pass() -> None:
    assert "SUCCESS" in run_promtool("test", "rules", "tests/fleetmeter.rules.test.yml")


def rule_expressions() -> list[str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule["expr"] for group in groups for rule in group["rules"]]


def test_every_metric_the_rules_read_is_on_a_fresh_daemons_metrics(fresh_series: Series) -> None:
    """Before any event: an alert on the increase of a counter that appears only with its first event cannot
    fire on that event."""
    used = {name for expr in rule_expressions() for name in FLEETMETER_SERIES.findall(expr)}
    assert len(used) >= 10
    assert used <= set(fresh_series), used - set(fresh_series)

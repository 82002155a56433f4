"""Analyst settings and ``--since``: what a user types becomes the window and thresholds they meant."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fleetmeter.common.settings import ConfigError, load_settings
from fleetmeter.sql.settings import AnalysisSettings
from fleetmeter.sql.since import EVERYTHING, parse_since

NOW = datetime(2026, 11, 22, 15, 30, tzinfo=UTC)


@pytest.mark.parametrize(("text", "start"), [
    ("7d", datetime(2026, 11, 15, tzinfo=UTC)),
    ("36h", datetime(2026, 11, 21, tzinfo=UTC)),
    ("2w", datetime(2026, 11, 8, tzinfo=UTC)),
    ("2026-11-01", datetime(2026, 11, 1, tzinfo=UTC)),
    ("2026-11-01T18:00:00+02:00", datetime(2026, 11, 1, tzinfo=UTC)),
    (None, EVERYTHING),
])
def test_since_starts_at_a_utc_midnight(text: str | None, start: datetime) -> None:
    assert parse_since(text, now=NOW) == start


def test_an_idle_threshold_off_the_histogram_edges_is_refused() -> None:
    assert load_settings(AnalysisSettings, idle_threshold=0.15).idle_threshold == 0.15
    with pytest.raises(ConfigError, match=r"idle_threshold: .*multiple of 0\.05"):
        load_settings(AnalysisSettings, idle_threshold=0.07)


def test_a_price_needs_a_model_and_a_non_negative_price() -> None:
    with pytest.raises(ConfigError, match=r"prices\.0\.per_device_hour"):
        load_settings(AnalysisSettings, prices=[{"model": "*", "per_device_hour": -1}])

"""A real Prometheus whose TSDB promtool filled with the history of tests/importing/exporter_history.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.importing import exporter_history
from tests.prometheus_server import run_prometheus


@pytest.fixture(scope="module")
def exporter_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    yield from run_prometheus(tmp_path_factory.mktemp("prometheus"), exporter_history.openmetrics())

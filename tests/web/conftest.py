"""A running ``fleetmeter serve`` (a real uvicorn server on a free port) over a copy of the analyst surface's
generated warehouse, with forecasts, a capacity plan and anomalies of two tenants written beside it, and a
tokens file of every scope."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import polars as pl
import pytest
import uvicorn

from fleetmeter.demo.broker import free_port
from fleetmeter.planning.store import replace_table
from fleetmeter.schemas.warehouse import ANOMALIES, CAPACITY_PLAN, FORECASTS
from fleetmeter.sql.settings import AnalysisSettings
from fleetmeter.web.app import create_app
from fleetmeter.web.auth import add_token
from tests.analysis.conftest import Fleet, fleet  # noqa: F401  (the session's generated warehouse)
from tests.analysis.fleet import PRICES

TENANT, OTHER = "research", "vision"


@dataclass(frozen=True)
class Server:
    url: str
    fleet: Fleet
    warehouse: Path
    tokens_file: Path
    tokens: dict[str, str]  # admin, viewer, research, vision

    def get(self, path: str, token: str | None, **params: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(f"{self.url}{path}", params=params, headers=headers, timeout=60)  # type: ignore[arg-type]

    @property
    def window(self) -> dict[str, str]:
        """A window holding all of the fleet's data."""
        start = self.fleet.start - timedelta(days=1)
        return {"from": start.date().isoformat(), "to": (datetime.now(UTC) + timedelta(days=1)).date().isoformat()}


def _derived_tables(settings: AnalysisSettings, start: datetime) -> None:
    run_at, day = datetime.now(UTC), start.date()
    forecasts = pl.DataFrame([
        {"cluster": "test", "tenant": tenant, "model": "NVIDIA H100 80GB HBM3", "measure": "allocated_device_hours",
         "day": day + timedelta(days=offset), "actual": None, "mean": 10.0 + offset, "lo_80": 8.0, "hi_80": 12.0,
         "lo_95": 7.0, "hi_95": 13.0, "method": "AutoETS", "method_mase": 0.5, "baseline_mase": 1.0,
         "coverage_80": 0.8, "note": None}
        for tenant in (TENANT, OTHER, "*") for offset in range(3)])
    replace_table(settings, FORECASTS, forecasts, run_at)
    plan = pl.DataFrame([{"cluster": "test", "model": "NVIDIA H100 80GB HBM3", "quarter": "2027Q1",
                          "quarter_start": day, "supply_devices": 16.0, "demand_devices": 12.0,
                          "headroom_devices": 4.0, "runs_out_on": None, "add_devices": 0, "level": 80, "note": None}])
    replace_table(settings, CAPACITY_PLAN, plan, run_at)
    anomalies = pl.DataFrame([
        {"id": f"a-{tenant or 'node'}", "kind": "idle_allocation" if tenant else "sick_hardware", "status": "open",
         "cluster": "test", "tenant": tenant, "job_id": f"{tenant}-job" if tenant else None,
         "node": None if tenant else "n1", "device_uuid": None, "model": "NVIDIA H100 80GB HBM3",
         "start": start, "end": None, "seen_until": run_at, "severity": 1.0, "evidence": "{}", "cost_impact": 5.0,
         "cost_per_day": 1.0, "first_detected": run_at, "last_detected": run_at, "notified": None}
        for tenant in (TENANT, OTHER, None)])
    replace_table(settings, ANOMALIES, anomalies, run_at)


@pytest.fixture(scope="session")
def server(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:  # noqa: F811
    directory = tmp_path_factory.mktemp("web")
    warehouse = directory / "warehouse"
    shutil.copytree(fleet.warehouse, warehouse)
    tokens_file = directory / "tokens.yaml"
    tokens = {"admin": add_token(tokens_file, "ops", "admin", None),
              "viewer": add_token(tokens_file, "finance", "viewer", None),
              TENANT: add_token(tokens_file, "research-bot", "tenant", TENANT),
              OTHER: add_token(tokens_file, "vision-bot", "tenant", OTHER)}
    port = free_port()
    settings = AnalysisSettings.model_validate({"warehouse": str(warehouse), "prices": PRICES,
                                                "http": {"port": port, "tokens_file": str(tokens_file),
                                                         "snapshot_s": 1.0}})
    _derived_tables(settings, fleet.start)
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield Server(f"http://127.0.0.1:{port}", fleet, warehouse, tokens_file, tokens)
    server.should_exit = True
    thread.join(timeout=10)

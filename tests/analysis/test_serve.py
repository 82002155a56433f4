"""``fleetmeter serve``: read-only SQL over HTTP for a bearer token, on a real port."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from fleetmeter.common.settings import ConfigError
from fleetmeter.demo.broker import free_port
from fleetmeter.sql.serve import Busy, create_app, run_queued
from fleetmeter.sql.settings import AnalysisSettings
from tests.analysis.conftest import Fleet

TOKEN = "analyst-token-5f2c"


@pytest.fixture
def endpoint(fleet: Fleet) -> Iterator[str]:
    port = free_port()
    settings = AnalysisSettings(warehouse=str(fleet.warehouse),
                             http={"port": port, "token": TOKEN, "max_rows": 50, "timeout_s": 1.0,
                                   "max_answer_bytes": 1 << 20, "memory_limit": "300MB"})
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def ask(endpoint: str, sql: str, token: str | None = TOKEN) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.post(f"{endpoint}/query", json={"sql": sql}, headers=headers, timeout=30)


def test_answers_need_the_token(endpoint: str) -> None:
    assert httpx.get(f"{endpoint}/health").status_code == 200
    for token in (None, "wrong", TOKEN + "x"):
        assert ask(endpoint, "SELECT 1", token).status_code == 401
    without_the_scheme = httpx.post(f"{endpoint}/query", json={"sql": "SELECT 1"}, headers={"Authorization": TOKEN})
    assert without_the_scheme.status_code == 401
    assert httpx.get(f"{endpoint}/queries").status_code == 401
    assert ask(endpoint, "SELECT 42 AS answer").json() == {"columns": ["answer"], "rows": [[42]], "truncated": False}


def test_the_views_answer_as_the_samples_say(endpoint: str, fleet: Fleet) -> None:
    answer = ask(endpoint, "SELECT tenant, sum(samples) AS samples FROM util_1h GROUP BY tenant").json()
    assert answer["columns"] == ["tenant", "samples"]
    assert dict(map(tuple, answer["rows"])) == Counter(row["tenant"] for row in fleet.rows)
    names = httpx.get(f"{endpoint}/queries", headers={"Authorization": f"Bearer {TOKEN}"}).json()["queries"]
    canned = httpx.get(f"{endpoint}/queries/{names[0]}", headers={"Authorization": f"Bearer {TOKEN}"})
    assert canned.status_code == 200 and canned.json()["columns"]


@pytest.mark.parametrize("sql", [
    "CREATE TABLE t AS SELECT 1",
    "INSERT INTO prices VALUES ('x', 1, 1)",
    "SELECT 1; DROP VIEW util_1h",
    "COPY (SELECT 1) TO '{outside}/copied.csv'",
    "ATTACH '{outside}/other.duckdb'",
    "SET enable_external_access = true",
    "INSTALL httpfs",
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM read_text('{warehouse}/../outside/secret.txt')",
    "SELECT * FROM glob('/etc/*')",
])
def test_nothing_but_reading_the_warehouse(endpoint: str, fleet: Fleet, tmp_path: Path, sql: str) -> None:
    outside = fleet.warehouse.parent / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret.txt").write_text("not for analysts")
    response = ask(endpoint, sql.format(outside=outside, warehouse=fleet.warehouse))
    assert response.status_code == 400, response.text
    assert "error" in response.json() and "not for analysts" not in response.text
    assert sorted(path.name for path in outside.iterdir()) == ["secret.txt"]
    assert ask(endpoint, "SELECT count(*) FROM prices").json()["rows"] == [[0]]  # fresh session each time


def test_answers_are_cut_at_max_rows_and_slow_queries_stopped(endpoint: str) -> None:
    answer = ask(endpoint, "SELECT * FROM range(1000)").json()
    assert len(answer["rows"]) == 50 and answer["truncated"] is True
    slow = ask(endpoint, "SELECT sum(hash(i)) FROM range(100000000000) t(i)")
    assert slow.status_code == 400 and "longer than" in slow.json()["error"]


def test_no_token_configured_no_server(fleet: Fleet) -> None:
    with pytest.raises(ConfigError, match="token"):
        create_app(AnalysisSettings(warehouse=str(fleet.warehouse)))


def test_an_answer_too_large_is_refused_while_it_is_read(endpoint: str) -> None:
    """190 kB strings over 10,000 rows (1.9 GB) are refused once the answer passes max_answer_bytes (1 MiB
    here), not built whole in memory and sent."""
    answer = ask(endpoint, "SELECT repeat('x', 190000) AS big FROM range(10000)")
    assert answer.status_code == 400 and "larger than 1,048,576 bytes" in answer.json()["error"]


def test_a_query_over_the_memory_limit_fails_instead_of_spilling(endpoint: str, tmp_path: Path) -> None:
    answer = ask(endpoint, "SELECT count(*) FROM (SELECT DISTINCT range::VARCHAR || repeat('y', 200) "
                           "FROM range(3000000))")
    assert answer.status_code == 400 and "memory" in answer.json()["error"].lower()
    assert not list(Path.cwd().glob(".tmp/*"))


@pytest.mark.parametrize("sql", ["SELECT * FROM duckdb_settings()", "SELECT current_setting('temp_directory')",
                                 "SELECT * FROM \"DuckDB_Secrets\"()", "SELECT read_text('warehouse')"])
def test_duckdbs_own_settings_and_files_are_not_shown(endpoint: str, sql: str) -> None:
    answer = ask(endpoint, sql)
    assert answer.status_code == 400 and "not available here" in answer.json()["error"]


def test_queries_beyond_the_concurrency_limit_wait_then_get_busy(fleet: Fleet) -> None:
    settings = AnalysisSettings(warehouse=str(fleet.warehouse),
                             http={"token": TOKEN, "max_concurrent": 1, "queue_timeout_s": 0.2})
    slots = threading.BoundedSemaphore(1)
    slots.acquire()  # one query runs
    with pytest.raises(Busy, match="1 queries are running"):
        run_queued(settings, "SELECT 1", slots)
    slots.release()
    assert run_queued(settings, "SELECT 1 AS one", slots)["rows"] == [[1]]

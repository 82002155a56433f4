"""``fleetmeter demo``, the README's main command, end to end on a small fleet: broker, collector, pipeline
worker process, warehouse, report and the page, then the commands it prints."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from fleetmeter.cli import app
from fleetmeter.demo.cli import MARKER

NODES, DEVICES, HOURS = 3, 2, 1.0


@pytest.mark.timeout(300)
def test_demo_runs_the_whole_product(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    demo = subprocess.Popen(
        [sys.executable, "-m", "fleetmeter", "demo", "--nodes", str(NODES), "--devices-per-node", str(DEVICES),
         "--hours", str(HOURS), "--seconds", "6", "--partitions", "2", "--directory", str(directory)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=os.environ | {"COLUMNS": "200"})
    try:
        output = _until_served(demo)
        ports = re.search(r"while it runs: http://127\.0\.0\.1:(\d+)/metrics \(collector\), "
                          r"http://127\.0\.0\.1:(\d+)/metrics \(pipeline worker\)", output)
        assert ports is not None and ports[1] != ports[2], output  # free ports, picked and printed
        url = re.search(r"stops them\): (http://127\.0\.0\.1:\d+)/", output)
        tenant_token = re.search(r"or as tenant research with\s+(fm_\S+)", output)
        assert url is not None and tenant_token is not None, output
        _wait_for(f"{url[1]}/health")
        answer = httpx.get(f"{url[1]}/v1/tenants/research", headers={"Authorization": f"Bearer {tenant_token[1]}"},
                           timeout=60)
        assert answer.status_code == 200 and answer.json()["device_hours"] > 0
        page = httpx.post(f"{url[1]}/login", data={"token": tenant_token[1]}, follow_redirects=True, timeout=60)
        assert page.status_code == 200 and "Tenant research" in page.text
    finally:
        demo.send_signal(signal.SIGINT)  # Ctrl-C ends the demo's server
        rest, _ = demo.communicate(timeout=30)
    assert demo.returncode == 0, output + rest
    assert "fleetmeter report" in output and f"query --config {directory}/analysis.yaml" in output
    html = (directory / "report.html").read_text()
    assert html.count("<svg") == 4 + 2  # the fleet's four charts, and a demand fan per pool of the history cluster
    assert "Capacity plan" in output and f"plan --config {directory}/analysis.yaml" in output
    assert "Efficiency by model" in output and "--file rightsizing" in output

    config = str(directory / "analysis.yaml")
    result = CliRunner().invoke(app, ["query", "--config", config, "--format", "json",
                                      "SELECT (SELECT sum(device_hours) FROM util_1h WHERE cluster = 'demo') AS h, "
                                      "(SELECT count(DISTINCT device_uuid) FROM samples WHERE cluster = 'demo') AS d, "
                                      "(SELECT count(DISTINCT device_uuid) FROM samples WHERE cluster = 'east') AS e, "
                                      "(SELECT count(*) FROM forecasts WHERE mean IS NOT NULL) AS f, "
                                      "(SELECT count(DISTINCT kind) FROM anomalies WHERE cluster = 'lab') AS k"])
    assert result.exit_code == 0, result.output
    answer = json.loads(result.stdout)[0]
    assert answer["d"] == NODES * DEVICES and answer["e"] == 48 and answer["f"] > 0
    assert answer["k"] == 5  # the planted cluster shows every kind of anomaly
    # Every device streamed for the whole simulated span, less its first (priming) interval.
    assert answer["h"] / (NODES * DEVICES) == pytest.approx(HOURS, rel=0.05)


def test_demo_refuses_a_directory_it_did_not_make(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("precious")
    result = CliRunner().invoke(app, ["demo", "--directory", str(tmp_path)])
    assert result.exit_code != 0 and "not a demo directory" in result.output
    assert (tmp_path / "mine.txt").read_text() == "precious"


@pytest.mark.parametrize("flag", ["--metrics-port", "--pipeline-metrics-port"])
def test_a_port_that_is_taken_is_one_line_naming_it_and_the_last_demo_stays(flag: str, tmp_path: Path) -> None:
    last = tmp_path / "demo"
    last.mkdir()
    (last / MARKER).touch()
    (last / "report.html").write_text("the last demo's report")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "fleetmeter", "demo", "--directory", str(tmp_path / "demo"),
                                 flag, str(port)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"fleetmeter demo: cannot listen on 127.0.0.1:{port} (set by {flag}): Address already in use"]
    assert (last / "report.html").read_text() == "the last demo's report"


def test_progress_reads_only_the_demos_own_worker() -> None:
    """Another process on the worker's port (a second demo's worker, a production worker) is not read."""
    from fleetmeter.demo.cli import _stored_rows

    exposition = {"own": b'fleetmeter_pipeline_info{group_id="mine",topic="t",version="1"} 1\n'
                         b'fleetmeter_pipeline_rows_total{outcome="stored"} 120\n',
                  "other": b'fleetmeter_pipeline_info{group_id="theirs",topic="t",version="1"} 1\n'
                           b'fleetmeter_pipeline_rows_total{outcome="stored"} 999\n'}

    class Metrics(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = exposition[self.path.strip("/")]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    with ThreadingHTTPServer(("127.0.0.1", 0), Metrics) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_port}"
        assert _stored_rows(f"{url}/own", "mine", 7.0) == 120.0
        assert _stored_rows(f"{url}/other", "mine", 7.0) == 7.0  # what it read before, kept
        server.shutdown()
    assert _stored_rows(url, "mine", 7.0) == 7.0  # nothing listens


def _until_served(demo: subprocess.Popen[str]) -> str:
    """The demo's output up to the lines that say where its server is."""
    assert demo.stdout is not None
    lines: list[str] = []
    for line in demo.stdout:
        lines.append(line)
        if "/openapi.json" in line:
            break
    else:
        raise AssertionError("the demo ended without serving:\n" + "".join(lines))
    return "".join(lines)


def _wait_for(url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url).status_code == 200:
                return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.2)

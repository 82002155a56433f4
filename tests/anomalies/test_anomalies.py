"""``fleetmeter anomalies`` on a warehouse with an idle allocation and a straggler planted in it (and a clean
job beside them): each found once, with the figures and the cost computed here; a rerun updates instead of
repeating; an idle job that gets busy again is resolved."""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from fleetmeter.cli import app
from fleetmeter.demo.broker import free_port
from fleetmeter.pipeline.importing.runner import run_import
from fleetmeter.pipeline.settings import PipelineSettings
from fleetmeter.schemas.sample_v1 import rows_to_batch
from tests.importing.sources import Rows

PRICE = 2.0
STEP_S = 600
cli = CliRunner()
START = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=12)


def rows(hours: range, jobs: dict[str, tuple[str, int, Any]], start: datetime = START, step_s: int = STEP_S,
         ) -> list[dict[str, Any]]:
    """Rows every ``step_s`` in ``hours`` (counted from ``start``) for each job: (tenant, devices, activity(d, hour)).
    Every device runs at 60 C but GPU-fleet-2, at 85 C."""
    made = []
    for name, (tenant, devices, activity) in jobs.items():
        for device in range(devices):
            for hour in hours:
                for step in range(3600 // step_s):
                    value = activity(device, hour)
                    made.append({"ts": int((start + timedelta(hours=hour, seconds=step * step_s)).timestamp() * 1000),
                                 "interval_s": float(step_s), "cluster": "c", "node": f"{name}-node",
                                 "device_uuid": f"GPU-{name}-{device}", "device_index": device, "device_kind": "gpu",
                                 "vendor": "nvidia", "model": "H100", "tenant": tenant, "job_id": name,
                                 "seq": hour * 6 + step, "util_compute": value, "sm_active": value,
                                 "temp_c": 85.0 if (name, device) == ("fleet", 2) else 60.0})
    return made


def straggling(device: int, hour: int) -> float:
    return 0.3 if device == 5 else 0.84 + 0.01 * (device % 3)


JOBS = {"train": ("ml", 8, straggling),
        "nb": ("research", 2, lambda device, hour: 0.6 if hour < 2 else 0.0),  # idle from the third hour on
        "infer": ("search", 4, lambda device, hour: 0.8 if hour < 3 else 0.4),  # halved from the fourth hour
        "fleet": ("vision", 6, lambda device, hour: 0.72),  # one of them runs hot
        "clean": ("vision", 4, lambda device, hour: 0.7 + 0.02 * device)}
MIDNIGHT = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
#: ten days of a tenant's batch work, two devices a day, then six on the day before yesterday
BATCH = [row for day in range(10) for row in rows(
    range(24), {"batch": ("batch", 6 if day == 9 else 2, lambda device, hour: 0.5)},
    start=MIDNIGHT - timedelta(days=11 - day), step_s=3600)]


@pytest.fixture
def warehouse(tmp_path: Path) -> Path:
    run_import(Rows("planted", [rows_to_batch(BATCH), rows_to_batch(rows(range(6), JOBS))]),
               PipelineSettings(warehouse={"uri": str(tmp_path / "w")}))  # type: ignore[arg-type]
    (tmp_path / "analysis.yaml").write_text(yaml.safe_dump({"warehouse": str(tmp_path / "w"), "prices": [
        {"model": "*", "per_device_hour": PRICE}],  # six hours of jobs: "infer" has two before its drop (and its
        "anomalies": {"regression_min_hours": 2}}))  # start-up hour, left out); the defaults: test_evaluation.py
    return tmp_path


def found(directory: Path) -> list[dict[str, Any]]:
    result = cli.invoke(app, ["anomalies", "--config", str(directory / "analysis.yaml"), "--since", "2d",
                              "--format", "json"])
    assert result.exit_code == 0, result.output
    return list(json.loads(result.stdout))


def test_each_planted_anomaly_is_found_once_with_its_cost(warehouse: Path) -> None:
    every = found(warehouse)
    anomalies = {row["kind"]: row for row in every}
    assert len(every) == 5 and set(anomalies) == {"idle_allocation", "straggler", "regression", "sick_hardware",
                                                  "spike"}
    idle = anomalies["idle_allocation"]
    assert (idle["tenant"], idle["job_id"], idle["status"], idle["end"]) == ("research", "nb", "open", None)
    assert idle["cost_impact"] == pytest.approx(2 * 4 * PRICE)  # two devices idle for four hours
    assert idle["cost_per_day"] == pytest.approx(2 * 24 * PRICE)
    assert json.loads(idle["evidence"])["idle_hours"] == 4
    slow = anomalies["straggler"]
    assert (slow["job_id"], slow["device_uuid"], slow["status"]) == ("train", "GPU-train-5", "open")
    activities = [straggling(device, 0) for device in range(8)]
    median = statistics.median(activities)
    assert json.loads(slow["evidence"])["peers_median"] == pytest.approx(median, abs=1e-4)
    assert slow["cost_impact"] == pytest.approx(8 * 6 * (1 - 0.3 / median) * PRICE, rel=1e-6)
    fell = anomalies["regression"]
    assert (fell["job_id"], fell["status"], fell["start"][:13]) == (
        "infer", "open", (START + timedelta(hours=3)).strftime("%Y-%m-%dT%H"))
    assert json.loads(fell["evidence"])["before"] == pytest.approx(0.8)
    assert fell["cost_impact"] == pytest.approx(4 * 3 * 0.4 * PRICE)  # 12 device-hours at 0.4 less
    hot = anomalies["sick_hardware"]
    assert hot["device_uuid"] == "GPU-fleet-2" and json.loads(hot["evidence"])["temp_c"] == 85.0
    spike = anomalies["spike"]
    assert (spike["tenant"], spike["start"][:10]) == ("batch", (MIDNIGHT - timedelta(days=2)).strftime("%Y-%m-%d"))
    assert spike["cost_impact"] == pytest.approx((6 - 2) * 24 * PRICE)


def test_a_rerun_updates_and_a_job_busy_again_is_resolved(warehouse: Path) -> None:
    first = {row["kind"]: row for row in found(warehouse)}
    again = {row["kind"]: row for row in found(warehouse)}
    assert len(again) == 5 and {k: r["start"] for k, r in again.items()} == {k: r["start"] for k, r in first.items()}
    busy = {"nb": ("research", 2, lambda device, hour: 0.6)}
    run_import(Rows("later", [rows_to_batch(rows(range(6, 8), busy))]),
               PipelineSettings(warehouse={"uri": str(warehouse / "w")}))  # type: ignore[arg-type]
    after = [row for row in found(warehouse) if row["kind"] == "idle_allocation"]
    assert len(after) == 1 and after[0]["status"] == "resolved"
    assert after[0]["end"].startswith((START + timedelta(hours=6)).strftime("%Y-%m-%dT%H:%M"))


def test_a_busy_weekend_of_a_weekday_tenant_is_a_spike_against_its_own_weekday(tmp_path: Path) -> None:
    """Without a forecast, a day is judged against the same weekday once three of them are stored: ten GPUs on
    work days and two at weekends for three weeks, then a Saturday on eight, fewer than any work day's."""
    monday = MIDNIGHT - timedelta(days=MIDNIGHT.weekday() + 28)
    held = [8 if day == 26 else 10 if day % 7 < 5 else 2 for day in range(27)]  # day 26: the fourth Saturday
    made = [row for day, devices in enumerate(held) for row in rows(
        range(24), {"batch": ("weekday", devices, lambda device, hour: 0.5)}, start=monday + timedelta(days=day),
        step_s=3600)]
    run_import(Rows("weeks", [rows_to_batch(made)]), PipelineSettings(warehouse={"uri": str(tmp_path / "w")}))  # type: ignore[arg-type]
    result = cli.invoke(app, ["anomalies", "--warehouse", str(tmp_path / "w"), "--kind", "spike", "--since", "30d",
                              "--format", "json"])
    assert result.exit_code == 0, result.output
    (spike,) = json.loads(result.stdout)
    assert spike["start"][:10] == (monday + timedelta(days=26)).strftime("%Y-%m-%d")
    evidence = json.loads(spike["evidence"])
    assert evidence["band"].startswith("same weekday") and evidence["expected"] == 2 * 24


def test_unknown_kinds_are_refused(warehouse: Path) -> None:
    result = cli.invoke(app, ["anomalies", "--config", str(warehouse / "analysis.yaml"), "--kind", "gremlins"])
    assert result.exit_code == 2 and "unknown kind(s) ['gremlins']" in result.output


def test_the_report_ranks_them_by_cost(warehouse: Path) -> None:
    found(warehouse)
    result = cli.invoke(app, ["report", "--config", str(warehouse / "analysis.yaml"), "--since", "30d", "--html",
                              str(warehouse / "report.html")])
    assert result.exit_code == 0, result.output
    assert "Anomalies, open first, by cost impact" in result.output
    page = (warehouse / "report.html").read_text()
    table = page[page.index('id="table-anomalies"'):]
    table = table[:table.index("</table>")]
    assert table.index("idle_allocation") < table.index("spike")  # open ones first; the spike (a past day) resolved
    assert table.index("sick_hardware") < table.index("regression")  # by cost: 6 h x 2.0 = 12 above 4.8 h x 2.0


class Receiver(BaseHTTPRequestHandler):
    """An Alertmanager-compatible webhook receiver: keeps each payload; answers the server's ``status``."""

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.payloads.append(json.loads(body))  # type: ignore[attr-defined]
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_the_webhook_gets_each_event_once_and_a_refused_one_again(warehouse: Path) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.payloads, server.status = [], 200  # type: ignore[attr-defined]
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/alerts"
    config = str(warehouse / "analysis.yaml")

    def notify(accepted: bool = True) -> None:
        result = cli.invoke(app, ["anomalies", "--config", config, "--since", "2d", "--webhook", url])
        assert result.exit_code == (0 if accepted else 1), result.output

    try:
        notify()
        [first] = server.payloads  # type: ignore[attr-defined]
        fired = {(alert["labels"]["kind"], alert["status"]) for alert in first["alerts"]}
        assert fired == {(kind, "firing") for kind in ("idle_allocation", "straggler", "regression", "sick_hardware")}
        assert first["version"] == "4" and first["status"] == "firing"  # the spike was over before it was seen
        notify()
        assert len(server.payloads) == 1  # type: ignore[attr-defined]  # nothing new: nothing sent
        later = JOBS | {"nb": ("research", 2, lambda device, hour: 0.6)}  # only the idle job changes
        run_import(Rows("later", [rows_to_batch(rows(range(6, 8), later))]),
                   PipelineSettings(warehouse={"uri": str(warehouse / "w")}))  # type: ignore[arg-type]
        server.status = 500  # type: ignore[attr-defined]  # the receiver fails: the resolution stays pending
        notify(accepted=False)
        server.status = 200  # type: ignore[attr-defined]
        notify()
        notify()
        refused, accepted = server.payloads[1:]  # type: ignore[attr-defined]
        assert [(a["labels"]["kind"], a["status"]) for a in accepted["alerts"]] == [("idle_allocation", "resolved")]
        assert refused["alerts"] == accepted["alerts"]
    finally:
        server.shutdown()


def test_watch_counts_open_anomalies_on_metrics_and_stops_on_sigterm(warehouse: Path) -> None:
    port = free_port()
    watcher = subprocess.Popen([sys.executable, "-m", "fleetmeter", "anomalies", "--config",
                                str(warehouse / "analysis.yaml"), "--since", "2d", "--watch", "--every", "10",
                                "--metrics-port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline, text = time.monotonic() + 60, ""
        while 'fleetmeter_anomalies_open{kind="straggler"} 1.0' not in text:
            assert time.monotonic() < deadline and watcher.poll() is None, text
            time.sleep(0.3)
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
            except OSError:
                continue
        assert 'fleetmeter_anomalies_open{kind="sick_hardware"} 1.0' in text
        watcher.send_signal(signal.SIGTERM)
        assert watcher.wait(30) == 0
    finally:
        watcher.kill()


def test_a_watcher_started_before_the_warehouse_has_data_waits_for_it_and_says_so(tmp_path: Path) -> None:
    """Every series is on /metrics at 0 from the start (an alert on its increase fires on the first failure);
    a round over a warehouse that holds nothing yet fails, is counted, and the watcher goes on."""
    port = free_port()
    watcher = subprocess.Popen([sys.executable, "-m", "fleetmeter", "anomalies", "--warehouse", str(tmp_path / "w"),
                                "--watch", "--every", "10", "--metrics-port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline, text = time.monotonic() + 60, ""
        while 'fleetmeter_anomalies_round_failures_total{step="warehouse"} 1.0' not in text:
            assert time.monotonic() < deadline and watcher.poll() is None, text
            time.sleep(0.3)
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
            except OSError:
                continue
        assert 'fleetmeter_anomalies_round_failures_total{step="webhook"} 0.0' in text
        assert 'fleetmeter_anomalies_events_total{kind="spike",status="resolved"} 0.0' in text
        assert 'fleetmeter_anomalies_open{kind="regression"} 0.0' in text
        watcher.send_signal(signal.SIGTERM)
        assert watcher.wait(30) == 0
    finally:
        watcher.kill()


def test_idle_busy_idle_again_is_two_anomalies_and_a_sick_device_stays_one(warehouse: Path) -> None:
    found(warehouse)  # the idle allocation of hours 2-5, open
    run_import(Rows("later", [rows_to_batch(rows(range(6, 11), JOBS | {
        "nb": ("research", 2, lambda device, hour: 0.6 if hour < 8 else 0.0),  # busy 6-7, idle again 8-10
        "fleet": ("search", 6, lambda device, hour: 0.72)}))]),  # the hot device now runs another tenant's job
        PipelineSettings(warehouse={"uri": str(warehouse / "w")}))  # type: ignore[arg-type]
    anomalies = found(warehouse)
    idle = sorted((row["start"][11:13], row["status"]) for row in anomalies if row["kind"] == "idle_allocation")
    first, second = (START + timedelta(hours=2)).strftime("%H"), (START + timedelta(hours=8)).strftime("%H")
    assert idle == sorted([(first, "resolved"), (second, "open")])
    hot = [row for row in anomalies if row["kind"] == "sick_hardware"]
    assert len(hot) == 1 and hot[0]["status"] == "open" and hot[0]["tenant"] == "search"

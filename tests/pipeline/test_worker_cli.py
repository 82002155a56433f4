"""``fleetmeter pipeline run`` as a process: its /metrics endpoint, and a clean stop on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from fleetmeter.demo.broker import EmbeddedBroker, free_port
from tests.faults.test_worker_kills import FLEETMETER
from tests.pipeline.fleet import hours_ago, run_collectors, samples_frame


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_worker_serves_metrics_and_commits_on_sigterm(kafka_broker: EmbeddedBroker, topic: str,
                                                      tmp_path: Path) -> None:
    kafka_broker.create_topic(topic, partitions=1)
    run_collectors(tmp_path, kafka_broker.bootstrap_servers, topic, start_ms=hours_ago(2), scrapes=31, nodes=2)
    port, warehouse = free_port(), tmp_path / "warehouse"
    worker = subprocess.Popen(
        [FLEETMETER, "pipeline", "run", "--bootstrap-servers", kafka_broker.bootstrap_servers, "--topic", topic,
         "--warehouse", str(warehouse), "--metrics-port", str(port)],
        env={"FLEETMETER_CONSUMER__MAX_POLL_INTERVAL_MS": "3000", "FLEETMETER_CONSUMER__SESSION_TIMEOUT_MS": "3000",
             "FLEETMETER_CONSUMER__HEARTBEAT_INTERVAL_MS": "500", "FLEETMETER_METRICS__ADDRESS": "127.0.0.1",
             "PATH": "/usr/bin:/bin"},
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        while time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                metrics = scrape(port)
            except OSError:
                continue
            if metrics.get(("fleetmeter_pipeline_messages_total", (("outcome", "accepted"),))) == 2 * 30:
                break
        assert metrics[("fleetmeter_pipeline_messages_total", (("outcome", "accepted"),))] == 2 * 30
        assert metrics[("fleetmeter_pipeline_assigned_partitions", ())] == 1
        assert metrics[("fleetmeter_pipeline_bytes_in_total", ())] > 0
        assert not samples_frame(warehouse).height  # the default 30 s freshness delay has not passed
    finally:
        worker.send_signal(signal.SIGTERM)
        _, errors = worker.communicate(timeout=30)
    assert worker.returncode == 0, errors.decode()
    assert samples_frame(warehouse).height == 2 * 4 * 30  # SIGTERM committed what was pending

"""Secrets given to the daemons never show up in their logs (debug level included) or on /metrics, and
/metrics listens only on the address it is given."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from fleetmeter.demo.broker import EmbeddedBroker, free_port

FLEETMETER = str(Path(sys.executable).parent / "fleetmeter")
PASSWORD = "hunter2-Zq8#secret"


def listening_addresses(port: int) -> set[str]:
    """The IPv4 addresses a local socket listens on at ``port``, from /proc/net/tcp (state 0A: LISTEN)."""
    addresses = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:
            addresses.add(".".join(str(int(address[i:i + 2], 16)) for i in (6, 4, 2, 0)))
    return addresses


def kafka_errors_counted(exposition: str) -> bool:
    """Whether the collector's or the worker's Kafka error counter is above zero."""
    return any(float(line.split()[-1]) > 0 for line in exposition.splitlines()
               if line.startswith(("fleetmeter_kafka_send_errors_total", "fleetmeter_pipeline_kafka_errors_total")))


@pytest.mark.parametrize("command", [
    ["collect", "--backend", "simulated", "--interval", "1", "--nodes", "1", "--devices-per-node", "2"],
    ["pipeline", "run", "--warehouse", "{tmp}/warehouse"],
])
def test_the_sasl_password_is_never_logged_nor_on_metrics_and_metrics_binds_where_told(
        command: list[str], kafka_broker: EmbeddedBroker, topic: str, tmp_path: Path) -> None:
    port = free_port()
    password_file = tmp_path / "kafka-password"
    password_file.write_text(PASSWORD + "\n")
    environment = os.environ | {
        "FLEETMETER_KAFKA__SECURITY_PROTOCOL": "SASL_PLAINTEXT", "FLEETMETER_KAFKA__SASL_MECHANISM": "SCRAM-SHA-512",
        "FLEETMETER_KAFKA__SASL_USERNAME": "fleetmeter", "FLEETMETER_KAFKA__SASL_PASSWORD_FILE": str(password_file),
        "FLEETMETER_KAFKA__REQUEST_TIMEOUT_MS": "8000", "FLEETMETER_LOGGING__LEVEL": "debug",
        "FLEETMETER_METRICS__ADDRESS": "127.0.0.1", "FLEETMETER_SHUTDOWN_TIMEOUT_S": "1",
        "FLEETMETER_SPOOL__DIR": str(tmp_path / "spool"),
    }
    process = subprocess.Popen(
        [FLEETMETER, *[part.format(tmp=tmp_path) for part in command], "--bootstrap-servers",
         kafka_broker.bootstrap_servers, "--topic", topic, "--metrics-port", str(port)],
        env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while not listening_addresses(port):
            assert time.monotonic() < deadline and process.poll() is None, "no /metrics"
            time.sleep(0.2)
        assert listening_addresses(port) == {"127.0.0.1"}
        metrics = ""
        # Until a failed connection attempt is counted (the broker does not do SASL), or the worker gives up.
        while not kafka_errors_counted(metrics) and process.poll() is None:
            assert time.monotonic() < deadline + 30, "no Kafka error counted"
            with contextlib.suppress(OSError):  # the endpoint closes when the command gives up
                metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
            time.sleep(0.2)
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    log = output.decode(errors="replace")
    assert "fleetmeter" in metrics and len(log) > 0
    assert PASSWORD not in metrics
    assert PASSWORD not in log, log

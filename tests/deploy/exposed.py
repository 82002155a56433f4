"""What fleetmeter's daemons really expose, read as Prometheus reads it: fresh processes started as an operator
starts them, their /metrics fetched over HTTP, and only the series that have a sample counted (a family with
no sample is "no data" to a dashboard and invisible to an alert)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from fleetmeter.demo.broker import free_port

Series = dict[str, list[tuple[dict[str, str], float]]]
FLEETMETER = [sys.executable, "-m", "fleetmeter"]
#: The embedded broker holds a JoinGroup for the whole rebalance timeout: keep it short.
FAST_GROUP = {"FLEETMETER_CONSUMER__MAX_POLL_INTERVAL_MS": "3000", "FLEETMETER_CONSUMER__SESSION_TIMEOUT_MS": "3000",
              "FLEETMETER_CONSUMER__HEARTBEAT_INTERVAL_MS": "500"}


def read_series(port: int) -> Series:
    """Every sample of the /metrics on ``port``, by series name: its labels and value."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    series: Series = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series.setdefault(sample.name, []).append((sample.labels, sample.value))
    return series


@contextlib.contextmanager
def daemon(arguments: Sequence[str], log: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """``fleetmeter <arguments>`` in its own process, stopped with SIGTERM (then killed) on the way out."""
    with log.open("wb") as output:
        process = subprocess.Popen([*FLEETMETER, *arguments], stdout=output, stderr=subprocess.STDOUT,
                                   env={**os.environ, **(env or {})})
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def series_when(port: int, ready: Callable[[Series], bool], process: subprocess.Popen[bytes], log: Path,
                timeout_s: float = 60) -> Series:
    """The daemon's series once ``ready`` holds of them (it fails with the daemon's log if it never does)."""
    deadline, series = time.monotonic() + timeout_s, {}
    while not ready(series):
        assert process.poll() is None and time.monotonic() < deadline, (sorted(series), log.read_text()[-3000:])
        time.sleep(0.3)
        with contextlib.suppress(OSError):
            series = read_series(port)
    return series


def fresh_daemons_series(bootstrap_servers: str, topic: str, directory: Path) -> Series:
    """The series of a collector (two simulated nodes), a pipeline worker and an anomaly watcher that have just
    started: the collector has reported its first intervals and the worker owns its partition, nothing more."""
    ports = {name: free_port() for name in ("collector", "worker", "watcher")}
    local = {"FLEETMETER_METRICS__ADDRESS": "127.0.0.1"}
    collect = ["collect", "--backend", "simulated", "--nodes", "2", "--devices-per-node", "4", "--interval", "10",
               "--speedup", "20", "--bootstrap-servers", bootstrap_servers, "--topic", topic,
               "--metrics-port", str(ports["collector"]), "--spool-dir", str(directory / "spool")]
    work = ["pipeline", "run", "--bootstrap-servers", bootstrap_servers, "--topic", topic, "--warehouse",
            str(directory / "warehouse"), "--metrics-port", str(ports["worker"])]
    watch = ["anomalies", "--watch", "--warehouse", str(directory / "warehouse"), "--metrics-port",
             str(ports["watcher"])]
    logs = {name: directory / f"{name}.log" for name in ports}
    with (daemon(collect, logs["collector"], local) as collector, daemon(work, logs["worker"], local | FAST_GROUP)
          as worker, daemon(watch, logs["watcher"]) as watcher):
        collector_series = series_when(ports["collector"], lambda s: "fleetmeter_device_energy_joules_total" in s,
                                       collector, logs["collector"])
        worker_series = series_when(ports["worker"], lambda s: "fleetmeter_pipeline_consumer_lag" in s, worker,
                                    logs["worker"])
        return collector_series | worker_series | series_when(ports["watcher"], bool, watcher, logs["watcher"])

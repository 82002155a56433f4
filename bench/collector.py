"""Collector overhead on one 8-GPU node: CPU per scrape-encode-send cycle, and the daemon's memory.

The cycle: the real daemon pieces (intervals, attribution, /metrics update, Arrow IPC encoding, spool,
Kafka producer thread) against the embedded broker, counting CPU time of the whole process (all threads)
until every message is acknowledged, minus the CPU time spent inside the backend's ``read``.
The memory: ``fleetmeter collect`` as its own process (simulated backend, scraping 100 times faster than
real time so that a few minutes of work pass), its peak and final resident set read from /proc.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from fleetmeter.collectors.backends import open_backends
from fleetmeter.collectors.daemon import CollectorDaemon
from fleetmeter.collectors.readings import DeviceReading
from fleetmeter.collectors.settings import CollectorSettings
from fleetmeter.demo.broker import EmbeddedBroker


class StepClock:
    speedup = 1.0

    def __init__(self) -> None:
        self.now = 1_767_571_200_000

    def now_ms(self) -> int:
        self.now += 10_000
        return self.now


def cycle_cost(cycles: int, devices: int, broker: EmbeddedBroker) -> tuple[float, float]:
    """CPU ms per cycle (backend read excluded) and CPU ms of the backend read itself."""
    with tempfile.TemporaryDirectory() as spool:
        settings = CollectorSettings(
            backends=["simulated"],
            kafka={"bootstrap_servers": [broker.bootstrap_servers], "topic": "bench.cycle"},  # type: ignore[arg-type]
            spool={"dir": Path(spool)},  # type: ignore[arg-type]
            simulated={"nodes": 1, "devices_per_node": devices},  # type: ignore[arg-type]
        )
        daemon = CollectorDaemon(settings, open_backends(settings))
        daemon.clock = StepClock()
        backend = daemon.backends[0]
        read_cpu = 0.0
        original_read = backend.read

        def timed_read(now_ms: int) -> list[DeviceReading]:
            nonlocal read_cpu
            started = time.thread_time()
            try:
                return original_read(now_ms)
            finally:
                read_cpu += time.thread_time() - started

        backend.read = timed_read  # type: ignore[method-assign]
        daemon.sender.start()
        daemon.scrape_once()  # prime, and let the producer connect
        while daemon.spool.messages:
            time.sleep(0.01)
        cpu_start, read_cpu = time.process_time(), 0.0
        for _ in range(cycles):
            daemon.scrape_once()
        while daemon.spool.messages:
            time.sleep(0.001)
        cpu = time.process_time() - cpu_start - read_cpu
        daemon.shutdown()
        return cpu / cycles * 1000, read_cpu / cycles * 1000


@dataclass(frozen=True)
class Memory:
    peak_rss_mb: float
    final_rss_mb: float
    scrapes: int


def daemon_memory(broker: EmbeddedBroker, devices: int = 8, run_for_s: float = 20.0) -> Memory:
    """Run ``fleetmeter collect`` for ``run_for_s`` and read its resident set just before it stops."""
    speedup = 100.0
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "collector.toml"
        config.write_text(f'backends = ["simulated"]\ninterval_s = 10\nrun_for_s = {run_for_s}\n'
                          f'[kafka]\nbootstrap_servers = ["{broker.bootstrap_servers}"]\ntopic = "bench.memory"\n'
                          f'[spool]\ndir = "{tmp}/spool"\n[metrics]\nport = 0\n'
                          f'[simulated]\nnodes = 1\ndevices_per_node = {devices}\nspeedup = {speedup}\n')
        daemon = subprocess.Popen([sys.executable, "-m", "fleetmeter", "collect", "--config", str(config)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(run_for_s - 1)
        status = dict(line.split(":", 1) for line in Path(f"/proc/{daemon.pid}/status").read_text().splitlines())
        daemon.wait(timeout=60)
    kib = {name: int(status[name].split()[0]) for name in ("VmHWM", "VmRSS")}
    return Memory(kib["VmHWM"] / 1024, kib["VmRSS"] / 1024, int((run_for_s - 1) * speedup / 10))

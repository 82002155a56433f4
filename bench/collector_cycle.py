"""CPU cost of one scrape-encode-send cycle for one simulated 8-GPU node, backend read time excluded.

Runs the real daemon pieces (intervals, attribution, /metrics update, Arrow IPC encoding, spool, Kafka
producer thread) against the embedded broker, and counts CPU time of the whole process (all threads)
until every message is acknowledged, minus the CPU time spent inside the backend's ``read``.

    .venv/bin/python bench/collector_cycle.py [--cycles 3000] [--devices 8]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from collectors.backends import open_backends
from collectors.daemon import CollectorDaemon
from collectors.readings import DeviceReading
from collectors.settings import CollectorSettings
from fleetmeter.embedded_broker import EmbeddedBroker


class StepClock:
    speedup = 1.0

    def __init__(self) -> None:
        self.now = 1_767_571_200_000

    def now_ms(self) -> int:
        self.now += 10_000
        return self.now


def run(cycles: int, devices: int, broker: EmbeddedBroker) -> tuple[float, float]:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cycles", type=int, default=3000)
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with EmbeddedBroker() as broker:
        results = [run(args.cycles, args.devices, broker) for _ in range(args.repeats)]
    cycle_ms = [r[0] for r in results]
    read_ms = [r[1] for r in results]
    print(f"{args.devices} devices, {args.cycles} cycles x {args.repeats} runs")
    print(f"cycle CPU (excluding backend read): median {statistics.median(cycle_ms):.3f} ms "
          f"(runs: {', '.join(f'{v:.3f}' for v in cycle_ms)})")
    print(f"backend read CPU (simulated, excluded): median {statistics.median(read_ms):.3f} ms")


if __name__ == "__main__":
    main()

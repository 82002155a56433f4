"""The collector daemon: scrape every backend on a fixed cadence, then expose and ship the rows."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any
from wsgiref.simple_server import WSGIServer

import structlog
from prometheus_client import CollectorRegistry, disable_created_metrics

from fleetmeter import __version__
from fleetmeter.collectors.attribution import Attribution, AttributionSource, BackendHint
from fleetmeter.collectors.attribution.procfs import Procfs
from fleetmeter.collectors.attribution.static import SchedulerFile, StaticRules
from fleetmeter.collectors.backends.base import Backend
from fleetmeter.collectors.backends.simulated import SimulatedBackend
from fleetmeter.collectors.cadence import Clock, ScaledClock, WallClock, next_tick
from fleetmeter.collectors.exposition.device_metrics import AttributionErrors, BackendErrors, DeviceMetrics
from fleetmeter.collectors.exposition.health import Health
from fleetmeter.collectors.exposition.profiles import PROFILES
from fleetmeter.collectors.intervals import IntervalBuilder
from fleetmeter.collectors.readings import DeviceReading
from fleetmeter.collectors.sequences import NodeSequences
from fleetmeter.collectors.settings import AttributionSettings, CollectorSettings
from fleetmeter.collectors.transport.sender import KafkaSender
from fleetmeter.collectors.transport.spool import Spool, SpooledMessage
from fleetmeter.common.listen import serve_metrics
from fleetmeter.schemas import wire

log = structlog.get_logger(__name__)

KAFKA_COMPRESSION = "zstd"


def attribution_sources(settings: AttributionSettings, node: str) -> list[AttributionSource]:
    """Operators' rules first (the scheduler's file, static rules), then what the cluster says (Kubernetes
    device assignments, Slurm jobs of the device's processes), then the backend's hint."""
    sources: list[AttributionSource] = []
    if settings.scheduler_file is not None:
        sources.append(SchedulerFile(settings.scheduler_file))
    if settings.static:
        sources.append(StaticRules(settings.static))
    procfs = Procfs(settings.proc_root)
    if settings.kubernetes.enabled:  # imported here: gRPC and an HTTP client cost a node that does not use them
        from fleetmeter.collectors.attribution.kubernetes import KubernetesPods

        sources.append(KubernetesPods(settings.kubernetes, node, procfs))
    if settings.slurm.enabled:
        from fleetmeter.collectors.attribution.slurm import SlurmJobs

        sources.append(SlurmJobs(settings.slurm, procfs))
    sources.append(BackendHint())
    return sources


def clock_for(backends: Sequence[Backend]) -> Clock:
    """Simulated time when the simulator runs (it owns the start and speed-up), else the wall clock."""
    for backend in backends:
        if isinstance(backend, SimulatedBackend):
            return ScaledClock(backend.start_ms, backend.settings.speedup)
    return WallClock()


class CollectorDaemon:
    def __init__(self, settings: CollectorSettings, backends: Sequence[Backend],
                 registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.backends = list(backends)
        disable_created_metrics()  # type: ignore[no-untyped-call]  # *_created series only double the output
        self.registry = registry or CollectorRegistry()
        self.health = Health(self.registry)
        self.device_metrics = DeviceMetrics(PROFILES[settings.metrics.profile])
        self.registry.register(self.device_metrics)
        self.registry.register(BackendErrors(lambda: {b.name: b.read_errors() for b in self.backends}))
        self.clock = clock_for(self.backends)
        self.builder = IntervalBuilder(settings.cluster, settings.interval_s * settings.max_interval_factor)
        self.attribution = Attribution(attribution_sources(settings.attribution, settings.node))
        self.registry.register(AttributionErrors(self.attribution.errors))
        self.spool = Spool(settings.spool.dir, settings.spool.max_bytes, settings.spool.fsync)
        self.health.spool_messages.set_function(lambda: self.spool.messages)
        self.health.spool_bytes.set_function(lambda: self.spool.bytes)
        self.sequences = NodeSequences(settings.spool.dir / "sequences.json")
        self.sender = KafkaSender(self.spool, settings.kafka, KAFKA_COMPRESSION, self.health)
        self.stopping = threading.Event()
        self.metrics_port: int | None = None  # where /metrics listens, once it does (a port of 0 picks one)
        self._metrics_server: WSGIServer | None = None
        self._pending_rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._pending_scrapes: dict[str, int] = defaultdict(int)
        self._accounted_drops = 0
        self._accounted_gaps = 0

    # -- one scrape ------------------------------------------------------------------------------

    def scrape_once(self) -> None:
        now_ms = self.clock.now_ms()
        self.attribution.refresh()
        by_node: dict[str, list[DeviceReading]] = defaultdict(list)
        for reading in self._read_backends(now_ms):
            by_node[reading.device.node].append(reading)
        for node, readings in by_node.items():
            rows = self.builder.rows(readings, now_ms, self.sequences.next(node), self.attribution.shares_of)
            self.device_metrics.update(rows, {reading.device.uuid: reading.device for reading in readings})
            self._pending_rows[node].extend(rows)
            self._pending_scrapes[node] += 1
            if self._pending_scrapes[node] >= self.settings.scrapes_per_message:
                self._ship(node)
        self.sequences.save()
        self.health.interval_gaps.inc(self.builder.gaps - self._accounted_gaps)
        self._accounted_gaps = self.builder.gaps

    def _read_backends(self, now_ms: int) -> list[DeviceReading]:
        readings: list[DeviceReading] = []
        for backend in self.backends:
            started = time.perf_counter()
            try:
                readings.extend(backend.read(now_ms))
                self.health.scrape_success.labels(backend.name).set(1)
            except Exception:  # one failing backend must not stop the others or the daemon
                log.exception("backend read failed", backend=backend.name)
                self.health.scrape_success.labels(backend.name).set(0)
            self.health.scrape_duration.labels(backend.name).set(time.perf_counter() - started)
        return readings

    def _ship(self, node: str) -> None:
        rows = self._pending_rows.pop(node, [])
        self._pending_scrapes.pop(node, None)
        if not rows:
            return
        try:
            payload = wire.encode_rows(rows)
        except (TypeError, ValueError, OverflowError) as exc:  # a value the schema cannot hold
            log.error("rows could not be encoded; dropped", node=node, rows=len(rows), error=str(exc))
            self.health.samples_dropped.labels("encode_error").inc(len(rows))
            return
        message = SpooledMessage(node.encode(), payload, wire.headers(f"fleetmeter-collector/{__version__}"),
                                 len(rows))
        self.spool.append(message)
        self.health.samples_produced.inc(len(rows))
        dropped = self.spool.dropped_rows - self._accounted_drops
        if dropped:
            self.health.samples_dropped.labels("spool_full").inc(dropped)
            self._accounted_drops = self.spool.dropped_rows

    # -- the loop --------------------------------------------------------------------------------

    def listen(self) -> int:
        """Serve /metrics; raises PortUnavailable at once when its port is taken. Returns the port."""
        metrics = self.settings.metrics
        self._metrics_server = serve_metrics(self.registry, metrics.address, metrics.port,
                                             "metrics.port, --metrics-port")
        self.metrics_port = self._metrics_server.server_port
        return self.metrics_port

    def run(self) -> None:
        """Serve /metrics (unless ``listen`` did), start the sender, scrape on cadence until stopped, then shut
        down cleanly."""
        server = self._metrics_server
        if server is None:
            self.listen()
            server = self._metrics_server
            assert server is not None
        self.sender.start()
        log.info("collector started", metrics=f"http://{self.settings.metrics.address}:{self.metrics_port}/metrics",
                 backends=[b.name for b in self.backends], topic=self.settings.kafka.topic)
        try:
            self._loop()
        finally:
            self.shutdown()
            server.shutdown()

    def _loop(self) -> None:
        period = self.settings.interval_s / self.clock.speedup
        start = time.monotonic()
        deadline = None if self.settings.run_for_s is None else start + self.settings.run_for_s
        tick = 0
        while not self.stopping.is_set():
            self.scrape_once()
            tick, missed = next_tick(start, period, time.monotonic(), tick)
            if missed:
                self.health.scrapes_missed.inc(missed)
            wake_at = start + tick * period
            if deadline is not None and wake_at > deadline:
                break
            self.stopping.wait(max(0.0, wake_at - time.monotonic()))

    def shutdown(self) -> None:
        """Ship what is pending, let the sender deliver within the timeout, close the backends."""
        for node in list(self._pending_rows):
            self._ship(node)
        self.sender.stop(self.settings.shutdown_timeout_s)
        for backend in self.backends:
            backend.close()
        log.info("collector stopped", spooled=self.spool.messages)
        self.sequences.close()
        self.spool.close()

"""End-to-end freshness: from a sample's collection to its visibility in ``util_1m``, for a live fleet.

A producer process plays a fleet of 8-GPU nodes scraping every 10 s in real time, each node at its own
phase in the interval, and sends each node's scrape as one message, keyed by node, to a topic of several
partitions. A real worker (``fleetmeter pipeline run``, its own process, default flush policy) consumes it.
A sample is visible once a commit of the ``samples`` table covers its offset: each flush commits ``samples``
last, with its Kafka partition's application transaction (the next offset) as the commit's ``txn`` action,
so by then ``util_1m`` holds the sample too. The commits are read as they appear from the table's Delta log,
each with the time its writer gave it (``commitInfo.timestamp``; the worker runs on this machine's clock):
the offsets come from the log without knowing the topic's id that the worker puts in its application ids,
and the times are the commits' own, not those of a poll. The delay is that moment minus the sample's
collection time (the end of its interval, when the collector builds the row). The worker's CPU time comes
from /proc.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
from kafka import KafkaProducer

from bench.fleet import DEVICES_PER_NODE, TEMPLATE_NODES, messages, replicate, template_rows
from fleetmeter.demo.broker import EmbeddedBroker
from fleetmeter.schemas.warehouse import SAMPLES, table_uri
from fleetmeter.sql.catalog import Catalog
from fleetmeter.sql.settings import AnalysisSettings

INTERVAL_S = 10.0
PHASES = 20  # nodes scrape at one of this many phases in the interval, sent together


@dataclass(frozen=True)
class Freshness:
    devices: int
    samples: int
    p50_s: float
    p99_s: float
    max_s: float
    worker_cores: float
    visible_in_util_1m: int


def produce_fleet(bootstrap: str, topic: str, devices: int, intervals: int, start_s: float, log: str) -> None:
    """Send ``intervals`` scrapes of ``devices`` GPUs in real time; write (partition, offset, collected_ms, rows)."""
    start = datetime.fromtimestamp(start_s, UTC)
    template = template_rows(intervals, INTERVAL_S, start)
    copies = max(1, devices // (TEMPLATE_NODES * DEVICES_PER_NODE))
    fleet = replicate(template, copies)
    nodes = fleet["node"].unique().sort()
    step_ms = int(INTERVAL_S * 1000 / PHASES)
    phase_ms = pl.DataFrame({"node": nodes, "_phase": (np.arange(len(nodes)) % PHASES) * step_ms})
    fleet = fleet.join(phase_ms, on="node").with_columns(pl.col("ts") + pl.duration(milliseconds=pl.col("_phase")))
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, compression_type="zstd", acks=1)
    sent: list[tuple[int, int, int, int]] = []
    for seq in range(1, intervals + 1):
        scrape = fleet.filter(pl.col("seq") == seq)
        for phase in range(min(PHASES, len(nodes))):  # fewer nodes than phases leave the last phases empty
            part = scrape.filter(pl.col("_phase") == phase * step_ms).drop("_phase")
            batch = messages(part, 1)
            collected_ms = max(m.collected_ms for m in batch)
            time.sleep(max(0.0, collected_ms / 1000 - time.time()))
            for message in batch:
                producer.send(topic, key=message.key, value=message.payload).add_callback(
                    lambda meta, m=message: sent.append((meta.partition, meta.offset, m.collected_ms, m.rows)))
    producer.flush()
    producer.close()
    Path(log).write_text(json.dumps(sent))


def measure(broker: EmbeddedBroker, devices: int, duration_s: float, partitions: int = 4) -> Freshness:
    topic = f"bench.freshness.{devices}"
    broker.create_topic(topic, partitions)
    intervals = int(duration_s / INTERVAL_S)
    with tempfile.TemporaryDirectory() as tmp:
        warehouse, log, config = Path(tmp) / "warehouse", Path(tmp) / "sent.json", Path(tmp) / "pipeline.toml"
        config.write_text(f'[kafka]\nbootstrap_servers = ["{broker.bootstrap_servers}"]\ntopic = "{topic}"\n'
                          f'[warehouse]\nuri = "{warehouse}"\n[metrics]\nport = 0\n'
                          '[consumer]\nmax_poll_interval_ms = 3000\nsession_timeout_ms = 6000\n'
                          'heartbeat_interval_ms = 1000\n')
        worker = subprocess.Popen([sys.executable, "-m", "fleetmeter", "pipeline", "run", "--config", str(config)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        start_s = time.time() + 15  # the worker joins its group, the producer builds its fleet
        producer = multiprocessing.get_context("spawn").Process(
            target=produce_fleet, args=(broker.bootstrap_servers, topic, devices, intervals, start_s, str(log)))
        producer.start()
        commits = SampleCommits(Path(table_uri(str(warehouse), SAMPLES.name)) / "_delta_log")
        cpu_at_start = None
        try:
            while producer.is_alive() or not _covers(commits.offsets, log):
                now = time.time()
                if cpu_at_start is None and now >= start_s:
                    cpu_at_start = (_cpu_s(worker.pid), now)
                commits.read()
                time.sleep(0.25)
                if now > start_s + duration_s + 120:
                    raise RuntimeError("the worker did not commit everything within two minutes of the last scrape")
            assert cpu_at_start is not None
            cores = (_cpu_s(worker.pid) - cpu_at_start[0]) / (time.time() - cpu_at_start[1])
            visible = _util_1m_samples(warehouse)
        finally:  # a failed run leaves no worker behind
            worker.terminate()
            worker.wait()
        sent = json.loads(log.read_text())
    delays, weights = _delays(sent, commits.seen)
    return Freshness(devices, int(weights.sum()), _quantile(delays, weights, 0.5), _quantile(delays, weights, 0.99),
                     float(delays.max()), cores, visible)


class SampleCommits:
    """The commits of the ``samples`` table, read from its Delta log as they appear."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.version = 0  # the next commit file to read
        self.offsets: dict[int, int] = {}  # per Kafka partition, the next offset committed so far
        self.seen: list[tuple[float, dict[int, int]]] = []  # each commit's time and ``offsets`` after it

    def read(self) -> None:
        """Read the commits written since the last call (a commit file appears whole: delta-rs renames it)."""
        while (path := self.log / f"{self.version:020d}.json").exists():
            actions = [json.loads(line) for line in path.read_text().splitlines() if line]
            at = next(action["commitInfo"]["timestamp"] for action in actions if "commitInfo" in action) / 1000
            for action in actions:
                if "txn" in action:  # app id fleetmeter/<group>/<topic>/<topic id>/<partition>
                    self.offsets[int(action["txn"]["appId"].rsplit("/", 1)[1])] = action["txn"]["version"]
            self.seen.append((at, dict(self.offsets)))
            self.version += 1


def _covers(offsets: dict[int, int], log: Path) -> bool:
    if not log.exists() or not offsets:
        return False
    ends: dict[int, int] = {}
    for partition, offset, _, _ in json.loads(log.read_text()):
        ends[partition] = max(ends.get(partition, 0), offset + 1)
    return all(offsets.get(partition, 0) >= end for partition, end in ends.items())


def _delays(sent: list[list[int]], commits: list[tuple[float, dict[int, int]]]) -> tuple[np.ndarray, np.ndarray]:
    """Each message's delay from collection to the first commit covering it, and its rows (the weights)."""
    delays, weights = [], []
    for partition, offset, collected_ms, rows in sent:
        seen = next(at for at, offsets in commits if offsets.get(partition, 0) > offset)
        delays.append(seen - collected_ms / 1000)
        weights.append(rows)
    return np.array(delays), np.array(weights)


def _quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, q * cumulative[-1])])


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _util_1m_samples(warehouse: Path) -> int:
    catalog = Catalog.open(AnalysisSettings(warehouse=str(warehouse)), datetime(2000, 1, 1, tzinfo=UTC))
    [(value,)] = catalog.connect().sql("SELECT coalesce(sum(samples), 0) FROM util_1m").fetchall()
    return int(value)

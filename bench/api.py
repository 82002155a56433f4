"""Latency of the REST API's tenant endpoints under load.

``fleetmeter serve`` runs in a process of its own over ``days`` days of a ``devices``-GPU fleet (the planted fleet
of ``bench/anomalies.py``, its tables written with the pipeline's rollup code), and ``clients`` clients on
127.0.0.1, each with its tenant's token, send their next request as soon as the last is answered (a closed
loop: the load is bounded by the clients, not a rate) for ``seconds``, cycling through the tenant endpoints. The
answers are not cached by the clients (no ``If-None-Match``): every request runs its query. Reported per
endpoint: requests, p50 and p99 of the time to the whole answer, and errors.
"""

from __future__ import annotations

import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import yaml

from bench.anomalies import build
from fleetmeter.demo.broker import free_port
from fleetmeter.demo.planted import PER_NODE, PlantedFleet
from fleetmeter.web.auth import add_token


@dataclass(frozen=True)
class Latency:
    kept_answers: bool  # the server's answer cache on (http.answer_cache) or off: every request runs its query
    endpoint: str
    requests: int
    p50_ms: float
    p99_ms: float
    errors: int


@dataclass(frozen=True)
class Load:
    devices: int
    days: int
    clients: int
    seconds: float
    build_s: float
    latencies: list[Latency]

    def requests_per_s(self, kept_answers: bool) -> float:
        return sum(latency.requests for latency in self.latencies if latency.kept_answers == kept_answers) / \
            self.seconds


def _endpoints(url: str, tenant: str, job: tuple[str, str]) -> dict[str, str]:
    cluster, job_id = job
    return {
        "tenant summary": f"{url}/v1/tenants/{tenant}",
        "usage, 7 days hourly": f"{url}/v1/tenants/{tenant}/usage?granularity=1h",
        "usage, 30 days daily": f"{url}/v1/tenants/{tenant}/usage?granularity=1d&from=-30",
        "jobs, first page": f"{url}/v1/jobs?tenant={tenant}&limit=50",
        "a job's detail": f"{url}/v1/jobs/{cluster}/{tenant}/{job_id}",
        "anomalies": f"{url}/v1/anomalies?tenant={tenant}",
        "rightsizing": f"{url}/v1/rightsizing?tenant={tenant}",
    }


def run(devices: int, days: int, clients: int, seconds: float) -> Load:
    end = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    fleet = PlantedFleet("bench", devices // PER_NODE, days, end, 10, seed=5)
    with tempfile.TemporaryDirectory(prefix="fleetmeter-bench-api-") as root:
        build_s = build(f"{root}/warehouse", fleet)
        tenants = fleet.tenants
        tokens = {tenant: add_token(Path(root) / "tokens.yaml", tenant, "tenant", tenant) for tenant in tenants}
        latencies = []
        for kept_answers in (False, True):
            timings = _serve_and_load(root, tokens, clients, seconds, 1024 if kept_answers else 0)
            latencies += [Latency(kept_answers, name, len(times), _percentile(times, 0.5), _percentile(times, 0.99),
                                  errors) for name, (times, errors) in sorted(timings.items())]
    return Load(devices, days, clients, seconds, build_s, latencies)


def _serve_and_load(root: str, tokens: dict[str, str], clients: int, seconds: float,
                    answer_cache: int) -> dict[str, tuple[list[float], int]]:
    port = free_port()
    config = Path(root) / "analysis.yaml"
    config.write_text(yaml.safe_dump({
        "warehouse": f"{root}/warehouse", "prices": [{"model": "*", "per_device_hour": 2.0}],
        "http": {"port": port, "tokens_file": str(Path(root) / "tokens.yaml"), "snapshot_s": 3600,
                 "answer_cache": answer_cache}}))
    server = subprocess.Popen([sys.executable, "-m", "fleetmeter", "serve", "--config", str(config)],
                              env=os.environ | {"POLARS_MAX_THREADS": "2"})
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_for(f"{url}/health")
        plans = {}
        for tenant, token in tokens.items():
            headers = {"Authorization": f"Bearer {token}"}
            first = httpx.get(f"{url}/v1/jobs?tenant={tenant}&limit=1", headers=headers, timeout=600).json()
            job = first["jobs"][0] if first["jobs"] else {"cluster": "none", "job_id": "none"}
            plans[tenant] = _endpoints(url, tenant, (job["cluster"], job["job_id"]))
            for address in plans[tenant].values():  # warm: the first of each query plans and reads footers
                httpx.get(address.replace("from=-30", f"from={_days_ago(30)}"), headers=headers, timeout=600)
        return _load(plans, tokens, clients, seconds)
    finally:
        server.terminate()
        server.wait(timeout=30)


def _load(plans: dict[str, dict[str, str]], tokens: dict[str, str], clients: int,
          seconds: float) -> dict[str, tuple[list[float], int]]:
    timings: dict[str, tuple[list[float], int]] = defaultdict(lambda: ([], 0))
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds
    tenants = list(plans)

    def client(number: int) -> None:
        tenant = tenants[number % len(tenants)]
        headers = {"Authorization": f"Bearer {tokens[tenant]}"}
        names = itertools.cycle(sorted(plans[tenant]))
        for _ in range(number):  # each client starts elsewhere in the cycle
            next(names)
        with httpx.Client(headers=headers, timeout=60) as session:
            while time.monotonic() < stop_at:
                name = next(names)
                address = plans[tenant][name].replace("from=-30", f"from={_days_ago(30)}")
                started = time.perf_counter()
                try:
                    failed = session.get(address).status_code != 200
                except httpx.HTTPError:
                    failed = True
                elapsed_ms = (time.perf_counter() - started) * 1000
                with lock:
                    times, errors = timings[name]
                    times.append(elapsed_ms)
                    timings[name] = (times, errors + int(failed))

    threads = [threading.Thread(target=client, args=(number,)) for number in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return dict(timings)


def _days_ago(days: int) -> str:
    return datetime.fromtimestamp(time.time() - days * 86_400, tz=UTC).date().isoformat()


def _percentile(times: list[float], share: float) -> float:
    if len(times) < 2:
        return times[0] if times else float("nan")
    return statistics.quantiles(times, n=100, method="inclusive")[round(share * 100) - 1] if share < 1 else max(times)


def _wait_for(url: str) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer")
        time.sleep(0.2)

"""A real Prometheus server (Debian's package): serving a TSDB that ``promtool tsdb create-blocks-from openmetrics``
filled with a given history (the import tests and benchmark), or scraping targets (exposition compatibility)."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

needs_prometheus = pytest.mark.skipif(
    shutil.which("prometheus") is None or shutil.which("promtool") is None,
    reason="prometheus and promtool not installed (Debian: apt-get install prometheus; CI installs it)")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_prometheus(directory: Path, openmetrics: str) -> Iterator[str]:
    """Fill a TSDB with ``openmetrics`` and serve it; yields the server's URL."""
    (directory / "history.om").write_text(openmetrics)
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", "history.om", "data"], cwd=directory,
                   check=True, capture_output=True)
    yield from _serve(directory, "global:\n  scrape_interval: 1h\n")


def scraping_prometheus(directory: Path, job: str, targets: list[str], interval_s: int = 1) -> Iterator[str]:
    """A Prometheus that scrapes ``targets`` as ``job`` every ``interval_s``; yields the server's URL."""
    config = {"global": {"scrape_interval": f"{interval_s}s"},
              "scrape_configs": [{"job_name": job, "static_configs": [{"targets": targets}]}]}
    yield from _serve(directory, json.dumps(config))  # JSON is YAML


def query(url: str, expression: str) -> list[dict[str, Any]]:
    """An instant query's result vector (each item: ``metric`` labels and ``value`` [time, text])."""
    address = f"{url}/api/v1/query?" + urllib.parse.urlencode({"query": expression})
    with urllib.request.urlopen(address, timeout=30) as answer:
        body = json.load(answer)
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def _serve(directory: Path, config: str) -> Iterator[str]:
    (directory / "prometheus.yml").write_text(config)
    port = _free_port()
    server = subprocess.Popen(
        ["prometheus", "--config.file=prometheus.yml", "--storage.tsdb.path=data",
         "--storage.tsdb.retention.time=10y", f"--web.listen-address=127.0.0.1:{port}"],
        cwd=directory, stdout=subprocess.DEVNULL, stderr=(directory / "prometheus.log").open("w"))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((directory / "prometheus.log").read_text()[-2000:]) from None
                time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(10)

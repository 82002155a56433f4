"""A real Prometheus server (Debian's package) serving a TSDB that ``promtool tsdb create-blocks-from openmetrics``
filled with a given history: for the import tests and the import benchmark."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

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
    (directory / "prometheus.yml").write_text("global:\n  scrape_interval: 1h\n")
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

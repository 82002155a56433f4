"""Shared fixtures: a real Kafka-protocol broker (Tansu) on a free loopback port, and helpers."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import Phase, settings
from kafka import KafkaConsumer

from fleetmeter.collectors.settings import CollectorSettings
from fleetmeter.demo.broker import EmbeddedBroker
from fleetmeter.schemas import wire

#: ``./dev mutate`` runs the tests once per mutant: a failing example needs no shrinking, nor a database.
settings.register_profile("mutation", phases=[Phase.explicit, Phase.reuse, Phase.generate], database=None,
                          max_examples=30)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="also run soak and long-running variants")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow variant: pass --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


#: The part folders, importable under their bare names too while the repository root is on sys.path (pytest).
BARE_PARTS = ("collectors", "pipeline", "schemas", "sql", "reports", "planning", "anomalies")


@pytest.fixture(scope="session", autouse=True)
def _nothing_imports_a_part_by_its_bare_name() -> Iterator[None]:
    """A bare import (``importlib.import_module("reports")``, jinja2's ``PackageLoader("reports")``) works here
    but not in an installed wheel, and loads a second copy of the module: no test run may do it."""
    yield
    bare = sorted(name for name in sys.modules if name.split(".")[0] in BARE_PARTS)
    assert not bare, f"imported by a bare name instead of fleetmeter.<part>: {bare}"


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[EmbeddedBroker]:
    with EmbeddedBroker() as broker:
        yield broker


@pytest.fixture
def topic() -> str:
    return f"test.samples.{uuid.uuid4().hex[:12]}"


Message = tuple[bytes, list[tuple[str, bytes]], pa.Table]


def consume(bootstrap_servers: str, topic: str, idle_ms: int = 3000) -> list[Message]:
    """Every message on the topic as (key, headers, decoded table), read until idle for ``idle_ms``."""
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap_servers, auto_offset_reset="earliest",
                             consumer_timeout_ms=idle_ms, group_id=None, enable_auto_commit=False)
    try:
        return [(m.key, list(m.headers), wire.decode(m.value)) for m in consumer]
    finally:
        consumer.close()


class StepClock:
    """A collector clock that advances one scrape interval per reading, so tests need not sleep."""

    speedup = 1.0

    def __init__(self, start_ms: int = 1_767_571_200_000, step_ms: int = 10_000) -> None:
        self._next, self._step = start_ms, step_ms

    def now_ms(self) -> int:
        self._next += self._step
        return self._next - self._step


def collector_settings(tmp_path: Path, bootstrap_servers: str, topic: str, **overrides: object) -> CollectorSettings:
    """Settings for a simulated collector writing to ``topic``, with its spool under ``tmp_path``."""
    values: dict[str, object] = {
        "cluster": "test",
        "backends": ["simulated"],
        "kafka": {"bootstrap_servers": [bootstrap_servers], "topic": topic, "request_timeout_ms": 3000},
        "spool": {"dir": tmp_path / "spool"},
        "metrics": {"address": "127.0.0.1", "port": 0},
        "simulated": {"nodes": 2, "devices_per_node": 4, "seed": 7, "start": "2026-01-05T00:00:00Z"},
    }
    values |= overrides
    return CollectorSettings(**values)  # type: ignore[arg-type]

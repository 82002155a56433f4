"""The collector's Arrow IPC writer (schemas/sample_v1_ipc.py) against pyarrow: today's decoder reads what it
writes exactly as it reads pyarrow's stream of the same rows, it refuses what pyarrow refuses, and the collector
runs without loading pyarrow."""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys
from importlib import resources
from typing import Any

import polars as pl
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleetmeter.schemas import wire
from fleetmeter.schemas.sample_v1 import SAMPLE_SCHEMA, rows_to_batch
from fleetmeter.schemas.sample_v1_ipc import SCHEMA_MESSAGE, encode_rows
from tests.strategies import hostile_rows, valid_rows

TS = (1_700_000_000_000, 1_900_000_000_000)
REFUSED = (ValueError, TypeError, OverflowError)  # pyarrow's ArrowInvalid and ArrowTypeError among them


def pyarrow_stream(rows: list[dict[str, Any]]) -> bytes:
    return wire.encode(rows_to_batch(rows))


def comparable(value: Any) -> Any:
    """Decoded values with NaN made equal to NaN (a value here, not a null)."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if isinstance(value, dict):
        return {key: comparable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [comparable(item) for item in value]
    return value


def same(written: pa.Table, expected: pa.Table) -> bool:
    def values(table: pa.Table) -> Any:  # ts as epoch ms: Python's datetime ends in year 9999, int64 does not
        index = table.schema.get_field_index("ts")
        return comparable(table.set_column(index, "ts", table["ts"].cast(pa.int64())).to_pylist())

    return written.schema.equals(expected.schema, check_metadata=True) and values(written) == values(expected)


def test_the_schema_message_is_the_schemas() -> None:
    """The constant schema message is what pyarrow writes for SAMPLE_SCHEMA (FLEETMETER_UPDATE_GOLDEN=1 rewrites
    it after a schema change)."""
    expected = SAMPLE_SCHEMA.serialize().to_pybytes()
    if os.environ.get("FLEETMETER_UPDATE_GOLDEN") == "1":
        path = resources.files("fleetmeter.schemas").joinpath("sample_v1_schema.ipc")
        with resources.as_file(path) as file:
            file.write_bytes(expected)
    assert expected == SCHEMA_MESSAGE
    assert pa.ipc.read_schema(pa.py_buffer(SCHEMA_MESSAGE)).equals(SAMPLE_SCHEMA, check_metadata=True)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(valid_rows(TS), max_size=12))
def test_todays_decoder_reads_the_writers_stream_as_pyarrows(rows: list[dict[str, Any]]) -> None:
    assert same(wire.decode(encode_rows(rows)), wire.decode(pyarrow_stream(rows)))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(hostile_rows(TS), min_size=1, max_size=4))
def test_hostile_rows_are_written_as_pyarrow_writes_them_or_refused_as_it_refuses_them(
        rows: list[dict[str, Any]]) -> None:
    try:
        expected = wire.decode(pyarrow_stream(rows))
    except REFUSED:
        expected = None
    try:
        written = wire.decode(encode_rows(rows))
    except REFUSED:
        written = None
    assert (written is None) == (expected is None)
    if written is not None and expected is not None:
        assert same(written, expected)


def test_rows_as_the_collector_builds_them() -> None:
    """Maps as dicts, a null process, a column a row lacks (null), NaN, the largest int64, non-ASCII names."""
    row = {"ts": 1_767_571_200_000, "interval_s": 10.0, "cluster": "c", "node": "nœud", "device_uuid": "GPU-1",
           "device_index": 3, "device_kind": "gpu", "vendor": "nvidia", "model": "H100", "tenant": "研究",
           "util_compute": float("nan"), "mem_used_bytes": 2**63 - 1, "throttle_reasons": ["a", "bb"],
           "xid_errors": [], "processes": [{"pid": 1, "used_memory_bytes": None}, None], "seq": 7,
           "extras": {"k": 1.5, "z": None}, "workloads": ("not", "a", "column")}
    rows = [row, dict(row, extras=None, processes=None, xid_errors=[79, 48])]
    written = wire.decode(encode_rows(rows))
    assert written.to_pylist()[0]["extras"] == [("k", 1.5), ("z", None)]
    assert same(written, wire.decode(pyarrow_stream(rows)))
    by_polars = pl.read_ipc_stream(io.BytesIO(encode_rows(rows)))  # another reader of the format
    assert by_polars.equals(pl.read_ipc_stream(io.BytesIO(pyarrow_stream(rows))))
    assert "workloads" not in written.column_names
    assert wire.decode(encode_rows([])).num_rows == 0


def test_the_collector_runs_without_pyarrow_grpc_or_an_http_client() -> None:
    """A scrape of the simulated node is built, encoded and spooled; none of the heavy libraries is loaded."""
    script = """
import sys, tempfile
from pathlib import Path
from fleetmeter.collectors.backends import open_backends
from fleetmeter.collectors.daemon import CollectorDaemon
from fleetmeter.collectors.settings import CollectorSettings
with tempfile.TemporaryDirectory() as spool:
    settings = CollectorSettings(backends=["simulated"], spool={"dir": Path(spool)}, scrapes_per_message=1,
                                 kafka={"bootstrap_servers": ["127.0.0.1:1"]}, metrics={"port": 0})
    daemon = CollectorDaemon(settings, open_backends(settings))
    for _ in range(3):
        daemon.scrape_once()
    assert daemon.spool.messages == 2 * 4, daemon.spool.messages  # 4 nodes, the first scrape primes
    daemon.spool.close()
heavy = sorted({name.split(".")[0] for name in sys.modules} & {"pyarrow", "numpy", "pandas", "grpc", "httpx",
                                                               "polars", "duckdb", "google"})
print(",".join(heavy))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == ""

"""Efficiency, busy-but-idle waste and right-sizing (docs/efficiency.md) against figures computed here from the
generated rows: jobs on H100s with GPM readings, an A100 without them, MIG instances of a MIG-mode board, a
time-sliced device shared by two jobs, a job too short and one with too few readings to judge. The rows go
through the real broker and pipeline; the expected figures read the rows, never the warehouse."""

from __future__ import annotations

import math
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from deltalake import write_deltalake

from fleetmeter.demo.broker import EmbeddedBroker
from fleetmeter.pipeline.worker import PipelineWorker
from fleetmeter.schemas import wire
from fleetmeter.schemas.sample_v1 import rows_to_batch
from fleetmeter.schemas.warehouse import UTIL_1D
from fleetmeter.sql.catalog import Catalog, canned_queries
from fleetmeter.sql.settings import AnalysisSettings
from fleetmeter.sql.since import parse_since
from tests.analysis.fleet import start_of_fleet
from tests.pipeline.fleet import pipeline_settings, produce_raw

Row = dict[str, Any]
GB = 10**9
H100, A100 = "NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB"
MIG3 = f"{H100} MIG 3g.40gb"
INTERVAL_S = 300.0
HOURS = 14
STEPS = int(HOURS * 3600 / INTERVAL_S)
PRICES = [{"model": "NVIDIA H100*", "per_device_hour": 3.5}, {"model": "NVIDIA A100*", "per_device_hour": 2.1}]
ECONOMICS = [{"model": H100, "throughput": 2.0}, {"model": A100, "throughput": 1.0}]
IDLE, SM_IDLE = 0.05, 0.1
#: The measures that came with efficiency (docs/warehouse.md): older warehouses' files lack them.
NEW_MEASURES = {"mem_bw_active_seconds", "mem_bw_known_seconds", "mem_used_byte_seconds", "mem_total_byte_seconds",
                "mem_known_seconds", "mem_total_max_bytes", "energy_known_seconds", "energy_busy_seconds",
                "shared_seconds", "sm_hist_seconds", "util_hist_sm_known_seconds"}


@dataclass(frozen=True)
class Device:
    node: str
    uuid: str
    model: str
    mem_total: int
    #: the rows' readings and owners at step i: a list of (tenant, job, share, readings)
    owners: Callable[[int], list[tuple[str, str | None, float | None, dict[str, Any]]]]
    kind: str = "gpu"
    parent: str | None = None
    extras: tuple[tuple[str, float], ...] = ()
    steps: int = STEPS


def wave(i: int, low: float, high: float) -> float:
    """A reading that moves between ``low`` and ``high`` over the steps (deterministic)."""
    return low + (high - low) * (0.5 + 0.5 * math.sin(i / 7))


def fleet() -> list[Device]:
    def spin(i: int) -> list[Any]:  # busy by the driver's figure, SMs nearly idle, little memory
        return [("vision", "spin", None, {"util_compute": 0.97, "sm_active": wave(i, 0.01, 0.04),
                                          "tensor_active": 0.01, "util_mem_bw": wave(i, 0.02, 0.05),
                                          "mem_used_bytes": int(wave(i, 4, 6) * GB), "energy_j": 150 * INTERVAL_S})]

    def big(i: int) -> list[Any]:  # its energy reported every other interval
        return [("vision", "big", None, {"util_compute": wave(i, 0.7, 0.95), "sm_active": wave(i, 0.5, 0.9),
                                         "tensor_active": wave(i, 0.3, 0.6), "util_mem_bw": 0.6,
                                         "mem_used_bytes": 70 * GB, "energy_j": 600 * INTERVAL_S if i % 2 else None})]

    def shared_idle(i: int) -> list[Any]:  # would fit a slice, but each job holds a part of the device already
        readings = {"util_compute": 0.9, "sm_active": 0.03, "mem_used_bytes": 3 * GB, "energy_j": 100 * INTERVAL_S}
        return [("speech", "part-a", 0.5, readings), ("speech", "part-b", 0.5, readings)]

    def ranks(rank: int) -> Callable[[int], list[Any]]:  # one busy rank among idle ones
        def readings(i: int) -> list[Any]:
            return [("ranking", "ranks", None, {"util_compute": 0.97, "sm_active": 0.9 if rank == 0 else 0.02,
                                                "mem_used_bytes": 5 * GB})]
        return readings

    def no_driver_figure(i: int) -> list[Any]:  # a GPU without util_compute: nothing says its time was busy
        return [("ranking", "no-util", None, {"sm_active": 0.01, "mem_used_bytes": 2 * GB})]

    def zero_memory(i: int) -> list[Any]:  # a capacity of 0 is no capacity known
        return [("ranking", "zero-mem", None, {"util_compute": 0.5, "sm_active": 0.02, "mem_used_bytes": 0,
                                               "mem_total_bytes": 0})]

    def old(i: int) -> list[Any]:  # no GPM: its compute is judged by util_compute, which bounds SM activity
        util = 0.3 if i % 4 else 0.02
        return [("speech", "old", None, {"util_compute": util, "util_mem_bw": 0.1, "mem_used_bytes": 20 * GB,
                                         "energy_j": 200 * INTERVAL_S})]

    def mig_board(i: int) -> list[Any]:
        return [("unallocated", None, None, {"energy_j": 300 * INTERVAL_S, "temp_c": 50.0})]

    def mig_job(i: int) -> list[Any]:  # an instance's SM activity is of its own SMs
        return [("speech", "mig3", None, {"sm_active": 0.2 if i % 2 else 0.02, "mem_used_bytes": 8 * GB})]

    def shared(i: int) -> list[Any]:
        readings = {"util_compute": 0.9, "sm_active": 0.6, "tensor_active": 0.4, "util_mem_bw": 0.3,
                    "mem_used_bytes": 30 * GB, "energy_j": 500 * INTERVAL_S}
        return [("vision", "share-a", 0.75, readings), ("ranking", "share-b", 0.25, readings)]

    def short(i: int) -> list[Any]:
        return [("ranking", "short", None, {"util_compute": 0.5, "sm_active": 0.05, "mem_used_bytes": 2 * GB})]

    def gappy(i: int) -> list[Any]:  # readings half the time: too little to judge
        known = i % 2 == 0
        return [("ranking", "gappy", None, {"util_compute": 0.5 if known else None,
                                            "sm_active": 0.05 if known else None,
                                            "mem_used_bytes": 2 * GB if known else None})]

    return [
        Device("h-0", "GPU-spin-0", H100, 80 * GB, spin), Device("h-0", "GPU-spin-1", H100, 80 * GB, spin),
        Device("h-1", "GPU-big", H100, 80 * GB, big), Device("h-1", "GPU-shared", H100, 80 * GB, shared),
        Device("a-0", "GPU-old", A100, 80 * GB, old),
        Device("m-0", "GPU-mig", H100, 80 * GB, mig_board, extras=(("mig.enabled", 1.0),)),
        Device("m-0", "MIG-3g", MIG3, 40 * GB, mig_job, kind="mig", parent="GPU-mig"),
        Device("h-2", "GPU-short", H100, 80 * GB, short, steps=int(2 * 3600 / INTERVAL_S)),
        Device("h-2", "GPU-gappy", H100, 80 * GB, gappy),
        Device("h-3", "GPU-parts", H100, 80 * GB, shared_idle),
        *(Device("h-4", f"GPU-rank-{rank}", H100, 80 * GB, ranks(rank)) for rank in range(4)),
        Device("h-5", "GPU-no-util", H100, 80 * GB, no_driver_figure),
        Device("h-5", "GPU-zero-mem", H100, 80 * GB, zero_memory),
    ]


def generate(start: datetime) -> list[Row]:
    rows = []
    start_ms = int(start.timestamp() * 1000)
    for device in fleet():
        for i in range(device.steps):
            for tenant, job, share, readings in device.owners(i):
                rows.append({"ts": start_ms + int(i * INTERVAL_S * 1000), "interval_s": INTERVAL_S,
                             "cluster": "eff", "node": device.node, "device_uuid": device.uuid, "device_index": 0,
                             "device_kind": device.kind, "parent_uuid": device.parent, "vendor": "nvidia",
                             "model": device.model, "tenant": tenant, "job_id": job, "seq": i,
                             "mem_total_bytes": device.mem_total if readings.get("mem_used_bytes") is not None
                             else None,
                             "extras": list(device.extras) or None, "share": share,
                             "share_rule": None if share is None else "process_util"} | readings)
    return rows


@dataclass(frozen=True)
class Warehouse:
    path: Path
    rows: list[Row]

    def query(self, sql: str, **overrides: Any) -> list[Row]:
        settings = AnalysisSettings(**({"warehouse": str(self.path), "prices": PRICES, "economics": ECONOMICS}
                                       | overrides))
        return Catalog.open(settings, parse_since("30d")).connect().sql(sql).to_arrow_table().to_pylist()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def warehouse(kafka_broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Warehouse:
    topic = f"test.efficiency.{uuid.uuid4().hex[:8]}"
    kafka_broker.create_topic(topic, partitions=2)
    rows = generate(start_of_fleet())
    by_node: dict[str, list[Row]] = defaultdict(list)
    for row in rows:
        by_node[row["node"]].append(row)
    messages = [(node.encode(), wire.encode(rows_to_batch(part[i:i + 200])))
                for node, part in by_node.items() for i in range(0, len(part), 200)]
    produce_raw(kafka_broker.bootstrap_servers, topic, messages)
    path = tmp_path_factory.mktemp("efficiency") / "warehouse"
    PipelineWorker(pipeline_settings(kafka_broker.bootstrap_servers, topic, path)).run()
    return Warehouse(path, rows)


# -- the figures, from the rows ---------------------------------------------------------------------------------


def capacity(row: Row) -> float:
    if dict(row["extras"] or []).get("mig.enabled"):
        return 0.0
    return row["interval_s"] * (1.0 if row["share"] is None else row["share"])


def job_rows(rows: list[Row], job: str) -> list[Row]:
    return [row for row in rows if row["job_id"] == job]


def weighted(rows: list[Row], reading: str) -> tuple[float | None, float]:
    """The time-weighted mean of a reading over the rows that have it, and its coverage."""
    known = [(row[reading], capacity(row)) for row in rows if row.get(reading) is not None]
    total = sum(capacity(row) for row in rows)
    seconds = sum(weight for _, weight in known)
    return (sum(value * weight for value, weight in known) / seconds if seconds else None), seconds / total


def idle_split(rows: list[Row]) -> tuple[float, float]:
    """(idle, busy-but-idle) device-hours: idle by util_compute first; then low SM activity, where the driver says
    the device was busy (or, on a MIG instance, which has no driver figure, at all)."""
    idle = busy_idle = 0.0
    for row in rows:
        util, sm = row.get("util_compute"), row.get("sm_active")
        if util is not None and util < IDLE:
            idle += capacity(row)
        elif sm is not None and sm < SM_IDLE and (util is not None or row["device_kind"] == "mig"):
            busy_idle += capacity(row)
    return idle / 3600, busy_idle / 3600


def upper_bin_edge_of_quantile(rows: list[Row], reading: str, q: float) -> float:
    """The q-quantile of the reading over time, rounded up to the edge of its bin of 0.05."""
    values = sorted((row[reading], capacity(row)) for row in rows if row.get(reading) is not None)
    total, running = sum(weight for _, weight in values), 0.0
    for value, weight in values:
        running += weight
        if running >= q * total - 1e-9:
            return (min(math.floor(value * 20), 19) + 1) / 20
    raise AssertionError("no readings")


# -- efficiency ---------------------------------------------------------------------------------------------------


def test_every_measure_of_every_job_with_its_coverage(warehouse: Warehouse) -> None:
    stored = {(row["job_id"], row["model"]): row for row in warehouse.query(
        "SELECT * FROM efficiency WHERE grain = 'job'")}
    jobs = {(row["job_id"], row["model"]) for row in warehouse.rows if row["job_id"]}
    assert set(stored) == jobs
    for job, model in jobs:
        rows, got = job_rows(warehouse.rows, job), stored[(job, model)]
        device_seconds = sum(capacity(row) for row in rows)
        assert got["device_hours"] == pytest.approx(device_seconds / 3600)
        for reading, measure, coverage in (("util_compute", "busy_share", "busy_coverage"),
                                           ("sm_active", "sm_active", "sm_coverage"),
                                           ("tensor_active", "tensor_active", "tensor_coverage"),
                                           ("util_mem_bw", "mem_bw_active", "mem_bw_coverage")):
            mean, covered = weighted(rows, reading)
            assert got[measure] == (pytest.approx(mean) if mean is not None else None), (job, measure)
            assert got[coverage] == pytest.approx(covered), (job, coverage)
        with_memory = [row for row in rows if row["mem_used_bytes"] is not None]
        assert got["mem_peak_bytes"] == max((row["mem_used_bytes"] for row in with_memory), default=None)
        if with_memory:
            used = sum(row["mem_used_bytes"] * capacity(row) for row in with_memory)
            assert got["mem_typical_bytes"] == pytest.approx(used / sum(capacity(row) for row in with_memory))
            capacity_byte_seconds = sum(row["mem_total_bytes"] * capacity(row) for row in with_memory)
            assert got["mem_typical_share"] == (pytest.approx(used / capacity_byte_seconds)
                                                if capacity_byte_seconds else None)
            total = with_memory[0]["mem_total_bytes"]
            assert got["mem_peak_share"] == (pytest.approx(got["mem_peak_bytes"] / total) if total else None)
        with_energy = [row for row in rows if row.get("energy_j") is not None]
        energy = sum(row["energy_j"] for row in with_energy)
        busy = sum((row["util_compute"] or 0.0) * capacity(row) for row in with_energy)
        expected_kwh = energy / 3.6e6 / (busy / 3600) if energy and busy else None
        assert got["kwh_per_busy_device_hour"] == (pytest.approx(expected_kwh) if expected_kwh else None), job
        assert got["energy_coverage"] == pytest.approx(sum(capacity(row) for row in with_energy) / device_seconds)
        assert got["mem_coverage"] == pytest.approx(
            sum(capacity(row) for row in with_memory if row["mem_total_bytes"] is not None) / device_seconds)
        idle, busy_idle = idle_split(rows)
        assert (got["idle_device_hours"], got["busy_idle_device_hours"]) == (pytest.approx(idle, abs=1e-9),
                                                                             pytest.approx(busy_idle, abs=1e-9)), job
        assert got["idle_device_hours"] + got["busy_idle_device_hours"] <= got["device_hours"] + 1e-9


def test_what_is_not_measured_is_named_per_row_not_invented(warehouse: Warehouse) -> None:
    stored = {row["job_id"]: row for row in warehouse.query("SELECT * FROM efficiency WHERE grain = 'job'")}
    old = stored["old"]  # an A100: no GPM readings
    assert (old["sm_active"], old["tensor_active"], old["sm_coverage"]) == (None, None, 0.0)
    assert old["unmeasured"] == "sm_active, tensor_active"
    mig = stored["mig3"]  # a MIG instance: SM activity only; its board has the energy and no util_compute
    assert mig["busy_share"] is None and mig["kwh_per_busy_device_hour"] is None
    assert mig["unmeasured"] == "busy_share, tensor_active, mem_bw_active, energy"
    assert stored["spin"]["unmeasured"] is None


def test_busy_but_idle_time_is_priced_beside_idle_time_never_twice(warehouse: Warehouse) -> None:
    stored = {row["job_id"]: row for row in warehouse.query("SELECT * FROM efficiency WHERE grain = 'job'")}
    spin = stored["spin"]
    assert spin["busy_share"] == pytest.approx(0.97) and spin["sm_active"] < 0.05
    assert spin["busy_idle_device_hours"] == pytest.approx(2 * HOURS)  # two GPUs, every hour
    assert spin["busy_idle_cost"] == pytest.approx(2 * HOURS * 3.5)
    old = stored["old"]  # idle a quarter of the time by util_compute; nothing is busy but idle without SM readings
    assert (old["idle_device_hours"], old["busy_idle_device_hours"]) == (pytest.approx(HOURS / 4), 0.0)
    assert old["idle_cost"] == pytest.approx(HOURS / 4 * 2.1)
    # a MIG instance has no driver figure: its low-SM time is busy but idle, at its price (3/7 of its board's)
    assert stored["mig3"]["busy_idle_device_hours"] == pytest.approx(HOURS / 2)
    assert stored["mig3"]["busy_idle_cost"] == pytest.approx(HOURS / 2 * 3.5 * 3 / 7)
    costs = warehouse.query("SELECT sum(busy_idle_device_hours) AS h, sum(busy_idle_cost) AS c FROM costs "
                            "WHERE job_id = 'spin'")[0]
    assert (costs["h"], costs["c"]) == (pytest.approx(2 * HOURS), pytest.approx(2 * HOURS * 3.5))


def test_a_higher_sm_threshold_moves_time_from_busy_to_busy_but_idle_and_none_from_idle(warehouse: Warehouse,
                                                                                       ) -> None:
    before = {row["job_id"]: row for row in warehouse.query("SELECT * FROM efficiency WHERE grain = 'job'")}
    after = {row["job_id"]: row for row in warehouse.query("SELECT * FROM efficiency WHERE grain = 'job'",
                                                           sm_idle_threshold=0.25)}
    assert after["mig3"]["busy_idle_device_hours"] == pytest.approx(HOURS)  # 0.2 and 0.02 both below 0.25
    assert after["old"]["idle_device_hours"] == before["old"]["idle_device_hours"]
    with pytest.raises(ValueError, match=r"sm_idle_threshold .* below idle_threshold"):
        AnalysisSettings(idle_threshold=0.2, sm_idle_threshold=0.1)


def test_tenants_and_models_add_up_their_jobs(warehouse: Warehouse) -> None:
    rows = warehouse.query("SELECT * FROM efficiency")
    jobs = [row for row in rows if row["grain"] == "job"]
    for grain, key in (("tenant", ("cluster", "tenant", "model")), ("model", ("model",))):
        for row in (row for row in rows if row["grain"] == grain):
            parts = [job for job in jobs if all(job[name] == row[name] for name in key)]
            for measure in ("device_hours", "idle_device_hours", "busy_idle_device_hours"):
                assert row[measure] == pytest.approx(sum(part[measure] for part in parts)), (grain, measure)
            assert row["mem_peak_bytes"] == max((part["mem_peak_bytes"] for part in parts
                                                 if part["mem_peak_bytes"] is not None), default=None)
    shared = {row["tenant"]: row for row in rows if row["grain"] == "tenant" and row["tenant"] in ("vision",
                                                                                                   "ranking")}
    # the shared device: 3/4 of its time vision's, 1/4 ranking's
    share_b = next(row for row in jobs if row["job_id"] == "share-b")
    assert share_b["device_hours"] == pytest.approx(HOURS / 4) and shared["ranking"]["device_hours"] > 0


# -- right-sizing -------------------------------------------------------------------------------------------------


def test_rightsizing_recommends_the_cheapest_fit_with_its_evidence_and_saving(warehouse: Warehouse) -> None:
    got = {row["job_id"]: row for row in warehouse.query("SELECT * FROM rightsizing")}
    # big needs 70 GB x 1.2: nothing smaller holds it; short ran 2 h (< 12); gappy is half covered; the shared
    # device's jobs need 0.6 (upper edge 0.65) x 1.2 of the SMs: more than a 4g slice, and an A100 is too slow;
    # part-a and part-b would fit a slice but share a device; ranks has a busy rank; no-util has no compute
    # reading judged (SM activity without a driver figure is not counted); zero-mem has no memory capacity
    assert set(got) == {"spin", "old", "mig3"}
    expected = {  # job: (recommended, its price per device-hour, the compute reading judged)
        "spin": (f"{H100} MIG 1g.10gb", 3.5 / 7, "sm_active"),
        "old": (f"{A100} MIG 3g.40gb", 2.1 * 3 / 7, "util_compute"),
        "mig3": (f"{H100} MIG 1g.10gb", 3.5 / 7, "sm_active"),
    }
    current = {"spin": 3.5, "old": 2.1, "mig3": 3.5 * 3 / 7}
    for job, (recommended, price, reading) in expected.items():
        row, rows = got[job], job_rows(warehouse.rows, job)
        assert (row["recommended"], row["change"], row["compute_reading"]) == (recommended, "mig_profile", reading)
        assert row["recommended_per_device_hour"] == pytest.approx(price)
        assert row["per_device_hour"] == pytest.approx(current[job])
        device_hours = sum(capacity(r) for r in rows) / 3600
        assert row["saving_in_period"] == pytest.approx((current[job] - price) * device_hours)
        assert row["saving_per_day"] == pytest.approx((current[job] - price) * device_hours / (HOURS / 24))
        for q, column in ((0.99, "compute_quantile"), (0.5, "compute_p50"), (0.95, "compute_p95")):
            assert row[column] == pytest.approx(upper_bin_edge_of_quantile(rows, reading, q)), (job, column)
        assert row["mem_peak_bytes"] == max(r["mem_used_bytes"] for r in rows)
        hourly_peaks = defaultdict(int)  # the job's largest memory reading in each hour, over its devices
        for r in rows:
            hour = r["ts"] // 3_600_000
            hourly_peaks[hour] = max(hourly_peaks[hour], r["mem_used_bytes"])
        assert row["mem_p95_bytes"] == pytest.approx(float(np.quantile(list(hourly_peaks.values()), 0.95)))
        assert row["observed_hours"] == pytest.approx(HOURS)
    # the evidence of the MIG job: its SM activity is of 3/7 of a board; 1/7 holds it with 20 % headroom
    assert got["mig3"]["compute_needed"] == pytest.approx(0.25 * 3 / 7 * 1.2)
    assert got["mig3"]["recommended_memory_bytes"] == pytest.approx(10 * GB)


def test_rightsizing_is_as_conservative_as_configured(warehouse: Warehouse) -> None:
    # more headroom: spin's 6 GB x 3 no longer fits 10 GB, nor its 0.05 x 3 of the SMs a 1g slice: 2g.20gb does
    roomy = {row["job_id"]: row for row in warehouse.query(
        "SELECT * FROM rightsizing", rightsizing={"headroom": 2.0})}
    assert roomy["spin"]["recommended"] == f"{H100} MIG 2g.20gb"
    assert "old" not in roomy  # 0.35 x 3 of the SMs: more than any slice but the whole board
    strict = warehouse.query("SELECT job_id FROM rightsizing", rightsizing={"min_hours": 20})
    assert strict == []
    # at the median, the pooled time of the ranks job is idle: its busiest device-hour still needs a whole board
    median = {row["job_id"]: row for row in warehouse.query("SELECT * FROM rightsizing",
                                                            rightsizing={"percentile": 0.5})}
    assert "ranks" not in median and median["spin"]["compute_quantile"] == pytest.approx(0.05)
    # without MIG profiles the cheaper model is what fits: the A100 at half the throughput holds spin's 0.05 x 2
    models = {row["job_id"]: row for row in warehouse.query(
        "SELECT * FROM rightsizing", rightsizing={"mig_boards": []})}
    assert (models["spin"]["recommended"], models["spin"]["change"]) == (A100, "model")
    assert models["spin"]["recommended_per_device_hour"] == pytest.approx(2.1)


def test_the_canned_queries_rank_by_money(warehouse: Warehouse) -> None:
    inefficient = warehouse.query(canned_queries()["inefficient_jobs"].read_text())
    waste = [row["wasted_cost"] for row in inefficient]
    assert waste == sorted(waste, reverse=True)
    assert [row["job_id"] for row in inefficient[:2]] == ["ranks", "spin"]  # 3 x 14 and 2 x 14 busy-idle hours
    rightsizing = warehouse.query(canned_queries()["rightsizing"].read_text())
    savings = [row["saving_per_day"] for row in rightsizing]
    assert savings == sorted(savings, reverse=True) and len(savings) == 3


def test_mig_instances_are_priced_from_their_board_and_profile_or_not_at_all(warehouse: Warehouse) -> None:
    prices = warehouse.query(f"""SELECT device_hour_price('{H100} MIG 1g.10gb+me') AS media,
                                        device_hour_price('{H100} MIG 9g.99gb') AS unknown,
                                        device_hour_price('{A100} MIG 3g.40gb') AS a100""")[0]
    assert prices["media"] == pytest.approx(3.5 / 7) and prices["unknown"] is None
    assert prices["a100"] == pytest.approx(2.1 * 3 / 7)


def test_a_warehouse_written_before_these_measures_still_answers(tmp_path: Path) -> None:
    """Files written without the new measures' columns (an older version's) bind in every view; their rows count
    as not known: device-time, but no coverage of the new measures."""
    old_schema = pa.schema([field for field in UTIL_1D.schema if field.name not in NEW_MEASURES])
    path = tmp_path / "warehouse"
    row = {name: [None] for name in old_schema.names} | {
        "window_start": [datetime(2026, 12, 1, tzinfo=UTC)], "cluster": ["c"], "tenant": ["t"], "job_id": ["j"],
        "vendor": ["nvidia"], "model": [H100], "samples": [10], "device_seconds": [3600.0],
        "util_known_seconds": [3600.0], "busy_seconds": [1800.0], "sm_active_known_seconds": [3600.0],
        "sm_active_seconds": [360.0], "util_hist_seconds": [[0.0] * 10 + [3600.0] + [0.0] * 9], "month": ["2026-12"]}
    write_deltalake(f"{path}/util_1d", pa.table(row, schema=old_schema), partition_by=["month"])
    settings = AnalysisSettings(warehouse=str(path), prices=PRICES)
    connection = Catalog.open(settings, parse_since("2026-11-01")).connect()
    (job,) = connection.sql("SELECT * FROM efficiency WHERE grain = 'job'").to_arrow_table().to_pylist()
    assert (job["device_hours"], job["busy_share"], job["sm_active"]) == (1.0, 0.5, 0.1)
    assert (job["mem_coverage"], job["busy_idle_coverage"], job["busy_idle_device_hours"]) == (0.0, 0.0, 0.0)
    (cost,) = connection.sql("SELECT cost, busy_idle_cost FROM costs").to_arrow_table().to_pylist()
    assert cost == {"cost": 3.5, "busy_idle_cost": 0.0}
    assert connection.sql("SELECT * FROM rightsizing").to_arrow_table().num_rows == 0

"""The rollup math against tests/oracle.py: partials of any split of the rows merge to the figures computed
in plain Python from all of them, for every measure and every column's extremes."""

from __future__ import annotations

import itertools

import polars as pl
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetmeter.pipeline import rollups
from fleetmeter.schemas import warehouse
from fleetmeter.schemas.sample_v1 import rows_to_batch
from fleetmeter.schemas.sample_v1_columns import COLUMNS
from fleetmeter.schemas.warehouse import DEVICE_KEYS, DEVICE_MEASURES, JOB_DEVICE_KEYS, MINUTE_KEYS, WINDOW_KEYS
from tests import oracle
from tests.pipeline.fleet import assert_same_figures
from tests.strategies import valid_rows

START_MS = 1_767_571_200_000


def frame(rows: list[dict[str, object]]) -> pl.DataFrame:
    result = pl.from_arrow(pa.Table.from_batches([rows_to_batch(rows)]))
    assert isinstance(result, pl.DataFrame)
    return result


KEYS = {"cluster": st.sampled_from(["c1", "c2"]), "node": st.sampled_from(["n1", "n2"]),
        "device_uuid": st.sampled_from(["GPU-a", "GPU-b", "MIG-c"]), "vendor": st.sampled_from(["nvidia", "amd"]),
        "model": st.sampled_from(["H100", "MI300X"]), "tenant": st.sampled_from(["t1", "t2"]),
        "job_id": st.sampled_from(["j1", "j2", None])}
#: Rows of every column, extremes included, over three hours (so that minutes, hours and a day boundary mix).
sample_rows = st.lists(valid_rows((START_MS - 3600_000, START_MS + 2 * 3600_000), **KEYS), min_size=1, max_size=60)


def table_rows(frame: pl.DataFrame, keys: tuple[str, ...]) -> dict[tuple[object, ...], dict[str, object]]:
    return {tuple(row[k] for k in keys): row for row in frame.to_dicts()}


def test_the_oracle_knows_every_column_and_every_measure() -> None:
    assert set(oracle.VALID) == set(COLUMNS)
    assert set(oracle.WINDOW_MEASURES) == set(warehouse.UTIL_1M.measure_names)
    assert set(oracle.DEVICE_MEASURES) == set(warehouse.DEVICE_1H.measure_names)


def test_the_rollup_code_makes_the_catalogued_columns() -> None:
    """What the rollup code returns is what schemas/warehouse.py says the tables hold (partition columns aside)."""
    rows = [{"ts": START_MS, "interval_s": 10.0, "cluster": "c", "node": "n", "device_uuid": "a", "device_index": 0,
             "device_kind": "gpu", "vendor": "nvidia", "model": "H100", "tenant": "t", "job_id": "j", "seq": 0}]
    pieces = rollups.minute_pieces(frame(rows))
    minutes = rollups.node_partials(pieces)
    for table, made in ((warehouse.UTIL_1M, minutes), (warehouse.UTIL_1H, rollups.merge(minutes, WINDOW_KEYS, "1h")),
                        (warehouse.DEVICE_1H, rollups.device_hour_partials(pieces)),
                        (warehouse.JOB_DEVICES, rollups.job_device_partials(frame(rows)))):
        stored = [name for name in table.schema.names if name not in table.partition_by]
        assert sorted(made.columns) == sorted(stored), table.name


@settings(max_examples=60, deadline=None)
@given(rows=sample_rows, cuts=st.lists(st.integers(0, 60), max_size=4))
def test_rollups_of_any_split_equal_the_oracle(rows: list[dict[str, object]], cuts: list[int]) -> None:
    """Partials of chunks, merged in reverse order, hold every measure the oracle computes from all the rows."""
    edges = sorted({0, len(rows), *[min(cut, len(rows)) for cut in cuts]})
    chunks = [rows[a:b] for a, b in itertools.pairwise(edges) if b > a]
    pieces = [rollups.minute_pieces(frame(chunk)) for chunk in reversed(chunks)]
    minutes = pl.concat([rollups.node_partials(piece) for piece in pieces])
    for keys, width, every in ((MINUTE_KEYS, "1m", None), (WINDOW_KEYS, "1h", "1h"), (WINDOW_KEYS, "1d", "1d")):
        merged = table_rows(rollups.merge(minutes, keys, every), keys)
        assert_same_figures(merged, oracle.windows(rows, width, with_node=keys == MINUTE_KEYS))
    device_hours = pl.concat([rollups.device_hour_partials(piece) for piece in pieces])
    merged = table_rows(rollups.merge(device_hours, DEVICE_KEYS, measures=DEVICE_MEASURES), DEVICE_KEYS)
    assert_same_figures(merged, oracle.device_hours(rows))
    devices = rollups.merge_job_devices(pl.concat([rollups.job_device_partials(frame(chunk)) for chunk in chunks]))
    assert_same_figures(table_rows(devices, JOB_DEVICE_KEYS), oracle.job_devices(rows))


def test_an_interval_across_minutes_is_split_in_proportion_and_no_window_overflows() -> None:
    """A collector that stalled reports one row of 150 s for each of 8 GPUs, starting 30 s into a minute: each
    of the three minutes it touches holds at most 8 devices x 60 s, and the amounts add up to the row's."""
    rows = [{"ts": START_MS + 30_000, "interval_s": 150.0, "cluster": "c", "node": "n", "device_uuid": f"GPU-{i}",
             "device_index": i, "device_kind": "gpu", "vendor": "nvidia", "model": "H100", "tenant": "t", "seq": 0,
             "util_compute": 0.5, "energy_j": 1500.0, "ecc_corrected": 5, "xid_errors": [31]} for i in range(8)]
    minutes = rollups.node_partials(rollups.minute_pieces(frame(rows))).sort("window_start").to_dicts()
    assert [row["device_seconds"] for row in minutes] == [8 * 30.0, 8 * 60.0, 8 * 60.0]
    assert [row["energy_j"] for row in minutes] == [8 * 300.0, 8 * 600.0, 8 * 600.0]
    assert [row["samples"] for row in minutes] == [8, 0, 0]
    assert sum(row["ecc_corrected"] for row in minutes) == 8 * 5
    assert sum(row["xid_events"] for row in minutes) == 8
    assert all(isinstance(row["ecc_corrected"], int) for row in minutes)


def test_a_mig_mode_gpu_adds_energy_but_not_device_seconds() -> None:
    base = {"ts": START_MS, "interval_s": 10.0, "cluster": "c", "node": "n", "device_index": 0, "vendor": "nvidia",
            "model": "H100", "tenant": "t", "seq": 0, "energy_j": 500.0}
    rows = [base | {"device_uuid": "GPU-0", "device_kind": "gpu", "extras": [("mig.enabled", 1.0)]},
            base | {"device_uuid": "MIG-1", "device_kind": "mig", "parent_uuid": "GPU-0", "energy_j": None,
                    "util_compute": None}]
    (row,) = rollups.merge(rollups.node_partials(rollups.minute_pieces(frame(rows))), WINDOW_KEYS, "1h").to_dicts()
    assert (row["device_seconds"], row["energy_j"], row["samples"]) == (10.0, 500.0, 2)


def test_utilization_on_the_edges_lands_in_the_right_bin_and_a_negative_mig_flag_is_no_mig() -> None:
    base = {"interval_s": 10.0, "cluster": "c", "node": "n", "device_index": 0, "device_kind": "gpu",
            "vendor": "nvidia", "model": "H100", "tenant": "t", "seq": 0}
    rows = [base | {"ts": START_MS, "device_uuid": "a", "util_compute": 1.0},
            base | {"ts": START_MS, "device_uuid": "b", "util_compute": 0.05},
            base | {"ts": START_MS, "device_uuid": "c", "util_compute": 0.0, "extras": [("mig.enabled", -1.0)]}]
    (row,) = rollups.merge(rollups.node_partials(rollups.minute_pieces(frame(rows))), WINDOW_KEYS, "1h").to_dicts()
    histogram = row["util_hist_seconds"]
    assert (histogram[19], histogram[1], histogram[0], sum(histogram)) == (10.0, 10.0, 10.0, 30.0)
    assert row["device_seconds"] == 30.0

"""The rollup math against tests/oracle.py: partials of any split of the rows merge to the figures computed
in plain Python from all of them, for every measure and every column's extremes."""

from __future__ import annotations

import itertools

import polars as pl
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetmeter.pipeline import rollups
from fleetmeter.schemas.sample_v1 import COLUMNS, rows_to_batch
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
    assert set(oracle.WINDOW_MEASURES) == set(rollups.WINDOW_MEASURES)


@settings(max_examples=60, deadline=None)
@given(rows=sample_rows, cuts=st.lists(st.integers(0, 60), max_size=4))
def test_rollups_of_any_split_equal_the_oracle(rows: list[dict[str, object]], cuts: list[int]) -> None:
    """Partials of chunks, merged in reverse order, hold every measure the oracle computes from all the rows."""
    edges = sorted({0, len(rows), *[min(cut, len(rows)) for cut in cuts]})
    chunks = [rows[a:b] for a, b in itertools.pairwise(edges) if b > a]
    minutes = pl.concat([rollups.minute_partials(frame(chunk), 0.05) for chunk in reversed(chunks)])
    for keys, width, every in ((rollups.MINUTE_KEYS, "1m", None), (rollups.WINDOW_KEYS, "1h", "1h"),
                               (rollups.WINDOW_KEYS, "1d", "1d")):
        merged = table_rows(rollups.merge(minutes, keys, every), keys)
        assert_same_figures(merged, oracle.windows(rows, width, with_node=keys == rollups.MINUTE_KEYS))
    devices = rollups.merge_job_devices(pl.concat(
        [rollups.job_device_partials(frame(chunk), 0.05) for chunk in chunks]))
    assert_same_figures(table_rows(devices, rollups.JOB_DEVICE_KEYS), oracle.job_devices(rows))
    assert_same_figures(table_rows(rollups.jobs(devices), rollups.JOB_KEYS), oracle.jobs(rows))


def test_a_mig_mode_gpu_adds_energy_but_not_device_seconds() -> None:
    base = {"ts": START_MS, "interval_s": 10.0, "cluster": "c", "node": "n", "device_index": 0, "vendor": "nvidia",
            "model": "H100", "tenant": "t", "seq": 0, "energy_j": 500.0}
    rows = [base | {"device_uuid": "GPU-0", "device_kind": "gpu", "extras": [("mig.enabled", 1.0)]},
            base | {"device_uuid": "MIG-1", "device_kind": "mig", "parent_uuid": "GPU-0", "energy_j": None,
                    "util_compute": None}]
    (row,) = rollups.merge(rollups.minute_partials(frame(rows), 0.05), rollups.WINDOW_KEYS, "1h").to_dicts()
    assert (row["device_seconds"], row["energy_j"], row["samples"]) == (10.0, 500.0, 2)


def test_utilization_on_the_edges_lands_in_the_right_bin_and_a_negative_mig_flag_is_no_mig() -> None:
    base = {"interval_s": 10.0, "cluster": "c", "node": "n", "device_index": 0, "device_kind": "gpu",
            "vendor": "nvidia", "model": "H100", "tenant": "t", "seq": 0}
    rows = [base | {"ts": START_MS, "device_uuid": "a", "util_compute": 1.0},
            base | {"ts": START_MS, "device_uuid": "b", "util_compute": 0.05},
            base | {"ts": START_MS, "device_uuid": "c", "util_compute": 0.0, "extras": [("mig.enabled", -1.0)]}]
    (row,) = rollups.merge(rollups.minute_partials(frame(rows), 0.05), rollups.WINDOW_KEYS, "1h").to_dicts()
    histogram = row[rollups.HISTOGRAM]
    assert (histogram[19], histogram[1], histogram[0], sum(histogram)) == (10.0, 10.0, 10.0, 30.0)
    assert (row["device_seconds"], row["idle_seconds"]) == (30.0, 10.0)
    idle_job = [base | {"ts": START_MS + i * 10_000, "device_uuid": "a", "job_id": "j", "util_compute": 0.0}
                for i in range(3)]
    (job,) = rollups.jobs(rollups.job_device_partials(frame(idle_job), 0.05)).to_dicts()
    assert (job["idle_fraction"], job["busy_fraction"]) == (1.0, 0.0)

"""The rollup math: partials of any split of the rows merge to the rollup of all of them."""

from __future__ import annotations

import itertools

import polars as pl
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleetmeter.pipeline import rollups
from fleetmeter.schemas.sample_v1 import rows_to_batch

START_MS = 1_767_571_200_000


def frame(rows: list[dict[str, object]]) -> pl.DataFrame:
    result = pl.from_arrow(pa.Table.from_batches([rows_to_batch(rows)]))
    assert isinstance(result, pl.DataFrame)
    return result


sample_rows = st.lists(st.fixed_dictionaries({
    "ts": st.integers(0, 3 * 3600).map(lambda s: START_MS + s * 1000),
    "interval_s": st.sampled_from([1.0, 10.0, 30.0]),
    "cluster": st.just("c"), "node": st.sampled_from(["n1", "n2"]), "device_uuid": st.sampled_from(["a", "b"]),
    "device_index": st.just(0), "device_kind": st.just("gpu"), "vendor": st.just("nvidia"),
    "model": st.sampled_from(["H100", "A100"]), "tenant": st.sampled_from(["t1", "t2"]),
    "job_id": st.sampled_from(["j1", "j2", None]), "seq": st.just(0),
    "util_compute": st.none() | st.floats(0, 1), "energy_j": st.none() | st.floats(0, 1e4),
    "mem_used_bytes": st.none() | st.integers(0, 1 << 40),
}), min_size=1, max_size=60)


def by_key(partials: pl.DataFrame, keys: tuple[str, ...]) -> dict[tuple[object, ...], dict[str, object]]:
    return {tuple(row[k] for k in keys): row for row in partials.to_dicts()}


@settings(max_examples=60, deadline=None)
@given(rows=sample_rows, cuts=st.lists(st.integers(0, 60), max_size=4))
def test_partials_merge_in_any_split(rows: list[dict[str, object]], cuts: list[int]) -> None:
    edges = sorted({0, len(rows), *[min(cut, len(rows)) for cut in cuts]})
    chunks = [rows[a:b] for a, b in itertools.pairwise(edges) if b > a]
    partials = pl.concat([rollups.minute_partials(frame(chunk), 0.05) for chunk in reversed(chunks)])
    whole = rollups.minute_partials(frame(rows), 0.05)
    for keys, every in ((rollups.MINUTE_KEYS, None), (rollups.WINDOW_KEYS, "1h"), (rollups.WINDOW_KEYS, "1d")):
        merged = by_key(rollups.merge(partials, keys, every), keys)
        expected = by_key(rollups.merge(whole, keys, every), keys)
        assert merged.keys() == expected.keys()
        for key, row in expected.items():
            for name in rollups.SUMS:
                assert merged[key][name] == pytest.approx(row[name], rel=1e-9, abs=1e-6)
            assert merged[key]["mem_used_max_bytes"] == row["mem_used_max_bytes"]
            assert merged[key][rollups.HISTOGRAM] == pytest.approx(row[rollups.HISTOGRAM], rel=1e-9, abs=1e-6)
    # and the histogram accounts for every util-known second
    total = rollups.merge(whole, rollups.WINDOW_KEYS, "1d")
    for row in total.to_dicts():
        assert sum(row[rollups.HISTOGRAM]) == pytest.approx(row["util_known_seconds"])


def test_a_mig_mode_gpu_adds_energy_but_not_device_seconds() -> None:
    base = {"ts": START_MS, "interval_s": 10.0, "cluster": "c", "node": "n", "device_index": 0, "vendor": "nvidia",
            "model": "H100", "tenant": "t", "seq": 0, "energy_j": 500.0}
    rows = [base | {"device_uuid": "GPU-0", "device_kind": "gpu", "extras": [("mig.enabled", 1.0)]},
            base | {"device_uuid": "MIG-1", "device_kind": "mig", "parent_uuid": "GPU-0", "energy_j": None,
                    "util_compute": None}]
    (row,) = rollups.merge(rollups.minute_partials(frame(rows), 0.05), rollups.WINDOW_KEYS, "1h").to_dicts()
    assert (row["device_seconds"], row["energy_j"], row["samples"]) == (10.0, 500.0, 2)

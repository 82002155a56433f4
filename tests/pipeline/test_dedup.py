"""The keys a partition has stored: a replay is dropped, the rows of a shared device's owners are not."""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl
import pytest

from fleetmeter.pipeline import dedup
from fleetmeter.pipeline.dedup import KEY_SCHEMA, StoredKeys

TS = datetime(2026, 11, 22, 10, 0, tzinfo=UTC)


def keys(*owners: tuple[str, str | None]) -> pl.DataFrame:
    return pl.DataFrame([{"device_uuid": "GPU-1", "ts": TS, "tenant": tenant, "job_id": job}
                         for tenant, job in owners], schema=KEY_SCHEMA)


def test_shared_rows_are_kept_and_replays_of_any_of_them_dropped() -> None:
    stored = StoredKeys(lambda hour: pl.DataFrame(schema=KEY_SCHEMA), cache_hours=2)
    first = keys(("a", "j1"), ("b", "j2"), ("unallocated", None))
    assert stored.new_rows(first).height == 3  # one device, one interval, three owners
    stored.remember(first)
    replay = keys(("b", "j2"), ("unallocated", None), ("c", None))
    assert stored.new_rows(replay).rows() == [("GPU-1", TS, "c", None)]  # null job ids compare equal
    assert stored.new_rows(keys(("a", "j1"), ("a", "j1"))).is_empty()


def test_keys_whose_hashes_collide_are_told_apart_by_their_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every key hashed alike: only the column-by-column comparison is left to tell them apart."""
    monkeypatch.setattr(dedup, "_hashed", lambda frame: frame.with_columns(pl.lit(7, pl.UInt64).alias("_key_hash")))
    test_shared_rows_are_kept_and_replays_of_any_of_them_dropped()

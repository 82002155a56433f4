"""Which sample keys a partition has already stored, so a replayed sample is counted once.

A key is (device_uuid, ts, tenant, job_id): a device shared by several owners has a row per owner.

A node's messages are keyed by node, so all samples of a device arrive through one Kafka partition and
the partition's own keys are enough. Keys are held per hour of ``ts`` for the hours touched most
recently; an hour not in memory is loaded from the partition's committed files when a row for it
arrives, so late rows are checked as exactly as fresh ones, at the cost of one read.

Keys are compared by a 64-bit hash of the four columns first (hashing is about twenty times cheaper than
sorting or joining on the strings), and only rows whose hash repeats, or matches a stored one, are then
compared column by column: a hash collision costs a closer look, never a lost row.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import polars as pl

KEY = ("device_uuid", "ts", "tenant", "job_id")
KEY_SCHEMA = pl.Schema({"device_uuid": pl.String(), "ts": pl.Datetime("ms", "UTC"), "tenant": pl.String(),
                        "job_id": pl.String()})
HOUR = pl.col("ts").dt.truncate("1h")
_HASH = "_key_hash"
_ROW = "_row"


def _hashed(keys: pl.DataFrame) -> pl.DataFrame:
    return keys.with_columns(pl.struct(KEY).hash().alias(_HASH))


class StoredKeys:
    def __init__(self, load_hour: Callable[[int], pl.DataFrame], cache_hours: int) -> None:
        """``load_hour(hour_start_ms)`` returns the stored keys of that hour (columns ``KEY``)."""
        self._load_hour = load_hour
        self._cache_hours = cache_hours
        self._hours: OrderedDict[int, pl.DataFrame] = OrderedDict()

    def new_rows(self, rows: pl.DataFrame) -> pl.DataFrame:
        """``rows`` without those already stored or repeated earlier in ``rows`` itself (first one kept)."""
        if rows.is_empty():
            return rows
        frame = _hashed(rows.select(KEY)).with_row_index(_ROW)
        repeated = frame[_HASH].is_duplicated()
        keep = ~repeated
        if repeated.any():  # keep the first of each exact key among the rows whose hash repeats
            firsts = frame.filter(repeated).unique(subset=list(KEY), keep="first", maintain_order=True)
            keep = keep | frame[_ROW].is_in(firsts[_ROW].implode())
        frame = frame.filter(keep)
        stored = pl.concat([self._keys(hour) for hour in self._hours_of(frame)], how="vertical")
        maybe_stored = frame[_HASH].is_in(stored[_HASH].implode())
        if maybe_stored.any():  # drop those whose full key is stored
            really = frame.filter(maybe_stored).join(stored, on=list(KEY), how="semi", nulls_equal=True)
            frame = frame.filter(~frame[_ROW].is_in(really[_ROW].implode()))
        return rows[frame[_ROW]] if frame.height < rows.height else rows

    def remember(self, rows: pl.DataFrame) -> None:
        """Record the keys of rows that have just been committed."""
        for hour in self._hours_of(rows):
            start = pl.lit(hour).cast(pl.Datetime("ms", "UTC"))
            added = _hashed(rows.filter(start == HOUR).select(KEY))
            self._hours[hour] = pl.concat([self._keys(hour), added], how="vertical")

    def _hours_of(self, rows: pl.DataFrame) -> list[int]:
        hours = rows.select(HOUR.dt.epoch("ms").unique().sort()).to_series().to_list()
        return [int(hour) for hour in hours]

    def _keys(self, hour: int) -> pl.DataFrame:
        if hour not in self._hours:
            self._hours[hour] = _hashed(self._load_hour(hour).select(KEY))
            while len(self._hours) > self._cache_hours:
                self._hours.popitem(last=False)
        self._hours.move_to_end(hour)
        return self._hours[hour]

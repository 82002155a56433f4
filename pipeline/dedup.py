"""Which sample keys a partition has already stored, so a replayed sample is counted once.

A key is (device_uuid, ts, tenant, job_id): a device shared by several owners has a row per owner.

A node's messages are keyed by node, so all samples of a device arrive through one Kafka partition and
the partition's own keys are enough. Keys are held per hour of ``ts`` for the hours touched most
recently; an hour not in memory is loaded from the partition's committed files when a row for it
arrives, so late rows are checked as exactly as fresh ones, at the cost of one read.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import polars as pl

KEY = ("device_uuid", "ts", "tenant", "job_id")
KEY_SCHEMA = pl.Schema({"device_uuid": pl.String(), "ts": pl.Datetime("ms", "UTC"), "tenant": pl.String(),
                        "job_id": pl.String()})
HOUR = pl.col("ts").dt.truncate("1h")


class StoredKeys:
    def __init__(self, load_hour: Callable[[int], pl.DataFrame], cache_hours: int) -> None:
        """``load_hour(hour_start_ms)`` returns the stored keys of that hour (columns ``KEY``)."""
        self._load_hour = load_hour
        self._cache_hours = cache_hours
        self._hours: OrderedDict[int, pl.DataFrame] = OrderedDict()

    def new_rows(self, rows: pl.DataFrame) -> pl.DataFrame:
        """``rows`` without those already stored or repeated earlier in ``rows`` itself (first one kept),
        sorted by key: the order samples are stored in, so sorting once serves both."""
        ordered = rows.sort(KEY, maintain_order=True, nulls_last=True)
        repeated = pl.all_horizontal(pl.col(name).eq_missing(pl.col(name).shift(1)) for name in KEY)
        unique = ordered.filter(~repeated)
        if unique.is_empty():
            return unique
        stored = pl.concat([self._keys(hour) for hour in self._hours_of(unique)], how="vertical")
        return unique.join(stored, on=list(KEY), how="anti", maintain_order="left", nulls_equal=True)

    def remember(self, rows: pl.DataFrame) -> None:
        """Record the keys of rows that have just been committed."""
        for hour in self._hours_of(rows):
            start = pl.lit(hour).cast(pl.Datetime("ms", "UTC"))
            added = rows.filter(start == HOUR).select(KEY)
            self._hours[hour] = pl.concat([self._keys(hour), added], how="vertical")

    def _hours_of(self, rows: pl.DataFrame) -> list[int]:
        hours = rows.select(HOUR.dt.epoch("ms").unique().sort()).to_series().to_list()
        return [int(hour) for hour in hours]

    def _keys(self, hour: int) -> pl.DataFrame:
        if hour not in self._hours:
            self._hours[hour] = self._load_hour(hour).select(KEY)
            while len(self._hours) > self._cache_hours:
                self._hours.popitem(last=False)
        self._hours.move_to_end(hour)
        return self._hours[hour]

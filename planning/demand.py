"""Daily demand and supply series from the hourly rollups.

Per hour, a (cluster, tenant, model)'s device-hours are the devices it held on average in that hour. Per day:
allocated device-hours (their sum), busy device-hours (the busy share of them), and peak devices (the 95th
percentile of the day's 24 hourly values, hours without rows counting as none). The pool of a (cluster,
model) is every tenant together (tenant ``*``). Supply is the devices present per day: the largest hourly
device-hours of every row of the model, unallocated ones included.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import polars as pl

from fleetmeter.sql.catalog import Catalog

POOL = "*"
MEASURES = ("allocated_device_hours", "busy_device_hours", "peak_devices")

_HOURLY = """
SELECT window_start AS hour, cluster, tenant, model, allocated,
       sum(device_seconds) / 3600 AS devices, sum(busy_seconds) / 3600 AS busy
FROM util_1h
WHERE window_start >= getvariable('since')
GROUP BY ALL
"""


def hourly(catalog: Catalog) -> pl.DataFrame:
    """Device-hours and busy device-hours per hour, cluster, tenant and model (``allocated`` beside)."""
    frame = pl.from_arrow(catalog.connect().sql(_HOURLY).to_arrow_table())
    assert isinstance(frame, pl.DataFrame)
    return frame.with_columns(pl.col("hour").dt.replace_time_zone("UTC"))


def last_full_day(hours: pl.DataFrame, now: datetime | None = None) -> date | None:
    """The last day every cluster's rollups hold to its end: the current hour is never complete, and a cluster
    whose collectors lag holds the others back (the series of all end on the same day)."""
    if hours.is_empty():
        return None
    complete = (now or datetime.now(UTC)).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    last_full: list[date] = []
    for latest in hours.group_by("cluster").agg(pl.col("hour").max())["hour"].to_list():
        done = min(latest, complete)
        last_full.append(done.date() if done.hour == 23 else done.date() - timedelta(days=1))
    return min(last_full)


def daily_demand(hours: pl.DataFrame, through: date) -> pl.DataFrame:
    """Per cluster, tenant (and the pool, ``*``), model, measure and day: ``y``. Each series runs from its
    first day with demand to ``through``, days without any as zero."""
    allocated = hours.filter(pl.col("allocated"))
    pool = allocated.group_by("hour", "cluster", "model").agg(pl.col("devices").sum(), pl.col("busy").sum())
    frames = [allocated.select("hour", "cluster", "tenant", "model", "devices", "busy"),
              pool.with_columns(tenant=pl.lit(POOL)).select("hour", "cluster", "tenant", "model", "devices", "busy")]
    every = pl.concat(frames)
    filled = _full_hours(every, ("cluster", "tenant", "model"), through)
    daily = filled.group_by("cluster", "tenant", "model", pl.col("hour").dt.date().alias("day")).agg(
        pl.col("devices").sum().alias("allocated_device_hours"),
        pl.col("busy").sum().alias("busy_device_hours"),
        pl.col("devices").quantile(0.95, interpolation="linear").alias("peak_devices"))
    return daily.unpivot(index=["cluster", "tenant", "model", "day"], on=list(MEASURES), variable_name="measure",
                         value_name="y").sort("cluster", "tenant", "model", "measure", "day")


def daily_supply(hours: pl.DataFrame, through: date) -> pl.DataFrame:
    """Devices present per cluster, model and day: the day's largest hourly device-hours, every tenant and
    the unallocated together."""
    present = hours.group_by("hour", "cluster", "model").agg(pl.col("devices").sum())
    return (present.filter(pl.col("hour").dt.date() <= through)
            .group_by("cluster", "model", pl.col("hour").dt.date().alias("day")).agg(pl.col("devices").max())
            .sort("cluster", "model", "day"))


def _full_hours(frame: pl.DataFrame, keys: tuple[str, ...], through: date) -> pl.DataFrame:
    """Every hour from each key's first through the end of ``through``, hours without rows as zero."""
    last = pl.lit(datetime.combine(through, time(23), tzinfo=UTC)).cast(pl.Datetime("us", "UTC"))
    starts = frame.group_by(keys).agg(pl.col("hour").min().dt.truncate("1d").alias("first"))
    grid = starts.with_columns(hour=pl.datetime_ranges(pl.col("first"), last, interval="1h")).explode("hour")
    grid = grid.drop("first").filter(pl.col("hour").is_not_null())
    return (grid.join(frame, on=[*keys, "hour"], how="left")
            .with_columns(pl.col("devices").fill_null(0.0), pl.col("busy").fill_null(0.0))
            .filter(pl.col("hour").dt.date() <= through))

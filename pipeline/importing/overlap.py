"""Imported rows that would count a device's time twice: rows whose interval overlaps one the warehouse
already holds for the same device (a collector's, with its own scrape times, which the dedup key cannot match)."""

from __future__ import annotations

from datetime import timedelta

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from fleetmeter.pipeline.warehouse.delta import DeltaWarehouse
from fleetmeter.schemas.warehouse import SAMPLES, TIMESTAMP

#: How far before a batch a stored interval may start and still reach into it (longer rows are gaps).
_REACH = timedelta(hours=1)
_TIME = pl.Datetime("us", "UTC")


def covered(warehouse: DeltaWarehouse, rows: pa.RecordBatch) -> pa.BooleanArray:
    """Per row of ``rows``: does a stored sample of its device overlap its interval? Stored samples of one device
    do not overlap each other, so the last one that starts before a row ends is the only one to look at."""
    frame = pl.DataFrame(pl.from_arrow(rows.select(["device_uuid", "ts", "interval_s"]))).with_row_index("row")
    frame = frame.with_columns(pl.col("ts").cast(_TIME))
    frame = frame.with_columns(end=pl.col("ts") + pl.duration(microseconds=(pl.col("interval_s") * 1e6).cast(pl.Int64)))
    first, last = frame["ts"].min(), frame["end"].max()
    assert first is not None and last is not None
    earliest = first - _REACH  # type: ignore[operator]
    within = (pc.field("ts") >= pa.scalar(earliest, TIMESTAMP)) & (pc.field("ts") < pa.scalar(last, TIMESTAMP))
    day, days = earliest.date(), []  # type: ignore[union-attr]
    while day <= last.date():  # type: ignore[union-attr]
        days.append(warehouse.read(SAMPLES.name, (("date", day.isoformat()),), ["device_uuid", "ts", "interval_s"],
                                   within))
        day += timedelta(days=1)
    stored = pl.concat(days).filter(pl.col("device_uuid").is_in(frame["device_uuid"].unique().implode()))
    if stored.is_empty():
        return pa.array([False] * rows.num_rows)
    stored = stored.select("device_uuid", pl.col("ts").cast(_TIME).alias("stored_ts"),
                           (pl.col("ts").cast(_TIME) + pl.duration(microseconds=(pl.col("interval_s") * 1e6).cast(
                               pl.Int64))).alias("stored_end")).sort("stored_ts")
    probe = frame.with_columns(before_end=pl.col("end") - pl.duration(microseconds=1)).sort("before_end")
    joined = probe.join_asof(stored, left_on="before_end", right_on="stored_ts", by="device_uuid", strategy="backward",
                            check_sortedness=False)  # sorted by the key, so within each device too
    overlap = joined.sort("row").select((pl.col("stored_end") > pl.col("ts")).fill_null(False))
    return overlap.to_series().to_arrow()

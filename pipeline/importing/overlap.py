"""Imported rows that would count a device's time twice: rows whose interval overlaps one the warehouse
already holds for the same device (a collector's, with its own scrape times, which the dedup key cannot match).

A device is its ``device_uuid``; a MIG instance is also its GPU and instance id (``<parent_uuid>/<id>``, from
``extras['mig.gpu_instance_id']``), because an exporter's history names MIG instances so while a collector
names them by their own ``MIG-...`` UUIDs.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

from fleetmeter.pipeline.warehouse.delta import DeltaWarehouse
from fleetmeter.schemas.warehouse import SAMPLES, TIMESTAMP

#: How far before a batch a stored interval may start and still reach into it (longer rows are refused).
_REACH = timedelta(hours=1)
_TIME = pl.Datetime("us", "UTC")
_INSTANCE = "mig.gpu_instance_id"


def covered(warehouse: DeltaWarehouse, rows: pa.RecordBatch) -> pa.BooleanArray:
    """Per row of ``rows``: does a stored sample of its device overlap its interval? Stored samples of one device
    do not overlap each other, so the last one that starts before a row ends is the only one to look at."""
    frame = _intervals(pl.DataFrame(pl.from_arrow(rows))).with_row_index("row")
    first, last = frame["ts"].min(), frame["end"].max()
    assert isinstance(first, datetime) and isinstance(last, datetime)
    earliest = first - _REACH
    names = frame["device"].unique().to_list()
    parents = [name.partition("/")[0] for name in names if "/" in name]
    devices = (pc.field("device_uuid").isin(pa.array(names, pa.string()))
               | pc.field("parent_uuid").isin(pa.array(parents, pa.string())))
    within = (pc.field("ts") >= pa.scalar(earliest, TIMESTAMP)) & (pc.field("ts") < pa.scalar(last, TIMESTAMP))
    within &= devices
    days = []
    day = earliest.date()
    while day <= last.date():
        days.append(warehouse.read(SAMPLES.name, (("date", day.isoformat()),),
                                   ["device_uuid", "parent_uuid", "extras", "ts", "interval_s"], within))
        day += timedelta(days=1)
    stored = _intervals(pl.concat(days)).filter(pl.col("device").is_in(frame["device"].unique().implode()))
    if stored.is_empty():
        return pa.array([False] * rows.num_rows)
    stored = stored.select("device", pl.col("ts").alias("stored_ts"), pl.col("end").alias("stored_end")
                           ).sort("stored_ts")
    probe = frame.with_columns(before_end=pl.col("end") - pl.duration(microseconds=1)).sort("before_end")
    joined = probe.join_asof(stored, left_on="before_end", right_on="stored_ts", by="device", strategy="backward",
                             check_sortedness=False)  # sorted by the key, so within each device too
    overlap = joined.sort("row").select((pl.col("stored_end") > pl.col("ts")).fill_null(False))
    return overlap.to_series().to_arrow()


def _intervals(frame: pl.DataFrame) -> pl.DataFrame:
    """``device`` (the name both sides share), ``ts`` and ``end`` of each row."""
    instance = pl.col("extras").map.get(_INSTANCE)
    device = (pl.when(pl.col("parent_uuid").is_not_null() & instance.is_not_null())
              .then(pl.concat_str(pl.col("parent_uuid"), pl.lit("/"), instance.cast(pl.Int64).cast(pl.String)))
              .otherwise(pl.col("device_uuid")))
    start = pl.col("ts").cast(_TIME)
    return frame.select(device.alias("device"), start.alias("ts"),
                        (start + pl.duration(microseconds=(pl.col("interval_s") * 1e6).cast(pl.Int64))).alias("end"))

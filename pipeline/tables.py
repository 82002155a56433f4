"""The columns of every warehouse table, as empty frames: for readers that must name a table (a DuckDB
view, a Spark schema) before the pipeline has written a file of it. Derived from the code that writes the
tables, so they cannot drift apart."""

from __future__ import annotations

import polars as pl

from fleetmeter.pipeline import quarantine, rollups
from fleetmeter.pipeline.warehouse import layout
from fleetmeter.schemas.sample_v1 import SAMPLE_SCHEMA


def empty(table: str) -> pl.DataFrame:
    """A frame with no rows and the columns and types of ``table`` (one of ``layout.TABLES``)."""
    samples = pl.DataFrame(pl.from_arrow(SAMPLE_SCHEMA.empty_table()))
    threshold = 0.05  # any value: it changes no column
    if table == layout.SAMPLES:
        return samples
    if table == layout.UTIL_1M:
        return rollups.minute_partials(samples, threshold)
    if table in (layout.UTIL_1H, layout.UTIL_1D):
        return rollups.merge(rollups.minute_partials(samples, threshold), rollups.WINDOW_KEYS, "1h")
    if table == layout.JOB_DEVICES:
        return rollups.job_device_partials(samples, threshold)
    if table == layout.JOBS:
        return rollups.jobs(rollups.job_device_partials(samples, threshold))
    if table == layout.QUARANTINE:
        return pl.DataFrame(schema=quarantine.SCHEMA)
    raise ValueError(f"not a warehouse table: {table}")

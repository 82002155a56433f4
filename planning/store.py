"""The tables planning computes, written into the warehouse as Delta tables, replaced whole at each run
(their earlier versions stay readable by time travel until vacuumed)."""

from __future__ import annotations

from datetime import datetime

import polars as pl
import pyarrow as pa
from deltalake import write_deltalake

from fleetmeter.schemas.warehouse import Table, table_uri
from fleetmeter.sql.settings import AnalysisSettings


def replace_table(settings: AnalysisSettings, table: Table, frame: pl.DataFrame, run_at: datetime) -> int:
    """Write ``frame`` (every column of ``table`` but ``run_at``) as the table's new version; rows written."""
    rows = frame.with_columns(run_at=pl.lit(run_at).cast(pl.Datetime("us", "UTC"))).to_arrow()
    data = pa.Table.from_arrays([rows.column(field.name).cast(field.type) for field in table.schema],
                                schema=table.schema)
    write_deltalake(table_uri(settings.warehouse, table.name), data, mode="overwrite", schema_mode="overwrite",
                    storage_options=settings.storage_options or None)
    return int(data.num_rows)

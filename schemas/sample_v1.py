"""Normalized sample schema v1: one row per device per scrape interval.

A row says: this device, during ``[ts, ts + interval_s)``, had these readings and belonged to this
tenant/job. Counters are already per-interval deltas. The meaning of every column, per vendor, is in
``sample_v1.md`` beside this file; a test keeps the two in step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

from fleetmeter.schemas.sample_v1_columns import (
    COLUMN_KINDS,
    COLUMNS,
    SCHEMA_VERSION,
    SCHEMA_VERSION_METADATA_KEY,
    Kind,
)

PROCESS_TYPE = pa.struct([("pid", pa.int64()), ("used_memory_bytes", pa.int64())])
_ARROW_TYPES: dict[Kind, pa.DataType] = {
    "timestamp_ms": pa.timestamp("ms", tz="UTC"),
    "float64": pa.float64(),
    "int32": pa.int32(),
    "int64": pa.int64(),
    "string": pa.string(),
    "list<string>": pa.list_(pa.string()),
    "list<int32>": pa.list_(pa.int32()),
    "list<process>": pa.list_(PROCESS_TYPE),
    "map<string,float64>": pa.map_(pa.string(), pa.float64()),
}
_FIELDS = [pa.field(column.name, _ARROW_TYPES[column.kind], nullable=column.nullable) for column in COLUMN_KINDS]

SAMPLE_SCHEMA: pa.Schema = pa.schema(
    _FIELDS, metadata={SCHEMA_VERSION_METADATA_KEY: SCHEMA_VERSION.encode()}
)


def rows_to_batch(rows: list[dict[str, object]]) -> pa.RecordBatch:
    """Build a record batch of this schema from row dicts keyed by column name (``ts`` in epoch ms)."""
    return columns_to_batch({name: [row.get(name) for row in rows] for name in COLUMNS}, len(rows))


def columns_to_batch(columns: Mapping[str, Any], rows: int) -> pa.RecordBatch:
    """Build a record batch of this schema from columns (lists or NumPy arrays of ``rows`` values, ``ts`` in
    epoch ms); a column not given is null.

    Arrow does not enforce nullability on construction, so required columns are checked here.
    """
    arrays = [pa.array(columns[field.name], field.type) if field.name in columns else pa.nulls(rows, field.type)
              for field in SAMPLE_SCHEMA]
    batch = pa.RecordBatch.from_arrays(arrays, schema=SAMPLE_SCHEMA)
    for field, column in zip(SAMPLE_SCHEMA, batch.columns, strict=True):
        if not field.nullable and column.null_count:
            raise ValueError(f"column {field.name!r} is required but {column.null_count} rows have no value")
    return batch

"""Normalized sample schema v1: one row per device per scrape interval.

A row says: this device, during ``[ts, ts + interval_s)``, had these readings and belonged to this
tenant/job. Counters are already per-interval deltas. The meaning of every column, per vendor, is in
``sample_v1.md`` beside this file; a test keeps the two in step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pyarrow as pa

#: major.minor. A minor bump adds nullable columns only; a major bump means a new topic (``...v2``).
SCHEMA_VERSION = "1.1"
SCHEMA_MAJOR = 1
SCHEMA_VERSION_METADATA_KEY = b"fleetmeter.schema_version"

#: Tenant given to rows that no attribution source claims.
UNALLOCATED_TENANT = "unallocated"

PROCESS_TYPE = pa.struct([("pid", pa.int64()), ("used_memory_bytes", pa.int64())])

_FIELDS: list[pa.Field] = [
    pa.field("ts", pa.timestamp("ms", tz="UTC"), nullable=False),
    pa.field("interval_s", pa.float64(), nullable=False),
    pa.field("cluster", pa.string(), nullable=False),
    pa.field("node", pa.string(), nullable=False),
    pa.field("device_uuid", pa.string(), nullable=False),
    pa.field("device_index", pa.int32(), nullable=False),
    pa.field("device_kind", pa.string(), nullable=False),
    pa.field("parent_uuid", pa.string()),
    pa.field("vendor", pa.string(), nullable=False),
    pa.field("model", pa.string(), nullable=False),
    pa.field("tenant", pa.string(), nullable=False),
    pa.field("job_id", pa.string()),
    pa.field("util_compute", pa.float64()),
    pa.field("util_mem_bw", pa.float64()),
    pa.field("sm_active", pa.float64()),
    pa.field("tensor_active", pa.float64()),
    pa.field("mem_used_bytes", pa.int64()),
    pa.field("mem_total_bytes", pa.int64()),
    pa.field("power_w", pa.float64()),
    pa.field("energy_j", pa.float64()),
    pa.field("temp_c", pa.float64()),
    pa.field("sm_clock_mhz", pa.float64()),
    pa.field("throttle_reasons", pa.list_(pa.string())),
    pa.field("ecc_corrected", pa.int64()),
    pa.field("ecc_uncorrected", pa.int64()),
    pa.field("xid_errors", pa.list_(pa.int32())),
    pa.field("pcie_tx_bytes", pa.int64()),
    pa.field("pcie_rx_bytes", pa.int64()),
    pa.field("nvlink_tx_bytes", pa.int64()),
    pa.field("nvlink_rx_bytes", pa.int64()),
    pa.field("processes", pa.list_(PROCESS_TYPE)),
    pa.field("seq", pa.int64(), nullable=False),
    pa.field("extras", pa.map_(pa.string(), pa.float64())),
    # 1.1: a device shared by several owners has one row per owner
    pa.field("share", pa.float64()),
    pa.field("share_rule", pa.string()),
]

#: Columns added by a minor version: a reader fills them with null on messages of an older minor version.
ADDED_SINCE_1_0 = ("share", "share_rule")
#: Values of ``share_rule``.
SHARE_BY_PROCESS_UTIL = "process_util"
SHARE_EQUALLY = "equal"

SAMPLE_SCHEMA: pa.Schema = pa.schema(
    _FIELDS, metadata={SCHEMA_VERSION_METADATA_KEY: SCHEMA_VERSION.encode()}
)

COLUMNS: tuple[str, ...] = tuple(SAMPLE_SCHEMA.names)


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

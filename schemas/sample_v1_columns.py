"""The sample schema v1 as plain data: each column's name, kind and nullability, and the schema's constants.

Written without pyarrow so that the collector, which encodes rows (``sample_v1_ipc``) but never decodes them,
does not load it (pyarrow, numpy and the pandas that pyarrow's conversions import cost the daemon about 70 MB).
``sample_v1.py`` builds the Arrow schema from these declarations; the meaning of each column is in
``sample_v1.md``.
"""

from __future__ import annotations

from typing import Literal, NamedTuple

#: major.minor. A minor bump adds nullable columns only; a major bump means a new topic (``...v2``).
SCHEMA_VERSION = "1.1"
SCHEMA_MAJOR = 1
SCHEMA_VERSION_METADATA_KEY = b"fleetmeter.schema_version"

#: Tenant given to rows that no attribution source claims.
UNALLOCATED_TENANT = "unallocated"

ADDED_SINCE_1_0 = ("share", "share_rule")
SHARE_BY_PROCESS_UTIL = "process_util"
SHARE_EQUALLY = "equal"

#: The Arrow type of each kind: ``timestamp_ms`` is timestamp[ms, tz=UTC]; ``process`` is
#: struct<pid: int64, used_memory_bytes: int64>; a map's entries are struct<key: string (never null), value>.
Kind = Literal["timestamp_ms", "float64", "int32", "int64", "string", "list<string>", "list<int32>",
               "list<process>", "map<string,float64>"]


class Column(NamedTuple):
    name: str
    kind: Kind
    nullable: bool = True


COLUMN_KINDS: tuple[Column, ...] = (
    Column("ts", "timestamp_ms", nullable=False),
    Column("interval_s", "float64", nullable=False),
    Column("cluster", "string", nullable=False),
    Column("node", "string", nullable=False),
    Column("device_uuid", "string", nullable=False),
    Column("device_index", "int32", nullable=False),
    Column("device_kind", "string", nullable=False),
    Column("parent_uuid", "string"),
    Column("vendor", "string", nullable=False),
    Column("model", "string", nullable=False),
    Column("tenant", "string", nullable=False),
    Column("job_id", "string"),
    Column("util_compute", "float64"),
    Column("util_mem_bw", "float64"),
    Column("sm_active", "float64"),
    Column("tensor_active", "float64"),
    Column("mem_used_bytes", "int64"),
    Column("mem_total_bytes", "int64"),
    Column("power_w", "float64"),
    Column("energy_j", "float64"),
    Column("temp_c", "float64"),
    Column("sm_clock_mhz", "float64"),
    Column("throttle_reasons", "list<string>"),
    Column("ecc_corrected", "int64"),
    Column("ecc_uncorrected", "int64"),
    Column("xid_errors", "list<int32>"),
    Column("pcie_tx_bytes", "int64"),
    Column("pcie_rx_bytes", "int64"),
    Column("nvlink_tx_bytes", "int64"),
    Column("nvlink_rx_bytes", "int64"),
    Column("processes", "list<process>"),
    Column("seq", "int64", nullable=False),
    Column("extras", "map<string,float64>"),
    # 1.1: a device shared by several owners has one row per owner
    Column("share", "float64"),
    Column("share_rule", "string"),
)

COLUMNS: tuple[str, ...] = tuple(column.name for column in COLUMN_KINDS)

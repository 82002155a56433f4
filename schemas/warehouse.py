"""The warehouse contract: each table the pipeline writes and every engine reads, its columns, its Delta Lake
partitioning, and the catalogue of rollup measures with the way each one merges.

The pipeline and the SQL layer both import this module and nothing of each other: the pipeline casts what it
writes to these schemas (a column it does not produce fails the write), the SQL layer names the tables and
types their partition columns from it, and a test checks that ``sql/views.sql`` merges every measure as it is
catalogued here. What each measure means for analysts is in ``docs/warehouse.md``.

Rollup and job tables hold *partials*: rows with equal keys are parts of one row and merge by their
measures' rules (sums add, maxima take the larger, ...), in any order; compaction merges them in place, so a
reader that merges sees the same figures before and after it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

from fleetmeter.schemas.sample_v1 import SAMPLE_SCHEMA

#: Histograms of a 0..1 reading: bins of width 1/20; bin i holds [i/20, (i+1)/20), the last one 1.0 too.
HISTOGRAM_BINS = 20
#: Delta stores timestamps in microseconds, UTC.
TIMESTAMP = pa.timestamp("us", tz="UTC")

Merge = Literal["sum", "max", "min", "sum_bins"]


@dataclass(frozen=True)
class Measure:
    name: str
    merge: Merge  # sum_bins: a list of HISTOGRAM_BINS sums, added element by element
    type: pa.DataType
    description: str


@dataclass(frozen=True)
class Table:
    name: str
    schema: pa.Schema  # every stored column, the partition columns last
    partition_by: tuple[str, ...]
    time_column: str  # the partition columns are derived from it (see PARTITION_COLUMNS)
    keys: tuple[str, ...]  # rows with equal keys are partials of one row; empty: rows are records, never merged
    measures: tuple[Measure, ...]

    @property
    def measure_names(self) -> tuple[str, ...]:
        return tuple(measure.name for measure in self.measures)


#: What each partition column holds, derived from a table's ``time_column`` (UTC).
PARTITION_COLUMNS: dict[str, pa.DataType] = {
    "date": pa.date32(),  # the date of time_column
    "hour": pa.int32(),  # its hour, 0..23
    "month": pa.string(),  # its month, YYYY-MM
}

WINDOW_MEASURES = (
    Measure("samples", "sum", pa.int64(), "sample rows whose interval starts in the window"),
    Measure("device_seconds", "sum", pa.float64(), "capacity held: interval x share, MIG-mode boards left out"),
    Measure("util_known_seconds", "sum", pa.float64(), "device-seconds with a util_compute reading"),
    Measure("busy_seconds", "sum", pa.float64(), "device-seconds x util_compute"),
    Measure("sm_active_seconds", "sum", pa.float64(), "device-seconds x sm_active"),
    Measure("sm_active_known_seconds", "sum", pa.float64(), "device-seconds with an sm_active reading"),
    Measure("tensor_active_seconds", "sum", pa.float64(), "device-seconds x tensor_active"),
    Measure("tensor_active_known_seconds", "sum", pa.float64(), "device-seconds with a tensor_active reading"),
    Measure("energy_j", "sum", pa.float64(), "energy used, joules"),
    Measure("ecc_corrected", "sum", pa.int64(), "corrected ECC errors"),
    Measure("ecc_uncorrected", "sum", pa.int64(), "uncorrected ECC errors"),
    Measure("xid_events", "sum", pa.int64(), "XID error events"),
    Measure("mem_used_max_bytes", "max", pa.int64(), "largest memory reading"),
    Measure("util_hist_seconds", "sum_bins", pa.list_(pa.float64()),
            f"device-seconds per util_compute bin ({HISTOGRAM_BINS} bins of 1/{HISTOGRAM_BINS})"),
    # efficiency (docs/efficiency.md)
    Measure("mem_bw_active_seconds", "sum", pa.float64(), "device-seconds x util_mem_bw"),
    Measure("mem_bw_known_seconds", "sum", pa.float64(), "device-seconds with a util_mem_bw reading"),
    Measure("mem_used_byte_seconds", "sum", pa.float64(), "device-seconds x mem_used_bytes (rows with both "
                                                          "memory readings)"),
    Measure("mem_total_byte_seconds", "sum", pa.float64(), "device-seconds x mem_total_bytes (the same rows)"),
    Measure("mem_known_seconds", "sum", pa.float64(), "device-seconds with mem_used_bytes and mem_total_bytes"),
    Measure("mem_total_max_bytes", "max", pa.int64(), "largest memory capacity reading"),
    Measure("energy_known_seconds", "sum", pa.float64(), "device-seconds with an energy_j reading"),
    Measure("energy_busy_seconds", "sum", pa.float64(), "device-seconds x util_compute of the rows with an energy_j "
                                                        "reading (energy per busy hour)"),
    Measure("shared_seconds", "sum", pa.float64(), "device-seconds of rows of a shared device (share set)"),
    Measure("sm_hist_seconds", "sum_bins", pa.list_(pa.float64()),
            "device-seconds per sm_active bin, of the rows with a util_compute reading and of MIG instances"),
    Measure("util_hist_sm_known_seconds", "sum_bins", pa.list_(pa.float64()),
            "device-seconds per util_compute bin, of the rows with an sm_active reading (busy-but-idle time)"),
)

#: Per device-hour only (``device_1h``): how a device fared, for comparing it with its peers. Weighted by the
#: row's interval x share, a GPU in MIG mode included (its board readings are the only ones it has).
HEALTH_MEASURES = (
    Measure("temp_seconds", "sum", pa.float64(), "seconds x temp_c"),
    Measure("temp_known_seconds", "sum", pa.float64(), "seconds with a temp_c reading"),
    Measure("throttled_seconds", "sum", pa.float64(),
            "seconds held down by heat or a hardware slowdown (hw_thermal, hw_slowdown, sw_thermal)"),
    Measure("throttle_known_seconds", "sum", pa.float64(), "seconds with a throttle_reasons reading"),
)
#: ``device_1h``: the window measures but the histograms (one row per device-hour: kept light), and health.
DEVICE_MEASURES = (*(measure for measure in WINDOW_MEASURES if measure.merge != "sum_bins"), *HEALTH_MEASURES)

JOB_MEASURES = (
    Measure("first_seen", "min", TIMESTAMP, "start of the job's first interval on the device"),
    Measure("last_seen", "max", TIMESTAMP, "end of its last interval on the device"),
    *(measure for measure in WINDOW_MEASURES
      if measure.name in ("samples", "device_seconds", "util_known_seconds", "busy_seconds", "energy_j",
                          "mem_used_max_bytes")),
)

WINDOW_KEYS = ("window_start", "cluster", "tenant", "job_id", "vendor", "model")
MINUTE_KEYS = (*WINDOW_KEYS, "node")
DEVICE_KEYS = (*MINUTE_KEYS, "device_uuid")
JOB_KEYS = ("cluster", "tenant", "job_id")
JOB_DEVICE_KEYS = (*JOB_KEYS, "device_uuid", "vendor", "model", "node")

_SAMPLE_FIELDS = {field.name: field for field in SAMPLE_SCHEMA}
_OWN_FIELDS = {"window_start": pa.field("window_start", TIMESTAMP, nullable=False),
               "ts": pa.field("ts", TIMESTAMP, nullable=False),
               "received_at": pa.field("received_at", TIMESTAMP, nullable=False)}


def _schema(columns: tuple[str, ...], measures: tuple[Measure, ...], partition_by: tuple[str, ...]) -> pa.Schema:
    fields = [_OWN_FIELDS.get(name) or _SAMPLE_FIELDS[name] for name in columns]
    fields += [pa.field(measure.name, measure.type) for measure in measures]
    fields += [pa.field(name, PARTITION_COLUMNS[name], nullable=False) for name in partition_by]
    return pa.schema(fields)


def _rollup(name: str, keys: tuple[str, ...], partition_by: tuple[str, ...],
            measures: tuple[Measure, ...] = WINDOW_MEASURES) -> Table:
    return Table(name, _schema(keys, measures, partition_by), partition_by, "window_start", keys, measures)


SAMPLES = Table(
    "samples",
    _schema(tuple(SAMPLE_SCHEMA.names), (), ("date",)),
    ("date",), "ts", (), ())
UTIL_1M = _rollup("util_1m", MINUTE_KEYS, ("date", "hour"))
UTIL_1H = _rollup("util_1h", WINDOW_KEYS, ("date",))
UTIL_1D = _rollup("util_1d", WINDOW_KEYS, ("month",))
#: Per device and hour (and owner): what compares a device with its peers (stragglers, sick hardware).
DEVICE_1H = _rollup("device_1h", DEVICE_KEYS, ("date",), DEVICE_MEASURES)
JOB_DEVICES = Table("job_devices", _schema(JOB_DEVICE_KEYS, JOB_MEASURES, ("date",)), ("date",), "first_seen",
                    JOB_DEVICE_KEYS, JOB_MEASURES)
QUARANTINE = Table(
    "quarantine",
    pa.schema([
        pa.field("received_at", TIMESTAMP, nullable=False),  # when the worker read the message
        pa.field("topic", pa.string()), pa.field("partition", pa.int32()), pa.field("offset", pa.int64()),
        pa.field("kafka_ts", TIMESTAMP),  # the producer's timestamp; null outside 1970..9999
        pa.field("key", pa.string()), pa.field("reason", pa.string()), pa.field("detail", pa.string()),
        pa.field("row_json", pa.string()),  # a rejected row's values (ts as epoch ms)
        pa.field("payload", pa.binary()),  # a message rejected whole: its bytes (the first MiB)
        pa.field("date", pa.date32(), nullable=False),
    ]),
    ("date",), "received_at", (), ())

#: Every table, in the order a commit writes them: ``samples`` last, so that a sample the warehouse holds has
#: its rollups stored too (the pipeline's deduplication reads ``samples``).
TABLES: dict[str, Table] = {table.name: table for table in (QUARANTINE, JOB_DEVICES, DEVICE_1H, UTIL_1D, UTIL_1H,
                                                             UTIL_1M, SAMPLES)}
_PLAN_KEYS = [pa.field("run_at", TIMESTAMP, nullable=False), pa.field("cluster", pa.string(), nullable=False),
              pa.field("model", pa.string(), nullable=False)]
#: Demand forecasts (``fleetmeter forecast``): per cluster, tenant ('*': the pool, every tenant together), model
#: and measure, the daily history they were fitted on (``actual``) and the forecast with its intervals; the method
#: chosen, its and seasonal-naive's backtest MASE, and the share of backtest days inside the 80 % interval.
FORECASTS = Table("forecasts", pa.schema([
    *_PLAN_KEYS, pa.field("tenant", pa.string(), nullable=False), pa.field("measure", pa.string(), nullable=False),
    pa.field("day", pa.date32(), nullable=False), pa.field("actual", pa.float64()), pa.field("mean", pa.float64()),
    pa.field("lo_80", pa.float64()), pa.field("hi_80", pa.float64()), pa.field("lo_95", pa.float64()),
    pa.field("hi_95", pa.float64()), pa.field("method", pa.string()), pa.field("method_mase", pa.float64()),
    pa.field("baseline_mase", pa.float64()), pa.field("coverage_80", pa.float64()), pa.field("note", pa.string()),
]), (), "day", (), ())
#: The capacity plan that goes with them: per cluster, model and quarter, supply against the pool's demand.
CAPACITY_PLAN = Table("capacity_plan", pa.schema([
    *_PLAN_KEYS, pa.field("quarter", pa.string(), nullable=False), pa.field("quarter_start", pa.date32()),
    pa.field("supply_devices", pa.float64()), pa.field("demand_devices", pa.float64()),
    pa.field("headroom_devices", pa.float64()), pa.field("runs_out_on", pa.date32()),
    pa.field("add_devices", pa.int64()), pa.field("level", pa.int32()), pa.field("note", pa.string()),
]), (), "quarter_start", (), ())
#: Anomalies (``fleetmeter anomalies``): one row per anomaly, updated while it lasts (``end`` null while open).
ANOMALIES = Table("anomalies", pa.schema([
    pa.field("id", pa.string(), nullable=False), pa.field("kind", pa.string(), nullable=False),
    pa.field("status", pa.string(), nullable=False),  # open or resolved
    pa.field("cluster", pa.string()), pa.field("tenant", pa.string()), pa.field("job_id", pa.string()),
    pa.field("node", pa.string()), pa.field("device_uuid", pa.string()), pa.field("model", pa.string()),
    pa.field("start", TIMESTAMP, nullable=False), pa.field("end", TIMESTAMP),
    pa.field("seen_until", TIMESTAMP, nullable=False),  # the end of the data it was last seen in
    pa.field("severity", pa.float64()),  # how far from normal, in the detector's own unit (docs/anomalies.md)
    pa.field("evidence", pa.string()),  # the figures that triggered it, as JSON
    pa.field("cost_impact", pa.float64()),  # wasted so far, in the configured currency
    pa.field("cost_per_day", pa.float64()),  # if it goes on
    pa.field("first_detected", TIMESTAMP, nullable=False), pa.field("last_detected", TIMESTAMP, nullable=False),
    pa.field("notified", pa.string()),  # the last status sent to the webhook (fleetmeter anomalies --watch)
]), (), "start", (), ())
#: Tables computed from the others and replaced whole at each run (not written by the pipeline).
DERIVED: dict[str, Table] = {table.name: table for table in (FORECASTS, CAPACITY_PLAN, ANOMALIES)}

#: The rollup tables and the width of their windows, finest first.
ROLLUP_WIDTHS = {UTIL_1M.name: "1m", UTIL_1H.name: "1h", UTIL_1D.name: "1d"}


def table_uri(warehouse: str, table: str) -> str:
    """Where a table lives: a directory (or object-store prefix) of its own under the warehouse's root."""
    return f"{warehouse.rstrip('/')}/{table}"


#: The Delta table property naming the Kafka consumer group whose offsets a table's transactions record.
OWNER_PROPERTY = "fleetmeter.consumer_group"


def app_id(group: str, topic: str, topic_id: str | None, partition: int) -> str:
    """The Delta application-transaction id of one Kafka partition's commits: its version is the next offset.

    The topic's id is part of it: offsets of a topic created anew start again and mean nothing to the old one.
    """
    return f"fleetmeter/{group}/{topic}/{topic_id or '-'}/{partition}"

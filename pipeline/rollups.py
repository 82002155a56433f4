"""The rollup math: sample rows -> mergeable partial aggregates per window, tenant, job, vendor and model.

Every measure is a sum, a max, a min or a fixed-bin histogram of sums, so partials from different
flushes, late rows, restarts and Kafka partitions merge in any order with :func:`merge`. Rates are
never stored: readers divide stored sums (``busy_seconds / util_known_seconds``).

Device time counts capacity: a row of a shared device counts ``interval_s x share``; a GPU in MIG mode
(extras ``mig.enabled``) adds its board readings (energy, errors) but not its seconds, which its MIG
instances' rows report (schemas/sample_v1.md).
A sample belongs wholly to the window its interval starts in.
"""

from __future__ import annotations

import polars as pl

HISTOGRAM_BINS = 20  # util_compute bins of width 0.05; bin i holds [i/20, (i+1)/20), the last one 1.0 too
HISTOGRAM = "util_hist_seconds"
_BIN_COLUMNS = [f"_util_bin_{i:02d}" for i in range(HISTOGRAM_BINS)]

WINDOW_KEYS = ("window_start", "cluster", "tenant", "job_id", "vendor", "model")
MINUTE_KEYS = (*WINDOW_KEYS, "node")
JOB_KEYS = ("cluster", "tenant", "job_id")
JOB_DEVICE_KEYS = (*JOB_KEYS, "device_uuid", "vendor", "model", "node")

SUMS = (
    "samples", "device_seconds", "util_known_seconds", "busy_seconds", "idle_seconds",
    "sm_active_seconds", "sm_active_known_seconds", "tensor_active_seconds", "tensor_active_known_seconds",
    "energy_j", "ecc_corrected", "ecc_uncorrected", "xid_events",
)
MAXIMA = ("mem_used_max_bytes",)
WINDOW_MEASURES = (*SUMS, *MAXIMA, HISTOGRAM)

#: Integer measures (the rest are float64 seconds and joules).
_COUNTS = ("samples", "ecc_corrected", "ecc_uncorrected", "xid_events", "mem_used_max_bytes")


def _is_mig_parent() -> pl.Expr:
    return (pl.col("extras").map.get("mig.enabled") > 0).fill_null(False)


def _seconds_where(value: str) -> pl.Expr:
    return pl.when(pl.col(value).is_not_null()).then(pl.col("_capacity_s")).otherwise(0.0)


def row_measures(samples: pl.DataFrame, idle_threshold: float) -> pl.DataFrame:
    """Per-row contributions to every measure, beside the sample's own columns."""
    share = pl.col("share").fill_null(1.0)  # a device shared by several owners: each row has its share
    capacity = pl.when(_is_mig_parent()).then(0.0).otherwise(pl.col("interval_s") * share)
    bins = (pl.col("util_compute") * HISTOGRAM_BINS).floor().clip(0, HISTOGRAM_BINS - 1).cast(pl.Int32)
    frame = samples.with_columns(_capacity_s=capacity, _bin=bins)
    return frame.with_columns(
        samples=pl.lit(1, dtype=pl.Int64),
        device_seconds=pl.col("_capacity_s"),
        util_known_seconds=_seconds_where("util_compute"),
        busy_seconds=(pl.col("util_compute") * pl.col("_capacity_s")).fill_null(0.0),
        idle_seconds=pl.when(pl.col("util_compute") < idle_threshold).then(pl.col("_capacity_s")).otherwise(0.0),
        sm_active_seconds=(pl.col("sm_active") * pl.col("_capacity_s")).fill_null(0.0),
        sm_active_known_seconds=_seconds_where("sm_active"),
        tensor_active_seconds=(pl.col("tensor_active") * pl.col("_capacity_s")).fill_null(0.0),
        tensor_active_known_seconds=_seconds_where("tensor_active"),
        energy_j=pl.col("energy_j").fill_null(0.0),
        ecc_corrected=pl.col("ecc_corrected").fill_null(0),
        ecc_uncorrected=pl.col("ecc_uncorrected").fill_null(0),
        xid_events=pl.col("xid_errors").list.len().fill_null(0).cast(pl.Int64),
        mem_used_max_bytes=pl.col("mem_used_bytes"),
        **{column: pl.when(pl.col("_bin") == i).then(pl.col("_capacity_s")).otherwise(0.0)
           for i, column in enumerate(_BIN_COLUMNS)},
    )


def _aggregations() -> list[pl.Expr]:
    return ([pl.col(name).sum() for name in (*SUMS, *_BIN_COLUMNS)]
            + [pl.col(name).max() for name in MAXIMA])


def _finish(frame: pl.DataFrame, keys: tuple[str, ...]) -> pl.DataFrame:
    packed = frame.with_columns(pl.concat_list(_BIN_COLUMNS).alias(HISTOGRAM)).drop(_BIN_COLUMNS)
    packed = packed.with_columns(pl.col(name).cast(pl.Int64) for name in _COUNTS)
    return packed.select(*keys, *WINDOW_MEASURES).sort(keys, nulls_last=True)


def _unpack(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(
        pl.col(HISTOGRAM).list.get(i).alias(column) for i, column in enumerate(_BIN_COLUMNS)
    ).drop(HISTOGRAM)


def minute_partials(samples: pl.DataFrame, idle_threshold: float) -> pl.DataFrame:
    """``util_1m`` partials of ``samples`` (rows of sample schema v1, already deduplicated)."""
    measured = row_measures(samples, idle_threshold).with_columns(window_start=pl.col("ts").dt.truncate("1m"))
    return _finish(measured.group_by(MINUTE_KEYS).agg(_aggregations()), MINUTE_KEYS)


def merge(partials: pl.DataFrame, keys: tuple[str, ...], every: str | None = None) -> pl.DataFrame:
    """Merge partials that share their keys; with ``every``, first widen ``window_start`` to that width."""
    frame = _unpack(partials)
    if every is not None:
        frame = frame.with_columns(pl.col("window_start").dt.truncate(every))
    return _finish(frame.group_by(keys).agg(_aggregations()), keys)


def job_device_partials(samples: pl.DataFrame, idle_threshold: float) -> pl.DataFrame:
    """Per job and device: when it was seen and what it did (rows without a job are left out)."""
    measured = row_measures(samples.filter(pl.col("job_id").is_not_null()), idle_threshold)
    interval = pl.duration(milliseconds=(pl.col("interval_s") * 1000).round().cast(pl.Int64))
    return merge_job_devices(measured.with_columns(first_seen=pl.col("ts"), last_seen=pl.col("ts") + interval))


_JOB_SUMS = ("samples", "device_seconds", "util_known_seconds", "busy_seconds", "idle_seconds", "energy_j")


def _job_aggregations() -> list[pl.Expr]:
    return [pl.col("first_seen").min(), pl.col("last_seen").max(),
            *[pl.col(name).sum() for name in _JOB_SUMS], pl.col("mem_used_max_bytes").max()]


def merge_job_devices(partials: pl.DataFrame) -> pl.DataFrame:
    return partials.group_by(JOB_DEVICE_KEYS).agg(_job_aggregations()).sort(JOB_DEVICE_KEYS)


def jobs(job_devices: pl.DataFrame) -> pl.DataFrame:
    """One row per job from its per-device rows: the sums, and the fractions a reader asks for first.

    Devices are counted exactly: a device's rows all come through one Kafka partition (keyed by node).
    """
    known = pl.when(pl.col("util_known_seconds") > 0).then(pl.col("util_known_seconds"))
    return job_devices.group_by(JOB_KEYS).agg(
        *_job_aggregations(), pl.col("device_uuid").n_unique().cast(pl.Int64).alias("devices"),
    ).with_columns(
        device_hours=pl.col("device_seconds") / 3600,
        busy_fraction=pl.col("busy_seconds") / known,
        idle_fraction=pl.col("idle_seconds") / known,
    ).sort(JOB_KEYS)

"""The rollup math: sample rows -> mergeable partials per window, tenant, job, vendor and model (and node, for
minutes), per device and hour, and per job and device. The measures and how each merges are catalogued in
``schemas/warehouse.py``; this module computes them.

Device time counts capacity: a row of a shared device counts ``interval_s x share``; a GPU in MIG mode
(extras ``mig.enabled``) adds its board readings (energy, errors) but not its seconds, which its MIG
instances' rows report (schemas/sample_v1.md). Rates are never stored: readers divide stored sums
(``busy_seconds / util_known_seconds``), and idle time is read off the histogram at the reader's threshold.

Windows are exact: a row whose interval crosses a minute boundary is split between the minutes in
proportion to time (every summed measure), so a window never holds more device-seconds than devices x its
length. Hours and days are merged from minutes, whose edges they share. Event counts (ECC, XID) stay
integers: the events are taken as spread evenly over the interval, and each minute gets those that fall in
it (the running count at each edge rounded half up, in integer milliseconds), so the pieces add up to the
row's count. ``samples`` counts the rows whose interval starts in the window.
"""

from __future__ import annotations

import polars as pl
import pyarrow as pa

from fleetmeter.schemas.warehouse import (
    DEVICE_KEYS,
    DEVICE_MEASURES,
    HEALTH_MEASURES,
    HISTOGRAM_BINS,
    JOB_DEVICE_KEYS,
    JOB_MEASURES,
    MINUTE_KEYS,
    WINDOW_MEASURES,
    Measure,
)

_MINUTE_MS = 60_000
#: Each histogram (a ``sum_bins`` measure): the reading it bins, and the rows it counts (their capacity).
_HISTOGRAMS = {
    "util_hist_seconds": ("util_compute", pl.col("util_compute").is_not_null()),
    # a MIG instance has no util_compute: its SM activity is all it has; a GPU without a utilization reading is
    # left out (nothing says its time was busy)
    "sm_hist_seconds": ("sm_active", pl.col("sm_active").is_not_null()
                        & (pl.col("util_compute").is_not_null() | (pl.col("device_kind") == "mig"))),
    "util_hist_sm_known_seconds": ("util_compute",
                                   pl.col("util_compute").is_not_null() & pl.col("sm_active").is_not_null()),
}
#: A piece carries each histogram as one column per bin.
_BINS = {name: [f"_{name}_{i:02d}" for i in range(HISTOGRAM_BINS)] for name in _HISTOGRAMS}
_BIN_COLUMNS = [column for columns in _BINS.values() for column in columns]
#: Measures split by time in proportion (the others are counts, maxima or histograms).
_PROPORTIONAL = (*(measure.name for measure in (*WINDOW_MEASURES, *HEALTH_MEASURES)
                   if measure.merge == "sum" and measure.name not in ("samples", "ecc_corrected", "ecc_uncorrected",
                                                                      "xid_events")),
                 *_BIN_COLUMNS)
_EVENT_COUNTS = ("ecc_corrected", "ecc_uncorrected", "xid_events")
#: The columns of a minute piece that windows sum: every measure, the histograms as their bins.
_PIECE_MEASURES = (*(measure.name for measure in (*WINDOW_MEASURES, *HEALTH_MEASURES) if measure.merge != "sum_bins"),
                   *_BIN_COLUMNS)
#: Throttle reasons that mean the device is held down by heat or a hardware fault, not by its power cap or idling.
_HELD_DOWN = ["hw_thermal", "hw_slowdown", "sw_thermal"]

#: The polars type of each measure but the histograms, from the catalogue's Arrow type.
_SCALAR_TYPES = {measure.name: pl.from_arrow(pa.array([], measure.type)).dtype  # type: ignore[union-attr]
                 for measure in (*WINDOW_MEASURES, *HEALTH_MEASURES) if measure.merge != "sum_bins"}


def _is_mig_parent() -> pl.Expr:
    return (pl.col("extras").map.get("mig.enabled") > 0).fill_null(False)


def _seconds_where(value: str) -> pl.Expr:
    return pl.when(pl.col(value).is_not_null()).then(pl.col("_capacity_s")).otherwise(0.0)


def row_measures(samples: pl.LazyFrame) -> pl.LazyFrame:
    """Per-row contributions to every measure, beside the sample's own columns (lazy: a caller that selects some
    measures has only those computed)."""
    share = pl.col("share").fill_null(1.0)  # a device shared by several owners: each row has its share
    capacity = pl.when(_is_mig_parent()).then(0.0).otherwise(pl.col("interval_s") * share)
    frame = samples.with_columns(_capacity_s=capacity, _health_s=pl.col("interval_s") * share)
    health = pl.col("_health_s")
    both_memory = pl.col("mem_used_bytes").is_not_null() & pl.col("mem_total_bytes").is_not_null()
    return frame.with_columns(
        samples=pl.lit(1, dtype=pl.Int64),
        device_seconds=pl.col("_capacity_s"),
        util_known_seconds=_seconds_where("util_compute"),
        busy_seconds=(pl.col("util_compute") * pl.col("_capacity_s")).fill_null(0.0),
        sm_active_seconds=(pl.col("sm_active") * pl.col("_capacity_s")).fill_null(0.0),
        sm_active_known_seconds=_seconds_where("sm_active"),
        tensor_active_seconds=(pl.col("tensor_active") * pl.col("_capacity_s")).fill_null(0.0),
        tensor_active_known_seconds=_seconds_where("tensor_active"),
        energy_j=pl.col("energy_j").fill_null(0.0),
        ecc_corrected=pl.col("ecc_corrected").fill_null(0),
        ecc_uncorrected=pl.col("ecc_uncorrected").fill_null(0),
        xid_events=pl.col("xid_errors").list.len().fill_null(0).cast(pl.Int64),
        mem_used_max_bytes=pl.col("mem_used_bytes"),
        mem_bw_active_seconds=(pl.col("util_mem_bw") * pl.col("_capacity_s")).fill_null(0.0),
        mem_bw_known_seconds=_seconds_where("util_mem_bw"),
        mem_used_byte_seconds=pl.when(both_memory).then(pl.col("mem_used_bytes") * pl.col("_capacity_s"))
        .otherwise(0.0),
        mem_total_byte_seconds=pl.when(both_memory).then(pl.col("mem_total_bytes") * pl.col("_capacity_s"))
        .otherwise(0.0),
        mem_known_seconds=pl.when(both_memory).then(pl.col("_capacity_s")).otherwise(0.0),
        mem_total_max_bytes=pl.col("mem_total_bytes"),
        energy_known_seconds=_seconds_where("energy_j"),
        energy_busy_seconds=pl.when(pl.col("energy_j").is_not_null())
        .then((pl.col("util_compute") * pl.col("_capacity_s")).fill_null(0.0)).otherwise(0.0),
        shared_seconds=pl.when(pl.col("share").is_not_null()).then(pl.col("_capacity_s")).otherwise(0.0),
        temp_seconds=(pl.col("temp_c") * health).fill_null(0.0),
        temp_known_seconds=pl.when(pl.col("temp_c").is_not_null()).then(health).otherwise(0.0),
        throttled_seconds=pl.when(pl.col("throttle_reasons").list.eval(pl.element().is_in(_HELD_DOWN)).list.any())
        .then(health).otherwise(0.0),
        throttle_known_seconds=pl.when(pl.col("throttle_reasons").is_not_null()).then(health).otherwise(0.0),
    ).pipe(_with_bins)


def _with_bins(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Each histogram's bin columns: a row's capacity in the bin its reading falls in, if the row counts (the bin's
    index computed once per histogram: a third faster than a condition per bin)."""
    index = {f"_{name}": pl.when(counted).then((pl.col(reading) * HISTOGRAM_BINS).floor().clip(0, HISTOGRAM_BINS - 1)
                                                .cast(pl.Int8))
             for name, (reading, counted) in _HISTOGRAMS.items()}
    return frame.with_columns(**index).with_columns(
        pl.when(pl.col(f"_{name}") == i).then(pl.col("_capacity_s")).otherwise(0.0).alias(column)
        for name in _HISTOGRAMS for i, column in enumerate(_BINS[name])
    ).drop(index)


def _events_before(count: pl.Expr, offset_ms: pl.Expr, duration_ms: pl.Expr) -> pl.Expr:
    """Of ``count`` events spread evenly over an interval of ``duration_ms``, those in its first ``offset_ms``:
    ``count x offset / duration`` rounded half up, in integers (exact; fits int64 for any valid count)."""
    return (2 * count * offset_ms + duration_ms) // (2 * duration_ms)


def minute_pieces(samples: pl.DataFrame) -> pl.DataFrame:
    """Each row of ``samples`` (sample schema v1, already deduplicated) once per minute its interval overlaps,
    with its measures scaled to the part of it in that minute; ``window_start`` is the minute. What every
    window's partials are summed from."""
    return window_pieces(samples, _MINUTE_MS)


def window_pieces(samples: pl.DataFrame, width_ms: int) -> pl.DataFrame:
    """:func:`minute_pieces` for windows of ``width_ms`` (a divisor of a day): hour pieces make every table but
    ``util_1m`` for hourly history at a sixtieth of the rows (the benchmarks)."""
    keys = [key for key in DEVICE_KEYS if key != "window_start"]
    measured = row_measures(samples.lazy()).select(*keys, "ts", "interval_s", *_PIECE_MEASURES).collect()
    start_ms = pl.col("ts").dt.epoch("ms")
    end_ms = start_ms.cast(pl.Float64) + pl.col("interval_s") * 1000
    first = start_ms // width_ms
    frame = measured.with_columns(_start_ms=start_ms, _end_ms=end_ms, _first=first,
                                  _minutes=((end_ms / width_ms).ceil().cast(pl.Int64) - first).clip(1))
    whole = frame.filter(pl.col("_minutes") == 1).with_columns(_window=pl.col("_first"))
    crossing = frame.filter(pl.col("_minutes") > 1)
    if not crossing.is_empty():
        window = pl.col("_first") + pl.col("_piece")
        start = pl.col("_start_ms")
        lower = pl.max_horizontal(start.cast(pl.Float64), (window * width_ms).cast(pl.Float64))
        upper = pl.min_horizontal(pl.col("_end_ms"), ((window + 1) * width_ms).cast(pl.Float64))
        duration = pl.col("_end_ms") - start
        whole_ms = (pl.col("interval_s") * 1000).round().cast(pl.Int64)  # >= 1: the interval crosses an edge
        pieces = crossing.with_columns(_piece=pl.int_ranges(0, pl.col("_minutes"))).explode("_piece").with_columns(
            _window=window,
            _share=(upper - lower) / duration,
            _ms_before=(window * width_ms - start).clip(0, whole_ms),
            _ms_after=((window + 1) * width_ms - start).clip(0, whole_ms),
            _whole_ms=whole_ms,
        )
        pieces = pieces.with_columns(
            *[pl.col(name) * pl.col("_share") for name in _PROPORTIONAL],
            *[(_events_before(pl.col(name), pl.col("_ms_after"), pl.col("_whole_ms"))
               - _events_before(pl.col(name), pl.col("_ms_before"), pl.col("_whole_ms"))).alias(name)
              for name in _EVENT_COUNTS],
            samples=(pl.col("_piece") == 0).cast(pl.Int64),
        ).drop("_piece", "_share", "_ms_before", "_ms_after", "_whole_ms")
        whole = pl.concat([whole, pieces], how="vertical")
    return whole.with_columns(
        window_start=(pl.col("_window") * width_ms).cast(pl.Datetime("ms", "UTC")),
    )


def _aggregations(measures: tuple[Measure, ...]) -> list[pl.Expr]:
    expressions = []
    for measure in measures:
        if measure.merge == "sum_bins":
            expressions += [pl.col(column).sum() for column in _BINS[measure.name]]
        else:
            expressions.append(getattr(pl.col(measure.name), measure.merge)())
    return expressions


def _finish(frame: pl.DataFrame, keys: tuple[str, ...], measures: tuple[Measure, ...]) -> pl.DataFrame:
    histograms = [measure.name for measure in measures if measure.merge == "sum_bins"]
    frame = frame.with_columns(pl.concat_list(_BINS[name]).alias(name) for name in histograms)
    names = [measure.name for measure in measures]
    return frame.with_columns(pl.col(name).cast(_SCALAR_TYPES[name]) for name in names if name in _SCALAR_TYPES
                              ).select(*keys, *names)


def _unpack(frame: pl.DataFrame) -> pl.DataFrame:
    histograms = [name for name in _BINS if name in frame.columns]
    return frame.with_columns(
        pl.col(name).list.get(i).alias(column)
        for name in histograms for i, column in enumerate(_BINS[name])
    ).drop(histograms)


def node_partials(pieces: pl.DataFrame) -> pl.DataFrame:
    """Partials per window of the pieces and node: ``util_1m``'s of :func:`minute_pieces`, what ``util_1h`` and
    ``util_1d`` are merged from."""
    return _finish(pieces.group_by(MINUTE_KEYS).agg(_aggregations(WINDOW_MEASURES)), MINUTE_KEYS, WINDOW_MEASURES)


def device_hour_partials(pieces: pl.DataFrame) -> pl.DataFrame:
    """``device_1h`` partials of :func:`minute_pieces`."""
    hours = pieces.with_columns(pl.col("window_start").dt.truncate("1h"))
    return _finish(hours.group_by(DEVICE_KEYS).agg(_aggregations(DEVICE_MEASURES)), DEVICE_KEYS, DEVICE_MEASURES)


def merge(partials: pl.DataFrame, keys: tuple[str, ...], every: str | None = None,
          measures: tuple[Measure, ...] = WINDOW_MEASURES) -> pl.DataFrame:
    """Merge partials that share their keys; with ``every``, first widen ``window_start`` to that width."""
    frame = _unpack(partials)
    if every is not None:
        frame = frame.with_columns(pl.col("window_start").dt.truncate(every))
    return _finish(frame.group_by(keys).agg(_aggregations(measures)), keys, measures)


def job_device_partials(samples: pl.DataFrame) -> pl.DataFrame:
    """Per job and device: when it was seen and what it did (rows without a job are left out)."""
    measured = row_measures(samples.lazy().filter(pl.col("job_id").is_not_null()))
    interval = pl.duration(milliseconds=(pl.col("interval_s") * 1000).round().cast(pl.Int64))
    spans = measured.with_columns(first_seen=pl.col("ts"), last_seen=pl.col("ts") + interval)
    return merge_job_devices(spans.select(*JOB_DEVICE_KEYS, *(measure.name for measure in JOB_MEASURES)).collect())


def merge_job_devices(partials: pl.DataFrame) -> pl.DataFrame:
    """Merge job-device partials that share their keys."""
    return partials.group_by(JOB_DEVICE_KEYS).agg(_aggregations(JOB_MEASURES))

-- fleetmeter's analyst views (DuckDB). `fleetmeter sql` and `fleetmeter query` run this file after
-- defining, from the warehouse and the configuration:
--
--   stored.<table>   each warehouse table's Delta snapshot, as stored: samples, util_1m, util_1h,
--                    util_1d, device_1h, job_devices, quarantine (schemas/warehouse.py, docs/warehouse.md)
--   prices           model_pattern (a GLOB), per_device_hour, per_kwh: the configured price list
--   idle_threshold   variable: util_compute below it is idle (a multiple of 0.05, a histogram bin edge)
--   sm_idle_threshold  variable: busy time with sm_active below it is busy but idle (likewise; docs/efficiency.md)
--   mig_profiles     model_pattern (a GLOB over boards), profile, memory_share, compute_share: the MIG catalogue
--   rightsizing_*    variables: headroom, percentile, min_hours, min_coverage (docs/efficiency.md)
--   since            variable: where the canned queries (sql/queries/) start, a UTC midnight
--   economics        model_pattern, purchase_price, depreciation_years, hosting_per_year, support_per_year,
--                    cloud_per_hour, throughput: what owning or renting a device of a model costs (TCO)
--   pue, per_kwh     variables: facility power per device power; the energy price of the TCO (NULL: prices')
--   stored.forecasts, stored.capacity_plan   written by `fleetmeter forecast` (empty until it runs)
--   stored.anomalies written by `fleetmeter anomalies`
--
-- The stored rollups and job_devices hold partials (several rows per key until compaction merges them);
-- the views below merge them, so each key appears once. Every ratio is computed from sums (busy_seconds / util_known_seconds), never by
-- averaging ratios. Capacity counts MIG instances, not the MIG-mode GPUs that hold them (schemas/sample_v1.md).

SET TimeZone = 'UTC';

-- util_compute histograms (20 bins of 0.05, device-seconds) add bin by bin: an aggregate. Twenty plain
-- sums, not list_reduce over list(h), which evaluates a lambda per partial and took most of a query's time.
CREATE OR REPLACE MACRO hist_add(h) AS
    [sum(h[1]), sum(h[2]), sum(h[3]), sum(h[4]), sum(h[5]),
     sum(h[6]), sum(h[7]), sum(h[8]), sum(h[9]), sum(h[10]),
     sum(h[11]), sum(h[12]), sum(h[13]), sum(h[14]), sum(h[15]),
     sum(h[16]), sum(h[17]), sum(h[18]), sum(h[19]), sum(h[20])];
-- The device-seconds of a histogram below a threshold (a multiple of 0.05): its first bins.
CREATE OR REPLACE MACRO hist_below(h, threshold) AS list_sum(h[1:CAST(round(threshold * 20) AS INTEGER)]);
-- The device-seconds below the idle threshold.
CREATE OR REPLACE MACRO hist_idle(h) AS hist_below(h, getvariable('idle_threshold'));
-- Busy but idle (docs/efficiency.md): time with sm_active below its threshold that is not idle by util_compute.
-- The time of rows idle by util_compute is taken off the low-SM time; exact where sm_active <= util_compute (no SM
-- is active without a kernel running) and sm_idle_threshold >= idle_threshold (the settings enforce it), and never
-- more than that: idle and busy-but-idle time never overlap.
CREATE OR REPLACE MACRO busy_idle(sm_hist, util_hist_sm_known) AS
    greatest(hist_below(sm_hist, getvariable('sm_idle_threshold'))
             - coalesce(hist_idle(util_hist_sm_known), 0), 0);
-- The q-quantile of a histogram's reading: the upper edge of the bin where the cumulative time reaches q of the
-- total (never below the true quantile, at most a bin's width above it); NULL for an empty histogram.
CREATE OR REPLACE MACRO hist_quantile(h, q) AS CASE WHEN list_sum(h) > 0 THEN
    (len(list_filter(list_transform(range(1, 21), lambda i: list_sum(h[1:i])), lambda c: c < q * list_sum(h))) + 1)
    / 20 END;
CREATE OR REPLACE MACRO ratio(part, whole) AS CASE WHEN whole > 0 THEN part / whole END;

-- Every stored rollup partial, its width beside it (node only in 1-minute rows).
CREATE OR REPLACE VIEW rollup_partials AS
    SELECT '1m' AS width, * EXCLUDE (date, hour) FROM stored.util_1m
    UNION ALL BY NAME SELECT '1h' AS width, * EXCLUDE (date) FROM stored.util_1h
    UNION ALL BY NAME SELECT '1d' AS width, * EXCLUDE (month) FROM stored.util_1d;

-- One row per width and key. idle_seconds follows the idle_threshold variable, read off the histogram.
CREATE OR REPLACE VIEW rollups AS
WITH merged AS (
    SELECT width, window_start, cluster, tenant, job_id, vendor, model, node,
           sum(samples) AS samples,
           sum(device_seconds) AS device_seconds,
           sum(util_known_seconds) AS util_known_seconds,
           sum(busy_seconds) AS busy_seconds,
           sum(sm_active_seconds) AS sm_active_seconds,
           sum(sm_active_known_seconds) AS sm_active_known_seconds,
           sum(tensor_active_seconds) AS tensor_active_seconds,
           sum(tensor_active_known_seconds) AS tensor_active_known_seconds,
           sum(energy_j) AS energy_j,
           sum(ecc_corrected) AS ecc_corrected,
           sum(ecc_uncorrected) AS ecc_uncorrected,
           sum(xid_events) AS xid_events,
           max(mem_used_max_bytes) AS mem_used_max_bytes,
           hist_add(util_hist_seconds) AS util_hist_seconds,
           sum(mem_bw_active_seconds) AS mem_bw_active_seconds,
           sum(mem_bw_known_seconds) AS mem_bw_known_seconds,
           sum(mem_used_byte_seconds) AS mem_used_byte_seconds,
           sum(mem_total_byte_seconds) AS mem_total_byte_seconds,
           sum(mem_known_seconds) AS mem_known_seconds,
           max(mem_total_max_bytes) AS mem_total_max_bytes,
           sum(energy_known_seconds) AS energy_known_seconds,
           sum(energy_busy_seconds) AS energy_busy_seconds,
           sum(shared_seconds) AS shared_seconds,
           hist_add(sm_hist_seconds) AS sm_hist_seconds,
           hist_add(util_hist_sm_known_seconds) AS util_hist_sm_known_seconds
    FROM rollup_partials
    GROUP BY ALL
)
SELECT *,
       tenant <> 'unallocated' AS allocated,
       device_seconds / 3600 AS device_hours,
       hist_idle(util_hist_seconds) AS idle_seconds,
       busy_idle(sm_hist_seconds, util_hist_sm_known_seconds) AS busy_idle_seconds,
       ratio(busy_seconds, util_known_seconds) AS utilization,
       ratio(hist_idle(util_hist_seconds), util_known_seconds) AS idle_fraction,
       ratio(sm_active_seconds, sm_active_known_seconds) AS sm_active,
       ratio(tensor_active_seconds, tensor_active_known_seconds) AS tensor_active,
       ratio(mem_bw_active_seconds, mem_bw_known_seconds) AS mem_bw_active,
       energy_j / 3.6e6 AS energy_kwh
FROM merged;

CREATE OR REPLACE VIEW util_1m AS SELECT * EXCLUDE (width) FROM rollups WHERE width = '1m';
CREATE OR REPLACE VIEW util_1h AS SELECT * EXCLUDE (width, node) FROM rollups WHERE width = '1h';
CREATE OR REPLACE VIEW util_1d AS SELECT * EXCLUDE (width, node) FROM rollups WHERE width = '1d';

-- One row per hour, device and owner (several owners in an hour: a job that ended, a shared device), with the
-- window measures but the histogram, and the device's health: temperature and time held down by heat or a fault.
CREATE OR REPLACE VIEW device_1h AS
WITH merged AS (
    SELECT window_start, cluster, tenant, job_id, vendor, model, node, device_uuid,
           sum(samples) AS samples,
           sum(device_seconds) AS device_seconds,
           sum(util_known_seconds) AS util_known_seconds,
           sum(busy_seconds) AS busy_seconds,
           sum(sm_active_seconds) AS sm_active_seconds,
           sum(sm_active_known_seconds) AS sm_active_known_seconds,
           sum(tensor_active_seconds) AS tensor_active_seconds,
           sum(tensor_active_known_seconds) AS tensor_active_known_seconds,
           sum(energy_j) AS energy_j,
           sum(ecc_corrected) AS ecc_corrected,
           sum(ecc_uncorrected) AS ecc_uncorrected,
           sum(xid_events) AS xid_events,
           max(mem_used_max_bytes) AS mem_used_max_bytes,
           sum(mem_bw_active_seconds) AS mem_bw_active_seconds,
           sum(mem_bw_known_seconds) AS mem_bw_known_seconds,
           sum(mem_used_byte_seconds) AS mem_used_byte_seconds,
           sum(mem_total_byte_seconds) AS mem_total_byte_seconds,
           sum(mem_known_seconds) AS mem_known_seconds,
           max(mem_total_max_bytes) AS mem_total_max_bytes,
           sum(energy_known_seconds) AS energy_known_seconds,
           sum(energy_busy_seconds) AS energy_busy_seconds,
           sum(shared_seconds) AS shared_seconds,
           sum(temp_seconds) AS temp_seconds,
           sum(temp_known_seconds) AS temp_known_seconds,
           sum(throttled_seconds) AS throttled_seconds,
           sum(throttle_known_seconds) AS throttle_known_seconds
    FROM stored.device_1h
    GROUP BY ALL
)
SELECT *,
       tenant <> 'unallocated' AS allocated,
       device_seconds / 3600 AS device_hours,
       ratio(busy_seconds, util_known_seconds) AS utilization,
       ratio(sm_active_seconds, sm_active_known_seconds) AS sm_active,
       ratio(tensor_active_seconds, tensor_active_known_seconds) AS tensor_active,
       ratio(mem_bw_active_seconds, mem_bw_known_seconds) AS mem_bw_active,
       ratio(temp_seconds, temp_known_seconds) AS temp_c,
       ratio(throttled_seconds, throttle_known_seconds) AS throttled_share,
       energy_j / 3.6e6 AS energy_kwh
FROM merged;

CREATE OR REPLACE VIEW samples AS SELECT * FROM stored.samples;
CREATE OR REPLACE VIEW quarantine AS SELECT * FROM stored.quarantine;

-- A MIG instance's model is its board's and its profile: 'NVIDIA H100 80GB HBM3 MIG 1g.10gb' (sample_v1.md).
-- The profile is named without its media extensions (+me): they change no share of memory or SMs.
CREATE OR REPLACE MACRO mig_board(m) AS nullif(regexp_extract(m, '^(.+) MIG (\S+)$', 1), '');
CREATE OR REPLACE MACRO mig_profile(m) AS nullif(regexp_replace(regexp_extract(m, '^(.+) MIG (\S+)$', 2), '\+me$', ''),
                                                 '');
-- A profile of a board in the MIG catalogue (the most specific pattern that lists it): its share of the board.
CREATE OR REPLACE MACRO mig_compute_share(board_model, profile_name) AS
    (SELECT arg_max(compute_share, length(model_pattern)) FROM mig_profiles
     WHERE board_model GLOB model_pattern AND profile = profile_name);
CREATE OR REPLACE MACRO mig_memory_share(board_model, profile_name) AS
    (SELECT arg_max(memory_share, length(model_pattern)) FROM mig_profiles
     WHERE board_model GLOB model_pattern AND profile = profile_name);
-- The price of a device-hour of a model, from the most specific (longest) matching pattern. A MIG instance's is
-- that of a pattern naming MIG, else its board's price x its profile's compute share; an instance of a profile
-- the catalogue lacks has none (the report names it), never its whole board's.
CREATE OR REPLACE MACRO listed_price(m, mig_only) AS
    (SELECT arg_max(per_device_hour, length(model_pattern)) FROM prices
     WHERE m GLOB model_pattern AND (NOT mig_only OR model_pattern LIKE '%MIG%'));
CREATE OR REPLACE MACRO device_hour_price(m) AS
    CASE WHEN mig_board(m) IS NULL THEN listed_price(m, false)
         ELSE coalesce(listed_price(m, true),
                       listed_price(mig_board(m), false) * mig_compute_share(mig_board(m), mig_profile(m))) END;

-- The price of each model seen.
CREATE OR REPLACE VIEW model_prices AS
SELECT seen.model,
       any_value(device_hour_price(seen.model)) AS per_device_hour,
       arg_max(p.per_kwh, length(p.model_pattern)) FILTER (WHERE p.per_kwh IS NOT NULL) AS per_kwh
FROM (SELECT DISTINCT model FROM stored.util_1d) AS seen
LEFT JOIN prices AS p ON seen.model GLOB p.model_pattern
GROUP BY seen.model;

-- Every rollup row (each width: 1m, 1h, 1d) priced. A device-hour is charged to whoever held it; wasted_cost is the
-- price of the idle device-hours (energy left aside), busy_idle_cost that of the busy-but-idle ones (never the
-- same hours: docs/efficiency.md). Null where no price matches.
CREATE OR REPLACE VIEW priced_rollups AS
SELECT width, window_start, cluster, tenant, job_id, vendor, model, node, allocated,
       device_hours,
       idle_seconds / 3600 AS idle_device_hours,
       util_known_seconds / 3600 AS util_known_device_hours,
       busy_seconds / 3600 AS busy_device_hours,
       energy_kwh,
       p.per_device_hour,
       p.per_kwh,
       device_hours * p.per_device_hour AS device_cost,
       energy_kwh * p.per_kwh AS energy_cost,
       device_cost + coalesce(energy_cost, 0) AS cost,
       idle_device_hours * p.per_device_hour AS wasted_cost,
       busy_idle_seconds / 3600 AS busy_idle_device_hours,
       busy_idle_device_hours * p.per_device_hour AS busy_idle_cost
FROM rollups
LEFT JOIN model_prices AS p USING (model);

-- Cost per UTC day, cluster, tenant, job, vendor and model: the daily rows of priced_rollups.
CREATE OR REPLACE VIEW costs AS
SELECT window_start AS day, * EXCLUDE (width, window_start, node) FROM priced_rollups WHERE width = '1d';

-- One row per job and device: its partials (appended per commit, bucketed by day) merged.
CREATE OR REPLACE VIEW job_devices AS
SELECT cluster, tenant, job_id, device_uuid, vendor, model, node,
       min(first_seen) AS first_seen, max(last_seen) AS last_seen,
       sum(samples) AS samples, sum(device_seconds) AS device_seconds,
       sum(util_known_seconds) AS util_known_seconds, sum(busy_seconds) AS busy_seconds,
       sum(energy_j) AS energy_j, max(mem_used_max_bytes) AS mem_used_max_bytes
FROM stored.job_devices
GROUP BY ALL;

-- One row per job: its span, devices and sums from job_devices, with idle time and cost from the daily rollups.
CREATE OR REPLACE VIEW jobs AS
WITH merged AS (
    SELECT cluster, tenant, job_id,
           min(first_seen) AS first_seen, max(last_seen) AS last_seen, count(*) AS devices,
           sum(samples) AS samples, sum(device_seconds) AS device_seconds,
           sum(util_known_seconds) AS util_known_seconds, sum(busy_seconds) AS busy_seconds,
           sum(energy_j) AS energy_j, max(mem_used_max_bytes) AS mem_used_max_bytes
    FROM job_devices
    GROUP BY ALL
), charged AS (
    SELECT cluster, tenant, job_id, sum(idle_device_hours) AS idle_device_hours, sum(cost) AS cost,
           sum(wasted_cost) AS wasted_cost
    FROM costs
    WHERE job_id IS NOT NULL
    GROUP BY ALL
)
SELECT merged.*,
       device_seconds / 3600 AS device_hours,
       ratio(busy_seconds, util_known_seconds) AS utilization,
       charged.idle_device_hours,
       ratio(charged.idle_device_hours * 3600, util_known_seconds) AS idle_fraction,
       energy_j / 3.6e6 AS energy_kwh,
       charged.cost,
       charged.wasted_cost
FROM merged
LEFT JOIN charged USING (cluster, tenant, job_id);

-- Demand forecasts and the capacity plan of the last `fleetmeter forecast` run (docs/planning.md).
CREATE OR REPLACE VIEW forecasts AS SELECT * FROM stored.forecasts;
CREATE OR REPLACE VIEW capacity_plan AS SELECT * FROM stored.capacity_plan;
-- Anomalies kept by `fleetmeter anomalies` (docs/anomalies.md): open ones have no end.
CREATE OR REPLACE VIEW anomalies AS SELECT * FROM stored.anomalies;

-- What owning or renting each model seen costs: the whole entry of the most specific (longest) matching pattern.
CREATE OR REPLACE VIEW model_economics AS
SELECT seen.model, e.* EXCLUDE (model_pattern)
FROM (SELECT DISTINCT model FROM stored.util_1d) AS seen
LEFT JOIN economics AS e ON seen.model GLOB e.model_pattern
QUALIFY row_number() OVER (PARTITION BY seen.model ORDER BY length(e.model_pattern) DESC NULLS LAST) = 1;

-- Total cost of ownership per model since `since`, one row per way of paying for it (pricing):
--   owned      depreciation, hosting and support for every device-hour present (a device-year is 8,766 hours),
--              plus the measured energy x PUE x the energy price;
--   on_demand  the hourly rate for the hours allocated only;
--   reserved, committed   the rate for every hour of every device present (paid whether used or not).
-- Each per allocated device-hour and per busy device-hour (what a useful hour really costs).
CREATE OR REPLACE VIEW tco_by_model AS
WITH used AS (
    SELECT vendor, model,
           sum(device_hours) AS present_device_hours,
           coalesce(sum(device_hours) FILTER (WHERE allocated), 0) AS allocated_device_hours,
           coalesce(sum(busy_seconds) FILTER (WHERE allocated), 0) / 3600 AS busy_device_hours,
           sum(energy_kwh) AS energy_kwh
    FROM util_1d
    WHERE window_start >= getvariable('since')
    GROUP BY ALL
), priced AS (
    SELECT used.*, pricing, cost
    FROM used
    LEFT JOIN model_economics AS e USING (model)
    LEFT JOIN model_prices AS p USING (model),
    LATERAL (VALUES
        ('owned', present_device_hours * (e.purchase_price / e.depreciation_years + coalesce(e.hosting_per_year, 0)
                                          + coalesce(e.support_per_year, 0)) / 8766
                  + coalesce(energy_kwh * getvariable('pue') * coalesce(getvariable('per_kwh'), p.per_kwh), 0)),
        ('on_demand', allocated_device_hours * e.on_demand_per_hour),
        ('reserved', present_device_hours * e.reserved_per_hour),
        ('committed', present_device_hours * e.committed_per_hour)
    ) AS ways(pricing, cost)
)
SELECT vendor, model, pricing, present_device_hours, allocated_device_hours, busy_device_hours, energy_kwh, cost,
       ratio(cost, allocated_device_hours) AS per_allocated_hour,
       ratio(cost, busy_device_hours) AS per_busy_hour
FROM priced
WHERE cost IS NOT NULL;

-- The same per tenant: its allocated device-hours at its models' cost per allocated hour, each way of paying.
CREATE OR REPLACE VIEW tco_by_tenant AS
SELECT u.tenant, u.model, t.pricing,
       sum(u.device_hours) AS allocated_device_hours,
       sum(u.busy_seconds) / 3600 AS busy_device_hours,
       sum(u.device_hours) * any_value(t.per_allocated_hour) AS cost,
       ratio(sum(u.device_hours) * any_value(t.per_allocated_hour), sum(u.busy_seconds) / 3600) AS per_busy_hour
FROM util_1d AS u
JOIN tco_by_model AS t USING (vendor, model)
WHERE u.allocated AND u.window_start >= getvariable('since')
GROUP BY ALL;

-- Efficiency since `since` (docs/efficiency.md) per job, per tenant and per model (grain), over allocated time:
-- each measure beside its coverage, the share of the device-time it is known for (NULL where no reading at all:
-- `unmeasured` names those), and the idle and busy-but-idle time and their price, which never overlap.
CREATE OR REPLACE VIEW efficiency AS
SELECT CASE grouping(cluster, tenant, job_id) WHEN 0 THEN 'job' WHEN 1 THEN 'tenant' ELSE 'model' END AS grain,
       cluster, tenant, job_id, vendor, model,
       sum(device_seconds) / 3600 AS device_hours,
       ratio(sum(busy_seconds), sum(util_known_seconds)) AS busy_share,
       ratio(coalesce(sum(util_known_seconds), 0), sum(device_seconds)) AS busy_coverage,
       ratio(sum(sm_active_seconds), sum(sm_active_known_seconds)) AS sm_active,
       ratio(coalesce(sum(sm_active_known_seconds), 0), sum(device_seconds)) AS sm_coverage,
       ratio(sum(tensor_active_seconds), sum(tensor_active_known_seconds)) AS tensor_active,
       ratio(coalesce(sum(tensor_active_known_seconds), 0), sum(device_seconds)) AS tensor_coverage,
       ratio(sum(mem_bw_active_seconds), sum(mem_bw_known_seconds)) AS mem_bw_active,
       ratio(coalesce(sum(mem_bw_known_seconds), 0), sum(device_seconds)) AS mem_bw_coverage,
       max(mem_used_max_bytes) AS mem_peak_bytes,
       ratio(sum(mem_used_byte_seconds), sum(mem_known_seconds)) AS mem_typical_bytes,
       max(mem_total_max_bytes) AS mem_total_bytes,
       ratio(max(mem_used_max_bytes), max(mem_total_max_bytes)) AS mem_peak_share,
       ratio(sum(mem_used_byte_seconds), sum(mem_total_byte_seconds)) AS mem_typical_share,
       ratio(coalesce(sum(mem_known_seconds), 0), sum(device_seconds)) AS mem_coverage,
       ratio(sum(energy_kwh), sum(energy_busy_seconds) / 3600) AS kwh_per_busy_device_hour,
       ratio(coalesce(sum(energy_known_seconds), 0), sum(device_seconds)) AS energy_coverage,
       sum(idle_seconds) / 3600 AS idle_device_hours,
       sum(busy_idle_seconds) / 3600 AS busy_idle_device_hours,
       ratio(coalesce(sum(list_sum(sm_hist_seconds)), 0), sum(device_seconds)) AS busy_idle_coverage,
       ratio(coalesce(sum(shared_seconds), 0), sum(device_seconds)) AS shared_share,
       sum(idle_seconds) / 3600 * any_value(p.per_device_hour) AS idle_cost,
       sum(busy_idle_seconds) / 3600 * any_value(p.per_device_hour) AS busy_idle_cost,
       sum(device_seconds) / 3600 * any_value(p.per_device_hour) AS device_cost,
       nullif(concat_ws(', ',
           CASE WHEN coalesce(sum(util_known_seconds), 0) = 0 THEN 'busy_share' END,
           CASE WHEN coalesce(sum(sm_active_known_seconds), 0) = 0 THEN 'sm_active' END,
           CASE WHEN coalesce(sum(tensor_active_known_seconds), 0) = 0 THEN 'tensor_active' END,
           CASE WHEN coalesce(sum(mem_bw_known_seconds), 0) = 0 THEN 'mem_bw_active' END,
           CASE WHEN coalesce(sum(mem_known_seconds), 0) = 0 THEN 'memory' END,
           CASE WHEN coalesce(sum(energy_known_seconds), 0) = 0 THEN 'energy' END), '') AS unmeasured
FROM util_1d
LEFT JOIN model_prices AS p USING (model)
WHERE allocated AND window_start >= getvariable('since')
GROUP BY GROUPING SETS ((cluster, tenant, job_id, vendor, model), (cluster, tenant, vendor, model), (vendor, model));

-- Right-sizing since `since` (docs/efficiency.md): per job and model, the cheapest MIG profile of its board or
-- model of its vendor that its compute (the rightsizing_percentile of sm_active, or of util_compute, which bounds
-- it, where SM activity is not known) and its peak memory fit with headroom, and what that saves. Jobs observed
-- for less than rightsizing_min_hours, or whose readings cover less than rightsizing_min_coverage, get none.
CREATE OR REPLACE VIEW rightsizing AS
WITH usage AS (
    SELECT cluster, tenant, job_id, vendor, model,
           sum(device_seconds) / 3600 AS device_hours,
           hist_add(sm_hist_seconds) AS sm_hist,
           hist_add(util_hist_seconds) AS util_hist,
           -- coverage of what is judged: the histograms (rows written before they existed have none)
           ratio(list_sum(sm_hist), sum(device_seconds)) AS sm_coverage,
           ratio(list_sum(util_hist), sum(device_seconds)) AS util_coverage,
           ratio(sum(mem_known_seconds), sum(device_seconds)) AS mem_coverage,
           sum(shared_seconds) AS shared_seconds,
           max(mem_used_max_bytes) AS mem_peak_bytes,
           nullif(max(mem_total_max_bytes), 0) AS mem_total_bytes
    FROM util_1d
    WHERE allocated AND job_id IS NOT NULL AND window_start >= getvariable('since')
    GROUP BY ALL
), spans AS (  -- from the stored partials: minima and maxima need no merging (a partial's bandwidth is a mean over
               -- part of an hour: its maximum is at least the hour's)
    SELECT cluster, tenant, job_id, vendor, model,
           min(window_start) AS first_hour, max(window_start) + INTERVAL 1 HOUR AS end_hour,
           max(ratio(mem_bw_active_seconds, mem_bw_known_seconds)) AS mem_bw_peak_hourly,
           -- the busiest device-hour: a pooled percentile must not hide one saturated device of many
           max(ratio(sm_active_seconds, sm_active_known_seconds)) AS sm_peak_hourly,
           max(ratio(busy_seconds, util_known_seconds)) AS util_peak_hourly
    FROM stored.device_1h
    WHERE tenant <> 'unallocated' AND job_id IS NOT NULL AND window_start >= getvariable('since')
    GROUP BY ALL
), hourly AS (  -- the job's peak memory in each hour (the largest of its devices')
    SELECT cluster, tenant, job_id, vendor, model,
           quantile_cont(mem_used_max_bytes, 0.5) AS mem_p50_bytes,
           quantile_cont(mem_used_max_bytes, 0.95) AS mem_p95_bytes
    FROM util_1h
    WHERE allocated AND job_id IS NOT NULL AND window_start >= getvariable('since')
    GROUP BY ALL
), judged AS (
    SELECT usage.*, spans.* EXCLUDE (cluster, tenant, job_id, vendor, model),
           hourly.* EXCLUDE (cluster, tenant, job_id, vendor, model),
           date_diff('second', first_hour, end_hour) / 3600 AS observed_hours,
           coalesce(mig_board(model), model) AS board,
           coalesce(mig_compute_share(mig_board(model), mig_profile(model)), 1.0) AS compute_share,
           coalesce(mig_memory_share(mig_board(model), mig_profile(model)), 1.0) AS memory_share,
           CASE WHEN sm_coverage >= getvariable('rightsizing_min_coverage') THEN 'sm_active'
                WHEN util_coverage >= getvariable('rightsizing_min_coverage') THEN 'util_compute' END
               AS compute_reading,
           hist_quantile(CASE compute_reading WHEN 'sm_active' THEN sm_hist ELSE util_hist END,
                         getvariable('rightsizing_percentile')) AS compute_quantile,
           CASE compute_reading WHEN 'sm_active' THEN sm_peak_hourly ELSE util_peak_hourly END
               AS compute_peak_hourly,
           device_hour_price(model) AS per_device_hour
    FROM usage JOIN spans USING (cluster, tenant, job_id, vendor, model)
    LEFT JOIN hourly USING (cluster, tenant, job_id, vendor, model)
    WHERE mig_board(model) IS NULL OR mig_compute_share(mig_board(model), mig_profile(model)) IS NOT NULL
), needs AS (  -- in shares of the whole board, and bytes
    SELECT *,
           greatest(compute_quantile, compute_peak_hourly) * compute_share * (1 + getvariable('rightsizing_headroom'))
               AS compute_needed,
           mem_peak_bytes * (1 + getvariable('rightsizing_headroom')) AS memory_needed,
           mem_bw_peak_hourly * memory_share * (1 + getvariable('rightsizing_headroom')) AS bandwidth_needed,
           mem_total_bytes / memory_share AS board_memory_bytes
    FROM judged
    WHERE observed_hours >= getvariable('rightsizing_min_hours') AND compute_reading IS NOT NULL
      AND mem_coverage >= getvariable('rightsizing_min_coverage') AND per_device_hour IS NOT NULL
      AND mem_total_bytes IS NOT NULL
      AND coalesce(shared_seconds, 0) = 0  -- a job sharing a device holds a part of it: a slice of its own is
                                           -- held all the time, and can cost more
), boards AS (  -- the whole models seen, with their memory and throughput (model_economics)
    SELECT u.vendor, u.model, max(u.mem_total_max_bytes) AS memory_bytes, any_value(e.throughput) AS throughput
    FROM util_1d AS u LEFT JOIN model_economics AS e USING (model)
    WHERE mig_board(u.model) IS NULL
    GROUP BY ALL
), candidates AS (
    SELECT n.cluster, n.tenant, n.job_id, n.vendor, n.model, 'mig_profile' AS change,
           n.board || ' MIG ' || m.profile AS recommended,
           m.memory_share * n.board_memory_bytes AS recommended_memory_bytes,
           m.compute_share AS recommended_compute_share,
           device_hour_price(n.board || ' MIG ' || m.profile) AS recommended_per_device_hour
    FROM needs AS n
    JOIN mig_profiles AS m ON n.board GLOB m.model_pattern
    WHERE m.compute_share >= n.compute_needed
      AND m.memory_share * n.board_memory_bytes >= n.memory_needed
      AND (n.bandwidth_needed IS NULL OR m.memory_share >= n.bandwidth_needed)
      AND length(m.model_pattern) = (SELECT max(length(model_pattern)) FROM mig_profiles
                                     WHERE n.board GLOB model_pattern)
    UNION ALL
    SELECT n.cluster, n.tenant, n.job_id, n.vendor, n.model, 'model' AS change,
           b.model AS recommended, b.memory_bytes AS recommended_memory_bytes,
           b.throughput / here.throughput AS recommended_compute_share,
           device_hour_price(b.model) AS recommended_per_device_hour
    FROM needs AS n
    JOIN boards AS here ON here.model = n.board
    JOIN boards AS b ON b.vendor = n.vendor AND b.model <> n.board
    WHERE b.throughput / here.throughput >= n.compute_needed AND b.memory_bytes >= n.memory_needed
), cheapest AS (
    SELECT * FROM candidates
    WHERE recommended <> model AND recommended_per_device_hour IS NOT NULL
    QUALIFY row_number() OVER (PARTITION BY cluster, tenant, job_id, vendor, model
                               ORDER BY recommended_per_device_hour, recommended) = 1
)
SELECT n.cluster, n.tenant, n.job_id, n.vendor, n.model, n.device_hours, n.observed_hours,
       c.change, c.recommended, c.recommended_memory_bytes, c.recommended_compute_share,
       n.compute_reading,
       hist_quantile(CASE n.compute_reading WHEN 'sm_active' THEN n.sm_hist ELSE n.util_hist END, 0.5) AS compute_p50,
       hist_quantile(CASE n.compute_reading WHEN 'sm_active' THEN n.sm_hist ELSE n.util_hist END, 0.95)
           AS compute_p95,
       n.compute_quantile, n.compute_peak_hourly, n.compute_needed,
       n.mem_peak_bytes, n.mem_p50_bytes, n.mem_p95_bytes, n.mem_total_bytes, n.memory_needed,
       n.mem_bw_peak_hourly, n.sm_coverage, n.util_coverage, n.mem_coverage,
       n.per_device_hour, c.recommended_per_device_hour,
       (n.per_device_hour - c.recommended_per_device_hour) * n.device_hours / (n.observed_hours / 24) AS saving_per_day,
       (n.per_device_hour - c.recommended_per_device_hour) * n.device_hours AS saving_in_period
FROM needs AS n JOIN cheapest AS c USING (cluster, tenant, job_id, vendor, model)
WHERE c.recommended_per_device_hour < n.per_device_hour;

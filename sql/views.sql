-- fleetmeter's analyst views (DuckDB). `fleetmeter sql` and `fleetmeter query` run this file after
-- defining, from the warehouse and the configuration:
--
--   stored.<table>   each warehouse table's Delta snapshot, as stored: samples, util_1m, util_1h,
--                    util_1d, device_1h, job_devices, quarantine (schemas/warehouse.py, docs/warehouse.md)
--   prices           model_pattern (a GLOB), per_device_hour, per_kwh: the configured price list
--   idle_threshold   variable: util_compute below it is idle (a multiple of 0.05, a histogram bin edge)
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
-- The device-seconds below the idle threshold: the histogram's first bins.
CREATE OR REPLACE MACRO hist_idle(h) AS
    list_sum(h[1:CAST(round(getvariable('idle_threshold') * 20) AS INTEGER)]);
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
           hist_add(util_hist_seconds) AS util_hist_seconds
    FROM rollup_partials
    GROUP BY ALL
)
SELECT *,
       tenant <> 'unallocated' AS allocated,
       device_seconds / 3600 AS device_hours,
       hist_idle(util_hist_seconds) AS idle_seconds,
       ratio(busy_seconds, util_known_seconds) AS utilization,
       ratio(hist_idle(util_hist_seconds), util_known_seconds) AS idle_fraction,
       ratio(sm_active_seconds, sm_active_known_seconds) AS sm_active,
       ratio(tensor_active_seconds, tensor_active_known_seconds) AS tensor_active,
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
       ratio(temp_seconds, temp_known_seconds) AS temp_c,
       ratio(throttled_seconds, throttle_known_seconds) AS throttled_share,
       energy_j / 3.6e6 AS energy_kwh
FROM merged;

CREATE OR REPLACE VIEW samples AS SELECT * FROM stored.samples;
CREATE OR REPLACE VIEW quarantine AS SELECT * FROM stored.quarantine;

-- The price of each model seen: from the most specific (longest) matching pattern that sets it.
CREATE OR REPLACE VIEW model_prices AS
SELECT seen.model,
       arg_max(p.per_device_hour, length(p.model_pattern)) AS per_device_hour,
       arg_max(p.per_kwh, length(p.model_pattern)) FILTER (WHERE p.per_kwh IS NOT NULL) AS per_kwh
FROM (SELECT DISTINCT model FROM stored.util_1d) AS seen
LEFT JOIN prices AS p ON seen.model GLOB p.model_pattern
GROUP BY seen.model;

-- Cost per UTC day, cluster, tenant, job, vendor and model. A device-hour is charged to whoever held it;
-- wasted_cost is the price of the idle device-hours (energy left aside). Null where no price matches.
CREATE OR REPLACE VIEW costs AS
SELECT window_start AS day, cluster, tenant, job_id, vendor, model, allocated,
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
       idle_device_hours * p.per_device_hour AS wasted_cost
FROM util_1d
LEFT JOIN model_prices AS p USING (model);

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

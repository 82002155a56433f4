-- Which jobs use little of what they hold, for their size? A one-GPU notebook at 25 % is normal; a
-- 64-GPU training job at 50 % is money on fire. `expected` says the least utilization a job of at least
-- min_devices devices should reach (edit it to your fleet's norms); jobs seen since `since` below it,
-- by idle device-hours.
WITH expected (min_devices, min_utilization) AS (
    VALUES (1, 0.20), (2, 0.40), (8, 0.60)
)
SELECT jobs.cluster,
       jobs.tenant,
       jobs.job_id,
       jobs.devices,
       jobs.device_hours,
       jobs.utilization,
       expected.min_utilization AS expected_utilization,
       jobs.idle_device_hours,
       jobs.wasted_cost,
       jobs.first_seen,
       jobs.last_seen
FROM jobs
ASOF JOIN expected ON jobs.devices >= expected.min_devices
WHERE jobs.last_seen >= getvariable('since') AND jobs.utilization < expected.min_utilization
ORDER BY jobs.idle_device_hours DESC, jobs.tenant, jobs.job_id;

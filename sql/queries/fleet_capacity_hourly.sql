-- How much capacity does each cluster have per model and hour, how much of it is allocated, how much busy?
-- devices_*: distinct devices seen in the hour (MIG instances count, the MIG-mode GPUs holding them do
-- not); *_equivalents: device-hours in the hour, i.e. devices present on average.
WITH seen AS (
    SELECT date_trunc('hour', ts) AS hour,
           cluster,
           model,
           count(DISTINCT device_uuid) AS devices_seen,
           count(DISTINCT device_uuid) FILTER (WHERE tenant <> 'unallocated') AS devices_allocated
    FROM samples
    WHERE date >= CAST(getvariable('since') AS DATE)  -- prunes the samples' date partitions
      AND ts >= getvariable('since')
      AND NOT coalesce(extras['mig.enabled'] > 0, false)
    GROUP BY ALL
), used AS (
    SELECT window_start AS hour,
           cluster,
           model,
           sum(device_hours) AS device_equivalents,
           coalesce(sum(device_hours) FILTER (WHERE allocated), 0) AS allocated_equivalents,
           sum(busy_seconds) / 3600 AS busy_equivalents,
           ratio(sum(busy_seconds), sum(util_known_seconds)) AS utilization
    FROM util_1h
    WHERE window_start >= getvariable('since')
    GROUP BY ALL
)
SELECT *
FROM seen
FULL JOIN used USING (hour, cluster, model)
ORDER BY hour, cluster, model;

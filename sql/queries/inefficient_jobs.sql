-- Which jobs waste the most money? Per job and model since `since`: idle time (util_compute below the idle
-- threshold) and busy-but-idle time (busy by the driver's figure, SM activity below sm_idle_threshold), priced,
-- never the same hours twice; beside them what the job really did: SM, tensor and memory-bandwidth activity,
-- memory, each with its coverage (the share of the device-time it is known for). docs/efficiency.md.
SELECT cluster, tenant, job_id, model,
       device_hours,
       idle_device_hours, busy_idle_device_hours,
       idle_cost, busy_idle_cost,
       coalesce(idle_cost, 0) + coalesce(busy_idle_cost, 0) AS wasted_cost,
       busy_share, sm_active, sm_coverage, tensor_active, tensor_coverage, mem_bw_active,
       mem_peak_share, mem_typical_share, mem_coverage,
       unmeasured
FROM efficiency
WHERE grain = 'job' AND (idle_device_hours > 0 OR busy_idle_device_hours > 0)
ORDER BY wasted_cost DESC, idle_device_hours + busy_idle_device_hours DESC, tenant, job_id, model;

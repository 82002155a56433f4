-- Where is allocated accelerator time wasted? Device-hours held by a tenant's job while idle (util_compute
-- below the idle threshold), and their price, worst first. Rows without a job id are the tenant's
-- allocations that no job claimed.
SELECT cluster,
       tenant,
       job_id,
       sum(device_hours) AS allocated_device_hours,
       sum(idle_device_hours) AS idle_device_hours,
       ratio(sum(idle_device_hours), sum(util_known_device_hours)) AS idle_fraction,
       sum(wasted_cost) AS wasted_cost
FROM costs
WHERE allocated AND day >= getvariable('since')
GROUP BY cluster, tenant, job_id
HAVING sum(idle_device_hours) > 0
ORDER BY wasted_cost DESC NULLS LAST, idle_device_hours DESC, tenant, job_id;

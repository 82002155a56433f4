-- How much accelerator time did each tenant hold per day, how much of it was used, and what did it cost?
-- utilization = busy / util-known device-hours: MIG instances report no util_compute, so they count in
-- device_hours but not in utilization.
SELECT day,
       tenant,
       sum(device_hours) AS device_hours,
       sum(busy_device_hours) AS busy_device_hours,
       ratio(sum(busy_device_hours), sum(util_known_device_hours)) AS utilization,
       sum(idle_device_hours) AS idle_device_hours,
       sum(energy_kwh) AS energy_kwh,
       sum(cost) AS cost
FROM costs
WHERE day >= getvariable('since')
GROUP BY day, tenant
ORDER BY day, device_hours DESC, tenant;

-- How much energy did each tenant's devices use per day, at what mean power per device, at what price?
-- A MIG-mode GPU's board energy goes to the tenant its own row is attributed to.
SELECT day,
       tenant,
       sum(energy_kwh) AS energy_kwh,
       1000 * ratio(sum(energy_kwh), sum(device_hours)) AS mean_power_w,
       sum(energy_cost) AS energy_cost
FROM costs
WHERE day >= getvariable('since')
GROUP BY day, tenant
ORDER BY day, energy_kwh DESC, tenant;

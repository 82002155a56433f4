-- Which nodes have sick hardware? Per node: device-hours with clocks held down by hardware (slowdown,
-- thermal, power brake) or by software limits (thermal, power cap), ECC errors, XID events and their
-- codes, and the hottest reading. Nodes in trouble first. (A shared device's rows count their share of
-- its time: together, the device's.)
SELECT cluster,
       node,
       count(DISTINCT device_uuid) AS devices,
       coalesce(sum(interval_s * coalesce(share, 1)) FILTER (
           WHERE list_has_any(throttle_reasons, ['hw_slowdown', 'hw_thermal', 'hw_power_brake'])), 0) / 3600
           AS hw_throttled_device_hours,
       coalesce(sum(interval_s * coalesce(share, 1)) FILTER (
           WHERE list_has_any(throttle_reasons, ['sw_thermal', 'sw_power_cap'])), 0) / 3600
           AS sw_throttled_device_hours,
       coalesce(sum(ecc_corrected), 0) AS ecc_corrected,
       coalesce(sum(ecc_uncorrected), 0) AS ecc_uncorrected,
       coalesce(sum(len(xid_errors)), 0) AS xid_events,
       list_sort(list_distinct(flatten(list(xid_errors)))) AS xid_codes,
       max(temp_c) AS max_temp_c
FROM samples
WHERE date >= CAST(getvariable('since') AS DATE)  -- prunes the samples' date partitions
  AND ts >= getvariable('since')
GROUP BY cluster, node
ORDER BY ecc_uncorrected DESC, xid_events DESC, hw_throttled_device_hours DESC, ecc_corrected DESC, node;

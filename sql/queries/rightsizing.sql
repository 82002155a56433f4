-- What would each job cost on the smallest device that holds it? Per job and model since `since`: the cheapest MIG
-- profile or model of its vendor that its compute (a high percentile of its SM activity) and its peak memory fit,
-- with headroom; the evidence and the saving per day. Jobs too short or with too few readings get none.
-- docs/efficiency.md.
SELECT cluster, tenant, job_id, model, recommended, change,
       saving_per_day, saving_in_period,
       per_device_hour, recommended_per_device_hour,
       compute_reading, compute_p50, compute_p95, compute_quantile, compute_peak_hourly, compute_needed,
       recommended_compute_share,
       mem_peak_bytes, mem_p95_bytes, memory_needed, recommended_memory_bytes, mem_total_bytes,
       mem_bw_peak_hourly, device_hours, observed_hours
FROM rightsizing
ORDER BY saving_per_day DESC, tenant, job_id, model;

"""Exposition in both naming profiles, parsed back with Prometheus' own text parser."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fleetmeter.collectors.exposition.device_metrics import DeviceMetrics
from fleetmeter.collectors.exposition.profiles import DCGM, FLEETMETER, Profile

MIB = 1024**2


def row(**values: object) -> dict[str, object]:
    base: dict[str, object] = {
        "ts": 0, "interval_s": 10.0, "cluster": "c1", "node": "node-a", "device_uuid": "GPU-1", "device_index": 2,
        "device_kind": "gpu", "vendor": "nvidia", "model": "H100", "tenant": "vision", "job_id": "j-9",
        "util_compute": 0.42, "util_mem_bw": 0.1, "sm_active": 0.4, "tensor_active": None,
        "mem_used_bytes": 2048 * MIB, "mem_total_bytes": 8192 * MIB, "power_w": 350.5, "temp_c": 60.0,
        "sm_clock_mhz": 1500.0, "throttle_reasons": ["sw_power_cap"], "energy_j": 3505.0, "ecc_corrected": 2,
        "ecc_uncorrected": 0, "xid_errors": [], "pcie_tx_bytes": 1000, "pcie_rx_bytes": 5000,
        "nvlink_tx_bytes": None, "nvlink_rx_bytes": None, "extras": [("gpm.dram_active", 0.3)],
    }
    return base | values


def scrape(profile: Profile, *updates: list[dict[str, object]]) -> dict[str, list[tuple[dict[str, str], float]]]:
    registry = CollectorRegistry()
    metrics = DeviceMetrics(profile)
    registry.register(metrics)
    for rows in updates:
        metrics.update(rows)
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def test_native_profile_names_units_labels_and_running_totals() -> None:
    samples = scrape(FLEETMETER, [row()], [row(energy_j=1000.0, xid_errors=[79, 48], ecc_corrected=1)])
    [(labels, value)] = samples["fleetmeter_device_utilization_ratio"]
    assert labels == {"cluster": "c1", "node": "node-a", "device": "GPU-1", "index": "2", "kind": "gpu",
                      "vendor": "nvidia", "model": "H100", "tenant": "vision", "job_id": "j-9"}
    assert value == 0.42
    assert samples["fleetmeter_device_memory_used_bytes"][0][1] == 2048 * MIB
    assert samples["fleetmeter_device_sm_clock_hertz"][0][1] == 1.5e9
    assert samples["fleetmeter_device_energy_joules_total"][0][1] == 3505.0 + 1000.0
    assert samples["fleetmeter_device_xid_errors_total"][0][1] == 2
    ecc = {labels["type"]: value for labels, value in samples["fleetmeter_device_ecc_errors_total"]}
    assert ecc == {"corrected": 3, "uncorrected": 0}
    throttled = {labels["reason"]: value for labels, value in samples["fleetmeter_device_throttle_active"]}
    assert throttled["sw_power_cap"] == 1 and throttled["hw_thermal"] == 0
    assert "fleetmeter_device_tensor_active_ratio" not in samples  # unknown readings are left out
    assert "fleetmeter_device_nvlink_bytes_total" not in samples


def test_dcgm_profile_matches_dcgm_exporter_names_units_and_labels() -> None:
    samples = scrape(DCGM, [row(xid_errors=[43])], [row(energy_j=500.0)])
    [(labels, value)] = samples["DCGM_FI_DEV_GPU_UTIL"]
    assert labels == {"gpu": "2", "UUID": "GPU-1", "device": "nvidia2", "modelName": "H100",
                      "Hostname": "node-a", "GPU_I_ID": "", "tenant": "vision", "job_id": "j-9"}
    assert value == 42.0
    assert samples["DCGM_FI_DEV_FB_USED"][0][1] == 2048
    assert samples["DCGM_FI_DEV_FB_FREE"][0][1] == 8192 - 2048
    assert samples["DCGM_FI_DEV_POWER_USAGE"][0][1] == 350.5
    assert samples["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"][0][1] == (3505.0 + 500.0) * 1000
    assert samples["DCGM_FI_DEV_XID_ERRORS"][0][1] == 43  # the last XID stays until another comes
    assert samples["DCGM_FI_DEV_CLOCK_THROTTLE_REASONS"][0][1] == 0x4
    assert samples["DCGM_FI_PROF_DRAM_ACTIVE"][0][1] == 0.3
    assert samples["DCGM_FI_PROF_PCIE_RX_BYTES"][0][1] == 500.0  # 5000 bytes over 10 s


def test_mig_instances_carry_their_gpu_instance_id_in_the_dcgm_profile() -> None:
    samples = scrape(DCGM, [row(device_uuid="MIG-1", device_kind="mig", extras=[("mig.gpu_instance_id", 9.0)])])
    assert samples["DCGM_FI_DEV_FB_USED"][0][0]["GPU_I_ID"] == "9"

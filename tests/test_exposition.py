"""Exposition in both naming profiles, parsed back with Prometheus' own text parser."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fleetmeter.collectors.exposition.device_metrics import DeviceMetrics
from fleetmeter.collectors.exposition.profiles import DCGM, FLEETMETER, Profile
from fleetmeter.collectors.readings import Device, Workload

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
        "parent_uuid": None, "share": None, "share_rule": None,
    }
    return base | values


DEVICES = {uuid: Device("node-a", uuid, 2, "gpu", "nvidia", "H100", pci_bus_id="00000000:1B:00.0",
                        driver_version="550.54.15") for uuid in ("GPU-1", "MIG-1")}


def scrape(profile: Profile, *updates: list[dict[str, object]]) -> dict[str, list[tuple[dict[str, str], float]]]:
    registry = CollectorRegistry()
    metrics = DeviceMetrics(profile)
    registry.register(metrics)
    for rows in updates:
        metrics.update(rows, DEVICES)
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
    assert labels == {"gpu": "2", "UUID": "GPU-1", "pci_bus_id": "00000000:1B:00.0", "device": "nvidia2",
                      "modelName": "H100", "GPU_I_PROFILE": "", "GPU_I_ID": "", "Hostname": "node-a",
                      "DCGM_FI_DRIVER_VERSION": "550.54.15", "pod": "", "namespace": "", "container": "",
                      "tenant": "vision", "job_id": "j-9"}
    assert value == 42.0
    assert samples["DCGM_FI_PROF_GR_ENGINE_ACTIVE"][0][1] == 0.42
    assert samples["DCGM_FI_DEV_FB_USED"][0][1] == 2048
    assert samples["DCGM_FI_DEV_FB_FREE"][0][1] == 8192 - 2048
    assert samples["DCGM_FI_DEV_POWER_USAGE"][0][1] == 350.5
    assert samples["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"][0][1] == (3505.0 + 500.0) * 1000
    assert samples["DCGM_FI_DEV_XID_ERRORS"][0][1] == 43  # the last XID stays until another comes
    assert samples["DCGM_FI_DEV_CLOCK_THROTTLE_REASONS"][0][1] == 0x4
    assert samples["DCGM_FI_PROF_DRAM_ACTIVE"][0][1] == 0.3
    assert samples["DCGM_FI_PROF_PCIE_RX_BYTES"][0][1] == 500.0  # 5000 bytes over 10 s
    assert "DCGM_FI_DEV_DEC_UTIL" not in samples  # no decoder reading: no series
    dram = scrape(DCGM, [row(extras=[])])["DCGM_FI_PROF_DRAM_ACTIVE"]
    assert dram[0][1] == 0.1  # without GPM, NVML's memory utilization


def test_mig_instances_are_named_by_their_gpu_profile_and_instance_in_the_dcgm_profile() -> None:
    samples = scrape(DCGM, [row(device_uuid="MIG-1", device_kind="mig", parent_uuid="GPU-1",
                                model="NVIDIA H100 80GB HBM3 MIG 1g.10gb", extras=[("mig.gpu_instance_id", 9.0)])])
    labels = samples["DCGM_FI_DEV_FB_USED"][0][0]
    assert (labels["UUID"], labels["gpu"], labels["device"], labels["modelName"], labels["GPU_I_PROFILE"],
            labels["GPU_I_ID"]) == ("GPU-1", "2", "nvidia2", "NVIDIA H100 80GB HBM3", "1g.10gb", "9")


def test_a_time_sliced_device_has_a_series_per_pod_with_its_part_and_a_pod_that_leaves_takes_its_totals() -> None:
    """Two owners share the device 3:1; the first owner's share is two replicas' (2:1). Quantities that add up
    are each pod's part, so the pods' sum is the device's; the device's properties are on every series."""
    api_0, api_1, nb = (Workload("serving", "api-0", "main"), Workload("serving", "api-1", "main"),
                        Workload("research", "nb", "lab"))
    shares = [row(share=0.75, energy_j=3000.0, pcie_rx_bytes=3750, ecc_uncorrected=1, xid_errors=[48],
                  workloads=((api_0, 2 / 3, frozenset()), (api_1, 1 / 3, frozenset()))),
              row(tenant="research", job_id="nb-1", share=0.25, energy_j=1000.0, pcie_rx_bytes=1250,
                  workloads=((nb, 1.0, frozenset()),))]
    samples = scrape(DCGM, shares, shares)
    by_pod = {name: {labels["pod"]: value for labels, value in series} for name, series in samples.items()}
    parts = {"api-0": 0.5, "api-1": 0.25, "nb": 0.25}
    assert by_pod["DCGM_FI_DEV_GPU_UTIL"] == pytest.approx({pod: 42.0 * part for pod, part in parts.items()})
    assert by_pod["DCGM_FI_DEV_FB_USED"] == pytest.approx({pod: 2048 * part for pod, part in parts.items()})
    assert by_pod["DCGM_FI_DEV_POWER_USAGE"] == pytest.approx({pod: 350.5 * part for pod, part in parts.items()})
    assert by_pod["DCGM_FI_PROF_PCIE_RX_BYTES"] == pytest.approx({pod: 500.0 * part for pod, part in parts.items()})
    assert by_pod["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"] == pytest.approx(
        {pod: 2 * 4000.0 * 1000 * part for pod, part in parts.items()})
    assert set(by_pod["DCGM_FI_DEV_GPU_TEMP"].values()) == {60.0}  # a property of the device, on every pod
    assert set(by_pod["DCGM_FI_DEV_FB_FREE"].values()) == {8192 - 2048}
    assert set(by_pod["DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"].values()) == {2}  # the device's errors, on every pod
    assert set(by_pod["DCGM_FI_DEV_ECC_SBE_VOL_TOTAL"].values()) == {2 * (2 + 2)}  # both owners, two scrapes
    assert set(by_pod["DCGM_FI_DEV_XID_ERRORS"].values()) == {48}
    namespaces = {labels["pod"]: (labels["namespace"], labels["container"], labels["tenant"])
                  for labels, _ in samples["DCGM_FI_DEV_GPU_UTIL"]}
    assert namespaces["nb"] == ("research", "lab", "research") and namespaces["api-1"][:2] == ("serving", "main")

    later = scrape(DCGM, shares, [row(energy_j=4000.0, workloads=((api_0, 1.0, frozenset()),))])  # two left
    energy = {labels["pod"]: value for labels, value in later["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"]}
    assert energy == pytest.approx({"api-0": (4000.0 * 0.5 + 4000.0) * 1000})


def test_the_native_profile_keeps_one_series_per_device_with_the_devices_totals() -> None:
    shares = [row(share=0.75, energy_j=3000.0), row(tenant="research", job_id="nb-1", share=0.25, energy_j=1000.0)]
    samples = scrape(FLEETMETER, shares)
    [(labels, value)] = samples["fleetmeter_device_energy_joules_total"]
    assert (labels["tenant"], value) == ("vision", 4000.0)  # the largest owner names it


def test_a_pods_memory_on_a_shared_device_is_its_processes_where_the_driver_reports_them() -> None:
    processes = [{"pid": 1, "used_memory_bytes": 60 * 1024 * MIB}, {"pid": 2, "used_memory_bytes": 8 * 1024 * MIB}]
    idle, busy = Workload("a", "idle", "main"), Workload("b", "busy", "main")
    shares = [row(share=0.1, processes=processes, workloads=((idle, 1.0, frozenset({1})),)),
              row(tenant="b", job_id="j-b", share=0.9, processes=processes, workloads=((busy, 1.0, frozenset({2})),))]
    used = {labels["pod"]: value for labels, value in scrape(DCGM, shares)["DCGM_FI_DEV_FB_USED"]}
    assert used == {"idle": 60 * 1024, "busy": 8 * 1024}  # not their SM shares of the device's 2048 MiB
    hidden = [dict(share, processes=[dict(p, used_memory_bytes=None) for p in processes]) for share in shares]
    used = {labels["pod"]: value for labels, value in scrape(DCGM, hidden)["DCGM_FI_DEV_FB_USED"]}
    assert used == pytest.approx({"idle": 2048 * 0.1, "busy": 2048 * 0.9})  # unknown: their fraction


def test_the_devices_error_counts_survive_a_change_of_owner() -> None:
    first = row(ecc_corrected=5, ecc_uncorrected=1, xid_errors=[48])
    second = row(tenant="research", job_id="next", ecc_corrected=0, ecc_uncorrected=0, xid_errors=[])
    samples = scrape(DCGM, [first], [second])
    assert [value for _, value in samples["DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"]] == [1]
    assert [value for _, value in samples["DCGM_FI_DEV_ECC_SBE_VOL_TOTAL"]] == [5]
    assert [value for _, value in samples["DCGM_FI_DEV_XID_ERRORS"]] == [48]


def test_the_native_profile_keeps_naming_a_shared_device_by_the_same_owner_while_shares_swap() -> None:
    a, b = row(share=0.6), row(tenant="research", job_id="nb-1", share=0.4)
    swapped = [dict(a, share=0.4), dict(b, share=0.6)]
    samples = scrape(FLEETMETER, [a, b], swapped, [a, b])
    assert {labels["tenant"] for labels, _ in samples["fleetmeter_device_utilization_ratio"]} == {"vision"}


def test_mig_instances_without_an_instance_id_keep_their_own_uuid() -> None:
    instances = [row(device_uuid=f"MIG-{i}", device_kind="mig", parent_uuid="GPU-1",
                     model="NVIDIA H100 80GB HBM3 MIG 1g.10gb", extras=[]) for i in (1, 2)]
    samples = scrape(DCGM, instances)
    assert {labels["UUID"] for labels, _ in samples["DCGM_FI_DEV_FB_USED"]} == {"MIG-1", "MIG-2"}

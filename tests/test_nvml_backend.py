"""The NVML backend against a fake of the pynvml surface that behaves like an 8-GPU H100 node."""

from __future__ import annotations

import pynvml
import pytest

from fleetmeter.collectors.backends.base import BackendUnavailable
from fleetmeter.collectors.backends.nvml import NvmlBackend
from fleetmeter.collectors.readings import DeviceReading
from tests.fakes.fake_nvml import GIB, FakeGpu, FakeNvml


@pytest.fixture
def fake() -> FakeNvml:
    return FakeNvml()


def by_uuid(readings: list[DeviceReading]) -> dict[str, DeviceReading]:
    return {reading.device.uuid: reading for reading in readings}


def test_discovers_eight_gpus_and_the_mig_instances(fake: FakeNvml) -> None:
    devices = NvmlBackend("node-a", fake).discover()
    gpus = [d for d in devices if d.kind == "gpu"]
    migs = [d for d in devices if d.kind == "mig"]
    assert [d.index for d in gpus] == list(range(8))
    assert {d.uuid for d in migs} == {"MIG-00000000-0000-0000-0000-0000000000a1",
                                      "MIG-00000000-0000-0000-0000-0000000000a2"}
    assert all(d.parent_uuid == fake.gpus[6].uuid and d.index == 6 for d in migs)
    assert {d.model for d in migs} == {"NVIDIA H100 80GB HBM3 MIG 3g.40gb", "NVIDIA H100 80GB HBM3 MIG 1g.10gb"}


def test_readings_are_converted_to_base_units(fake: FakeNvml) -> None:
    gpu = fake.gpus[0]
    gpu.mem_used, gpu.power_mw, gpu.energy_mj, gpu.temp_c = 12 * GIB, 512_250, 7_000_000, 61
    gpu.throttle_mask = pynvml.nvmlClocksEventReasonSwPowerCap | pynvml.nvmlClocksEventReasonHwThermalSlowdown
    gpu.ecc = {pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED: 5, pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED: 1}
    gpu.pcie_bytes, gpu.nvlink_kib = {"tx": 1000, "rx": 2000}, {"tx": 3, "rx": 4}
    gpu.processes = [(4242, 3 * GIB)]
    reading = by_uuid(NvmlBackend("node-a", fake).read(0))[gpu.uuid]
    assert reading.mem_used_bytes == 12 * GIB and reading.mem_total_bytes == 80 * GIB
    assert reading.power_w == pytest.approx(512.25)
    assert reading.counters["energy_j"].value == pytest.approx(7000.0)
    assert reading.temp_c == 61.0 and reading.sm_clock_mhz == 1980.0
    assert set(reading.throttle_reasons or ()) == {"sw_power_cap", "hw_thermal"}
    assert reading.counters["ecc_corrected"].value == 5 and reading.counters["ecc_uncorrected"].value == 1
    assert reading.counters["pcie_tx_bytes"].value == 1000 and reading.counters["pcie_rx_bytes"].value == 2000
    assert reading.counters["nvlink_tx_bytes"].value == 3 * 1024 and reading.counters["nvlink_rx_bytes"].value == 4096
    assert [(p.pid, p.used_memory_bytes) for p in reading.processes or ()] == [(4242, 3 * GIB)]


def test_utilization_is_the_mean_of_the_samples_since_the_last_scrape(fake: FakeNvml) -> None:
    gpu = fake.gpus[1]
    backend = NvmlBackend("node-a", fake)
    gpu.util_samples = [(100, 10), (200, 30)]
    assert by_uuid(backend.read(0))[gpu.uuid].util_compute == pytest.approx(0.20)
    gpu.util_samples += [(300, 90), (400, 70), (500, 50)]  # only these three are new
    reading = by_uuid(backend.read(0))[gpu.uuid]
    assert reading.util_compute == pytest.approx(0.70)
    assert reading.util_mem_bw == pytest.approx((45 + 35 + 25) / 3 / 100)


def test_without_a_sample_buffer_the_instant_utilization_is_used(fake: FakeNvml) -> None:
    limited = fake.gpus[7]
    limited.util_gpu, limited.util_mem = 64, 12
    reading = by_uuid(NvmlBackend("node-a", fake).read(0))[limited.uuid]
    assert reading.util_compute == pytest.approx(0.64) and reading.util_mem_bw == pytest.approx(0.12)


def test_gpm_gives_sm_and_tensor_activity_from_two_samples(fake: FakeNvml) -> None:
    gpu, small = fake.gpus[2], fake.device("MIG-00000000-0000-0000-0000-0000000000a2")
    gpu.gpm = {pynvml.NVML_GPM_METRIC_SM_UTIL: 81.0, pynvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL: 40.5,
               pynvml.NVML_GPM_METRIC_SM_OCCUPANCY: 33.0, pynvml.NVML_GPM_METRIC_DRAM_BW_UTIL: 12.0}
    small.gpm = {pynvml.NVML_GPM_METRIC_SM_UTIL: 50.0}
    backend = NvmlBackend("node-a", fake)
    first = by_uuid(backend.read(0))
    assert first[gpu.uuid].sm_active is None  # one sample is not an interval yet
    second = by_uuid(backend.read(10_000))
    assert second[gpu.uuid].sm_active == pytest.approx(0.81)
    assert second[gpu.uuid].tensor_active == pytest.approx(0.405)
    assert second[gpu.uuid].extras["gpm.sm_occupancy"] == pytest.approx(0.33)
    assert second[gpu.uuid].extras["gpm.dram_active"] == pytest.approx(0.12)
    assert second[small.uuid].sm_active == pytest.approx(0.50)
    assert second[small.uuid].tensor_active is None
    assert second[fake.gpus[7].uuid].sm_active is None  # this board has no GPM


def test_unsupported_readings_are_null_and_never_asked_again(fake: FakeNvml) -> None:
    backend = NvmlBackend("node-a", fake)
    limited, instance = fake.gpus[7], fake.device("MIG-00000000-0000-0000-0000-0000000000a1")
    for ts in range(5):
        readings = by_uuid(backend.read(ts))
    assert "ecc_corrected" not in readings[limited.uuid].counters
    assert readings[instance.uuid].power_w is None and readings[instance.uuid].temp_c is None
    assert readings[instance.uuid].mem_total_bytes == 40 * GIB
    assert fake.calls[("nvmlDeviceGetTotalEccErrors", limited.uuid)] == 2  # corrected and uncorrected, once
    assert fake.calls[("nvmlDeviceGetPowerUsage", instance.uuid)] == 1
    assert fake.calls[("nvmlDeviceGetSamples", limited.uuid)] == 2  # gpu and memory sampling, once each
    assert fake.calls[("nvmlDeviceGetPowerUsage", fake.gpus[0].uuid)] == 5
    assert backend.read_errors() == {}


def test_pcie_falls_back_to_throughput_where_counters_are_missing(fake: FakeNvml) -> None:
    limited = fake.gpus[7]
    limited.pcie_kib_per_s = {pynvml.NVML_PCIE_UTIL_TX_BYTES: 100, pynvml.NVML_PCIE_UTIL_RX_BYTES: 250}
    reading = by_uuid(NvmlBackend("node-a", fake).read(0))[limited.uuid]
    assert "pcie_tx_bytes" not in reading.counters
    assert reading.rates == {"pcie_tx_bytes": 100 * 1024.0, "pcie_rx_bytes": 250 * 1024.0}


def test_mig_mode_is_flagged_on_the_parent_and_instances_carry_their_instance_id(fake: FakeNvml) -> None:
    readings = by_uuid(NvmlBackend("node-a", fake).read(0))
    parent = readings[fake.gpus[6].uuid]
    assert parent.extras["mig.enabled"] == 1.0 and parent.util_compute is None
    assert readings["MIG-00000000-0000-0000-0000-0000000000a2"].extras["mig.gpu_instance_id"] == 9.0


def test_xid_events_reach_the_device_or_mig_instance_they_belong_to(fake: FakeNvml) -> None:
    backend = NvmlBackend("node-a", fake)
    instance = fake.device("MIG-00000000-0000-0000-0000-0000000000a1")
    fake.events = [(fake.gpus[3], 79), (instance, 43), (fake.gpus[3], 48)]
    readings = by_uuid(backend.read(0))
    assert readings[fake.gpus[3].uuid].xid_errors == (79, 48)
    assert readings[instance.uuid].xid_errors == (43,)
    assert readings[fake.gpus[0].uuid].xid_errors == ()
    assert by_uuid(backend.read(1))[fake.gpus[3].uuid].xid_errors == ()  # drained


def test_a_node_without_gpus_is_unavailable(fake: FakeNvml) -> None:
    fake.gpus = []
    with pytest.raises(BackendUnavailable, match="no GPUs"):
        NvmlBackend("node-a", fake)


def test_older_drivers_throttle_reasons_come_from_the_deprecated_call(fake: FakeNvml) -> None:
    limited = fake.gpus[7]  # its driver lacks nvmlDeviceGetCurrentClocksEventReasons
    limited.throttle_mask = pynvml.nvmlClocksThrottleReasonHwSlowdown
    backend = NvmlBackend("node-a", fake)
    backend.read(0)
    assert by_uuid(backend.read(1))[limited.uuid].throttle_reasons == ("hw_slowdown",)
    assert fake.calls[("nvmlDeviceGetCurrentClocksEventReasons", limited.uuid)] == 1
    assert fake.calls[("nvmlDeviceGetCurrentClocksThrottleReasons", limited.uuid)] == 2


def test_a_transient_driver_error_is_null_for_one_scrape_and_counted(fake: FakeNvml) -> None:
    backend = NvmlBackend("node-a", fake)
    gpu = fake.gpus[4]
    gpu.temp_c = 55
    original = fake.nvmlDeviceGetTemperature

    def lost(handle: object, sensor: int) -> int:
        raise pynvml.NVMLError(pynvml.NVML_ERROR_GPU_IS_LOST)

    fake.nvmlDeviceGetTemperature = lost  # type: ignore[method-assign]
    assert by_uuid(backend.read(0))[gpu.uuid].temp_c is None
    assert backend.read_errors()["NVMLError_GpuIsLost"] == len(fake.all_devices())  # each failed once
    fake.nvmlDeviceGetTemperature = original  # type: ignore[method-assign]
    assert by_uuid(backend.read(1))[gpu.uuid].temp_c == 55.0  # asked again: it was not "unsupported"


def test_per_process_sm_utilization_is_the_mean_of_the_new_samples(fake: FakeNvml) -> None:
    gpu = fake.gpus[2]
    gpu.processes = [(11, GIB), (22, GIB), (33, GIB)]
    backend = NvmlBackend("node-a", fake)
    gpu.process_samples = [(100, 11, 60), (150, 22, 20), (200, 11, 40)]
    util = {p.pid: p.sm_util for p in by_uuid(backend.read(0))[gpu.uuid].processes or ()}
    assert util == {11: pytest.approx(0.50), 22: pytest.approx(0.20), 33: None}  # 33 ran no kernel
    gpu.process_samples += [(300, 22, 90)]  # only this one is new
    util = {p.pid: p.sm_util for p in by_uuid(backend.read(0))[gpu.uuid].processes or ()}
    assert util == {11: None, 22: pytest.approx(0.90), 33: None}


def test_the_driver_failing_to_initialise_makes_the_backend_unavailable_with_the_reason() -> None:
    with pytest.raises(BackendUnavailable, match=r"NVIDIA driver loaded.*Driver Not Loaded"):
        NvmlBackend("node-a", FakeNvml(init_error=pynvml.NVML_ERROR_DRIVER_NOT_LOADED))


def test_a_lost_gpu_reads_as_unknown_while_the_others_keep_reading(fake: FakeNvml) -> None:
    backend = NvmlBackend("node-a", fake)
    lost, healthy = fake.gpus[3], fake.gpus[0]
    healthy.temp_c, lost.lost = 44, True
    readings = by_uuid(backend.read(0))
    assert readings[healthy.uuid].temp_c == 44.0
    gone = readings[lost.uuid]
    assert (gone.util_compute, gone.temp_c, gone.power_w, gone.mem_used_bytes, gone.processes) == (
        None, None, None, None, None)
    assert backend.read_errors()["NVMLError_GpuIsLost"] > 0
    lost.lost = False  # back after a reset: GPU_IS_LOST was a failure, not "unsupported", so it is asked again
    lost.temp_c = 50
    assert by_uuid(backend.read(1))[lost.uuid].temp_c == 50.0


def test_process_memory_the_driver_hides_is_null_not_zero(fake: FakeNvml) -> None:
    gpu = fake.gpus[1]
    gpu.processes, gpu.process_memory_hidden = [(11, GIB), (22, 2 * GIB)], True
    processes = by_uuid(NvmlBackend("node-a", fake).read(0))[gpu.uuid].processes or ()
    assert sorted((p.pid, p.used_memory_bytes) for p in processes) == [(11, None), (22, None)]


def test_volatile_ecc_counts_and_the_sm_clock_are_the_readings_asked_for(fake: FakeNvml) -> None:
    """The fake answers the aggregate ECC counter and the graphics clock with other values than the volatile
    counter and the SM clock, so a backend asking the wrong question reads a wrong figure."""
    gpu = fake.gpus[0]
    gpu.ecc = {pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED: 3, pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED: 0}
    reading = by_uuid(NvmlBackend("node-a", fake).read(0))[gpu.uuid]
    assert reading.counters["ecc_corrected"].value == 3 and reading.counters["ecc_uncorrected"].value == 0
    assert reading.sm_clock_mhz == gpu.sm_clock_mhz != gpu.graphics_clock_mhz


def test_rediscovery_follows_hot_unplug_hot_plug_and_mig_reconfiguration(fake: FakeNvml) -> None:
    backend = NvmlBackend("node-a", fake, rediscover_every=2)
    unplugged = fake.gpus.pop(5)
    mig_gpu = fake.gpus[5]  # the MIG-mode GPU, now at index 5
    removed_instance = mig_gpu.mig_slots[0]
    assert removed_instance is not None
    new_instance = FakeGpu(uuid="MIG-00000000-0000-0000-0000-0000000000a3", name=f"{mig_gpu.name} MIG 2g.20gb",
                           mem_total=20 * GIB, gpu_instance_id=5, parent=mig_gpu,
                           unsupported=set(removed_instance.unsupported))
    mig_gpu.mig_slots = [None, new_instance, mig_gpu.mig_slots[2]]
    fake.refresh_handles()
    assert unplugged.uuid in by_uuid(backend.read(0))  # not yet rediscovered: still read (and failing)
    after = by_uuid(backend.read(0))  # the second read rediscovers
    assert unplugged.uuid not in after and removed_instance.uuid not in after
    assert after[new_instance.uuid].device.parent_uuid == mig_gpu.uuid
    assert after[new_instance.uuid].extras["mig.gpu_instance_id"] == 5.0
    assert after[mig_gpu.uuid].device.index == 5  # indices follow the driver's new order
    assert {d.uuid for d in backend.discover()} == set(after)

    fake.gpus.append(unplugged)  # plugged back in
    fake.refresh_handles()
    backend.read(0)
    assert unplugged.uuid in by_uuid(backend.read(0))

"""The tpu backend against a real gRPC runtime metrics service (tpu-info's proto) and a sysfs PCI bus."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from fleetmeter.collectors.backends import tpu
from fleetmeter.collectors.backends.base import BackendUnavailable
from fleetmeter.collectors.settings import TpuSettings
from tests.fakes.fake_tpu_runtime import GIB, FakeRuntime, FakeTpuDevice, holding, pci_bus, running_runtime


def closed_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


def backend(tmp_path: Path, address: str) -> tpu.TpuBackend:
    return tpu.create("tpu-vm", TpuSettings(addresses=[address], sys_root=tmp_path / "sys"), tmp_path / "proc")


def test_chips_on_the_bus_are_devices_read_from_the_runtime(tmp_path: Path) -> None:
    pci_bus(tmp_path / "sys", "v5e", chips=4)
    holding(tmp_path / "proc", 7001, "/dev/vfio/0", "/dev/vfio/1")
    holding(tmp_path / "proc", 7002, "/dev/vfio/2", "/dev/vfio/3")
    runtime = FakeRuntime({i: FakeTpuDevice(hbm_used=(i + 1) * GIB, duty_cycle_pct=20.0 * i, hbm_bandwidth_pct=5.0)
                           for i in range(4)})
    with running_runtime(runtime) as address:
        source = backend(tmp_path, address)
        readings = source.read(0)
        source.close()
    assert [(r.device.uuid, r.device.index, r.device.kind, r.device.vendor, r.device.model) for r in readings] == [
        (f"TPU-tpu-vm-0000:00:{4 + i:02x}", i, "tpu", "google", "Google TPU v5e") for i in range(4)]
    assert [r.util_compute for r in readings] == [0.0, 0.2, 0.4, 0.6]
    assert [r.mem_used_bytes for r in readings] == [GIB, 2 * GIB, 3 * GIB, 4 * GIB]
    assert {r.mem_total_bytes for r in readings} == {16 * GIB} and {r.util_mem_bw for r in readings} == {0.05}
    assert [[p.pid for p in r.processes or ()] for r in readings] == [[7001], [7001], [7002], [7002]]
    assert readings[0].power_w is None and readings[0].tensor_active is None  # the service has neither
    assert source.read_errors() == {}


def test_a_metric_an_older_runtime_lacks_is_null_and_asked_once(tmp_path: Path) -> None:
    pci_bus(tmp_path / "sys", "v6e", chips=1)
    runtime = FakeRuntime({0: FakeTpuDevice(duty_cycle_pct=50.0)})
    runtime.served.discard(tpu.HBM_BANDWIDTH)
    with running_runtime(runtime) as address:
        source = backend(tmp_path, address)
        for _ in range(3):
            reading = source.read(0)[0]
        source.close()
    assert reading.util_compute == 0.5 and reading.util_mem_bw is None
    assert reading.device.model == "Google TPU v6e"
    assert runtime.requests.count(tpu.HBM_BANDWIDTH) == 1 and runtime.requests.count(tpu.DUTY_CYCLE) == 3


def test_a_chip_with_two_cores_gives_both_its_duty_cycle(tmp_path: Path) -> None:
    pci_bus(tmp_path / "sys", "7x", chips=2)
    runtime = FakeRuntime({i: FakeTpuDevice(hbm_used=i * GIB, hbm_total=96 * GIB) for i in range(4)},
                          chip_duty_cycle_pct={0: 10.0, 1: 90.0})  # memory per core, duty cycle per chip
    with running_runtime(runtime) as address:
        source = backend(tmp_path, address)
        readings = source.read(0)
        source.close()
    assert [r.device.uuid for r in readings] == [
        "TPU-tpu-vm-0000:00:04-0", "TPU-tpu-vm-0000:00:04-1", "TPU-tpu-vm-0000:00:05-0", "TPU-tpu-vm-0000:00:05-1"]
    assert [r.device.parent_uuid for r in readings] == ["TPU-tpu-vm-0000:00:04"] * 2 + ["TPU-tpu-vm-0000:00:05"] * 2
    assert [r.util_compute for r in readings] == [0.1, 0.1, 0.9, 0.9]
    assert [r.mem_used_bytes for r in readings] == [0, GIB, 2 * GIB, 3 * GIB]


def test_without_a_runtime_an_unheld_chip_is_idle_and_a_held_one_unknown(tmp_path: Path) -> None:
    pci_bus(tmp_path / "sys", "v5e", chips=2)
    holding(tmp_path / "proc", 7001, "/dev/vfio/1")  # a workload running with its metrics ports off
    source = backend(tmp_path, closed_port())
    idle, held = source.read(0)
    source.close()
    assert (idle.util_compute, idle.mem_used_bytes, idle.mem_total_bytes, idle.processes) == (0.0, 0, 16 * GIB, ())
    assert (held.util_compute, held.mem_used_bytes) == (None, None)
    assert [p.pid for p in held.processes or ()] == [7001]
    assert source.read_errors() == {"runtime_metrics_unavailable": 1}


def test_a_node_without_tpus_has_no_tpu_backend(tmp_path: Path) -> None:
    (tmp_path / "sys" / "bus" / "pci" / "devices").mkdir(parents=True)
    with pytest.raises(BackendUnavailable, match="no Google TPU chip"):
        backend(tmp_path, closed_port())

"""The amd backend through the real ``amdsmi`` package over a fake ``libamd_smi.so``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from fleetmeter.collectors.backends import amd
from fleetmeter.collectors.backends.base import BackendUnavailable
from tests.fakes.fake_libamd_smi import NOT_AVAILABLE, FakeAmdGpu, FakeAmdProcess, FakeLibAmdSmi
from tests.fakes.shared_library import loaded_as

MI250X = "AMD Instinct MI250X"


def node() -> list[FakeAmdGpu]:
    """Two MI300X with everything, and an MI250X GCD that lacks the energy counter, the metrics table,
    the process list and memory activity, and reports only average power."""
    return [
        FakeAmdGpu("0d1a-aaaa", gfx_activity=87, umc_activity=41, mm_activity=3, vram_used=100 * 2**30,
                   energy_ticks=1_000_000, ecc_correctable=4, xgmi_read_kb=[10, 20, 30, 0, 0, 0, 40],
                   xgmi_write_kb=[1, 2, 3, 4, 5, 6, 7],
                   processes=[FakeAmdProcess(4242, 60 * 2**30, 0), FakeAmdProcess(4343, 40 * 2**30, 0)]),
        FakeAmdGpu("0d1a-bbbb", gfx_activity=0, vram_used=0),
        FakeAmdGpu("0d1a-cccc", market_name=MI250X, gfx_activity=55, umc_activity=NOT_AVAILABLE,
                   current_socket_power=NOT_AVAILABLE, average_socket_power=320,
                   unsupported={"amdsmi_get_energy_count", "amdsmi_get_gpu_metrics_info",
                                "amdsmi_get_gpu_process_list"}),
    ]


@pytest.fixture
def library(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeLibAmdSmi]:
    with loaded_as(monkeypatch, "libamd_smi.so", FakeLibAmdSmi(node()), "amdsmi") as fake:
        yield fake


def test_every_gpu_is_a_device_with_its_market_name(library: FakeLibAmdSmi) -> None:
    backend = amd.create("mi-node")
    devices = backend.discover()
    assert [(d.uuid, d.index, d.kind, d.vendor, d.model) for d in devices] == [
        ("0d1a-aaaa", 0, "gpu", "amd", "AMD Instinct MI300X"),
        ("0d1a-bbbb", 1, "gpu", "amd", "AMD Instinct MI300X"),
        ("0d1a-cccc", 2, "gpu", "amd", MI250X),
    ]


def test_a_full_gpu_fills_the_normalized_columns(library: FakeLibAmdSmi) -> None:
    reading = amd.create("mi-node").read(0)[0]
    assert (reading.util_compute, reading.util_mem_bw, reading.extras["amd.mm_activity"]) == (0.87, 0.41, 0.03)
    assert (reading.mem_used_bytes, reading.mem_total_bytes) == (100 * 2**30, 192 * 2**30)
    assert (reading.power_w, reading.temp_c, reading.sm_clock_mhz) == (150.0, 40.0, 2100.0)
    # the energy accumulator counts ticks of counter_resolution microjoules (a C float: compare loosely)
    assert reading.counters["energy_j"].value == pytest.approx(1_000_000 * 15.259e-6, rel=1e-6)
    assert reading.counters["ecc_corrected"].value == 4 and reading.counters["ecc_uncorrected"].value == 0
    # XGMI: the seven links' KB added up; the eighth link, absent, reads "N/A" and is left out
    assert reading.counters["nvlink_rx_bytes"].value == (10 + 20 + 30 + 40) * 1024
    assert reading.counters["nvlink_tx_bytes"].value == 28 * 1024
    assert reading.xid_errors is None and reading.throttle_reasons is None  # AMD has neither


def test_a_partial_gpu_leaves_what_it_lacks_null_and_is_not_asked_again(library: FakeLibAmdSmi) -> None:
    backend = amd.create("mi-node")
    for _ in range(3):
        reading = backend.read(0)[2]
    assert reading.util_compute == 0.55 and reading.util_mem_bw is None  # "N/A" memory activity
    assert reading.power_w == 320.0  # MI200 reports average socket power only
    assert "energy_j" not in reading.counters and "nvlink_rx_bytes" not in reading.counters
    assert reading.processes is None
    assert library.calls.count("amdsmi_get_energy_count") == 3 * 2 + 1  # GPU 2 was asked once
    assert backend.read_errors() == {}


def test_each_process_share_of_the_gpu_comes_from_its_engine_time(library: FakeLibAmdSmi) -> None:
    backend = amd.create("mi-node")
    first = backend.read(10_000)[0]
    assert [(p.pid, p.used_memory_bytes, p.sm_util) for p in first.processes or ()] == [
        (4242, 60 * 2**30, None), (4343, 40 * 2**30, None)]  # no engine time to compare with yet
    gpu = library.gpus[0]
    gpu.processes[0].gfx_ns += 6_000_000_000  # 6 s of GFX time in a 10 s interval
    gpu.processes[1].gfx_ns += 2_500_000_000
    second = backend.read(20_000)[0]
    assert [p.sm_util for p in second.processes or ()] == [0.6, 0.25]


def test_a_failing_call_is_counted_by_status_and_asked_again(library: FakeLibAmdSmi) -> None:
    backend = amd.create("mi-node")
    library.gpus[1].failing["amdsmi_get_gpu_activity"] = 0xFFFFFFFF  # AMDSMI_STATUS_UNKNOWN_ERROR
    assert backend.read(0)[1].util_compute is None
    del library.gpus[1].failing["amdsmi_get_gpu_activity"]
    assert backend.read(0)[1].util_compute == 0.0
    assert backend.read_errors() == {"AMDSMI_STATUS_UNKNOWN_ERROR": 1}


def test_no_driver_means_the_backend_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    with loaded_as(monkeypatch, "libamd_smi.so", FakeLibAmdSmi(node(), driver_loaded=False), "amdsmi"), \
            pytest.raises(BackendUnavailable, match="amdgpu driver"):
        amd.create("mi-node")


def test_without_rocm_the_message_names_the_missing_library(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(BackendUnavailable, match=r"libamd_smi\.so"):
        amd.create("mi-node")  # the real amdsmi package, and no libamd_smi.so on this machine
    assert capsys.readouterr().out == ""  # amdsmi's own print is kept off the daemon's stdout

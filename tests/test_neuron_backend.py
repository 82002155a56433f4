"""The Neuron backend against a stand-in ``neuron-monitor`` replaying reports in the tool's JSON format."""

from __future__ import annotations

import copy
import io
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from fleetmeter.collectors.backends.base import BackendUnavailable
from fleetmeter.collectors.backends.neuron import NeuronBackend, _Reports, create, monitor_config
from fleetmeter.collectors.readings import DeviceReading
from fleetmeter.collectors.settings import NeuronSettings

FIXTURES = Path(__file__).parent / "fixtures"
REPORTS = FIXTURES / "neuron" / "reports.jsonl"
INSTANCE = "i-0123456789abcdef0"
GIB = 1 << 30
#: The metric groups the neuron-monitor user guide (SDK 2.30) lists at each level of the configuration.
RUNTIME_GROUPS = {"neuroncore_counters", "memory_used", "neuron_runtime_vcpu_usage", "execution_stats"}
SYSTEM_GROUPS = {"neuron_hw_counters", "vcpu_usage", "memory_info"}


def started(tmp_path: Path, reports: int) -> NeuronBackend:
    """The backend reading the first ``reports`` recorded reports, once they have all arrived."""
    replay = tmp_path / "reports.jsonl"
    replay.write_text("\n".join(REPORTS.read_text().splitlines()[:reports]) + "\n")
    command = [sys.executable, str(FIXTURES / "fake_neuron_monitor.py"), "--reports", str(replay)]
    backend = create("trn-node", NeuronSettings(command=command, period_s=5))
    deadline = time.monotonic() + 20
    while backend.reports_read < reports and time.monotonic() < deadline:
        time.sleep(0.05)
    assert backend.reports_read == reports
    return backend


def by_core(readings: list[DeviceReading]) -> dict[int, DeviceReading]:
    return {reading.device.index: reading for reading in readings}


def first_report() -> dict[str, Any]:
    """The recording's complete report, to alter case by case."""
    report: dict[str, Any] = json.loads(REPORTS.read_text().splitlines()[0])
    return copy.deepcopy(report)


def read_one(report: Mapping[str, Any]) -> tuple[dict[int, DeviceReading], Mapping[str, int]]:
    """The backend's readings of one report handed straight to its reader (no process), and its read errors."""
    reports = _Reports(io.StringIO(json.dumps(report) + "\n"))
    reports.run()
    backend = NeuronBackend("trn-node", NeuronSettings(), reports)
    return by_core(backend.read(0)), backend.read_errors()


def runtime(report: dict[str, Any], pid: int) -> dict[str, Any]:
    entry: dict[str, Any] = next(r for r in report["neuron_runtime_data"] if r["pid"] == pid)
    return entry


def test_neuroncores_are_devices_with_utilization_and_memory_summed_over_runtimes(tmp_path: Path) -> None:
    backend = started(tmp_path, reports=1)
    try:
        cores = by_core(backend.read(0))
    finally:
        backend.close()
    assert sorted(cores) == [0, 1, 2, 3]  # 2 devices x 2 cores
    first = cores[0].device
    assert (first.uuid, first.kind, first.vendor, first.model, first.parent_uuid) == (
        f"NC-{INSTANCE}-0", "neuron_core", "aws", "AWS Trainium NeuronCore-v2", f"ND-{INSTANCE}-0")
    assert cores[3].device.parent_uuid == f"ND-{INSTANCE}-1"
    # runtime 20843 holds cores 0 and 1, runtime 21050 core 2; core 3 is idle
    assert [cores[i].util_compute for i in range(4)] == [0.875, 0.625, 0.25, 0.0]
    assert [cores[i].mem_used_bytes for i in range(4)] == [4_000_000_000, 2_000_000_000, 1_000_000_000, 0]
    assert {cores[i].mem_total_bytes for i in range(4)} == {32 * GIB // 2}  # a 32 GiB device, 2 cores
    assert cores[2].counters["ecc_corrected"].value == 2 + 1  # device 1's DRAM + SRAM events, on its first core
    assert cores[2].counters["ecc_uncorrected"].value == 0
    assert "ecc_corrected" not in cores[3].counters
    assert cores[2].extras["neuron.device_index"] == 1.0
    assert backend.read_errors() == {"unparsable_line": 1}  # the cut-short line, skipped
    assert cores[0].power_w is None and cores[0].temp_c is None  # neuron-monitor reports neither


def test_a_partial_report_leaves_what_failed_null_and_no_ecc_event_is_lost(tmp_path: Path) -> None:
    backend = started(tmp_path, reports=2)  # both reports arrive before the first read
    try:
        cores = by_core(backend.read(0))
    finally:
        backend.close()
    assert all(cores[i].util_compute is None for i in range(4))  # every runtime's counters failed
    assert cores[0].mem_used_bytes == 4_000_000_000  # memory still came through
    assert cores[2].counters["ecc_corrected"].value == (2 + 1) + (3 + 2)  # both periods', DRAM + SRAM
    assert cores[2].counters["ecc_uncorrected"].value == (0 + 0) + (1 + 1)
    assert backend.read_errors()["neuroncore_counters"] == 1


def test_runtimes_are_asked_only_for_runtime_level_groups() -> None:
    config = monitor_config(5)
    requested = {metric["type"] for entry in config["neuron_runtimes"] for metric in entry["metrics"]}
    assert requested == {"neuroncore_counters", "memory_used"} and requested <= RUNTIME_GROUPS
    assert {metric["type"] for metric in config["system_metrics"]} == {"neuron_hw_counters"} <= SYSTEM_GROUPS


def test_memory_without_a_per_core_breakdown_is_unknown_not_zero() -> None:
    report = first_report()  # as neuron-monitor before SDK 2.4 reports it: device totals only
    for entry in report["neuron_runtime_data"]:
        del entry["report"]["memory_used"]["neuron_runtime_used_bytes"]["usage_breakdown"]["neuroncore_memory_usage"]
    cores, errors = read_one(report)
    assert [cores[i].mem_used_bytes for i in range(4)] == [None] * 4
    assert [cores[i].util_compute for i in range(4)] == [0.875, 0.625, 0.25, 0.0]
    assert errors == {"memory_used_unreadable": 1}


def test_a_non_numeric_memory_figure_leaves_that_core_unknown() -> None:
    report = first_report()
    usage = runtime(report, 21050)["report"]["memory_used"]["neuron_runtime_used_bytes"]["usage_breakdown"]
    usage["neuroncore_memory_usage"]["2"]["tensors"] = "n/a"
    cores, errors = read_one(report)
    assert [cores[i].mem_used_bytes for i in range(4)] == [4_000_000_000, 2_000_000_000, None, 0]
    assert errors == {"memory_used_unreadable": 1}


def test_a_failed_runtime_leaves_the_cores_no_healthy_runtime_uses_unknown() -> None:
    report = first_report()
    runtime(report, 21050).update(error="rpc error: code = Unavailable", report={})
    cores, errors = read_one(report)
    assert [cores[i].util_compute for i in range(4)] == [0.875, 0.625, None, None]  # 2 and 3: maybe 21050's
    assert [cores[i].mem_used_bytes for i in range(4)] == [4_000_000_000, 2_000_000_000, None, None]
    assert errors == {"runtime": 1}


def test_a_runtime_whose_counters_failed_leaves_the_cores_no_healthy_runtime_uses_unknown() -> None:
    report = first_report()
    runtime(report, 21050)["report"]["neuroncore_counters"]["error"] = "context deadline exceeded"
    cores, errors = read_one(report)
    assert [cores[i].util_compute for i in range(4)] == [0.875, 0.625, None, None]
    assert [cores[i].mem_used_bytes for i in range(4)] == [4_000_000_000, 2_000_000_000, 1_000_000_000, 0]
    assert errors == {"neuroncore_counters": 1}


def test_without_the_device_memory_size_the_capacity_is_unknown() -> None:
    report = first_report()  # neuron-monitor before SDK 2.19
    del report["neuron_hardware_info"]["neuron_device_memory_size"]
    cores, _ = read_one(report)
    assert {cores[i].mem_total_bytes for i in range(4)} == {None}


def test_a_stale_report_gives_no_readings(tmp_path: Path) -> None:
    backend = started(tmp_path, reports=1)
    backend.settings = NeuronSettings(command=backend.settings.command, period_s=0.01)  # three periods: 30 ms
    time.sleep(0.1)
    try:
        assert backend.read(0) == [] and backend.read_errors()["stale_report"] == 1
    finally:
        backend.close()


def test_without_neuron_monitor_the_backend_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(BackendUnavailable, match="aws-neuronx-tools"):
        create("n", NeuronSettings(command=[str(tmp_path / "neuron-monitor")]))

"""The Neuron backend against a stand-in ``neuron-monitor`` replaying reports in the tool's JSON format."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from fleetmeter.collectors.backends.base import BackendUnavailable
from fleetmeter.collectors.backends.neuron import NeuronBackend, create
from fleetmeter.collectors.readings import DeviceReading
from fleetmeter.collectors.settings import NeuronSettings

FIXTURES = Path(__file__).parent / "fixtures"
REPORTS = FIXTURES / "neuron" / "reports.jsonl"
INSTANCE = "i-0123456789abcdef0"


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
    assert cores[2].counters["ecc_corrected"].value == 2  # device 1's events, on its first core
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
    assert cores[2].counters["ecc_corrected"].value == 2 + 3  # both periods' events
    assert cores[2].counters["ecc_uncorrected"].value == 1
    assert backend.read_errors()["neuroncore_counters"] == 1


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

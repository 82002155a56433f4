"""One node with every vendor's accelerators, end to end: NVML (fake driver), amdsmi and pyhlml (their real
packages over fake C libraries), libtpu's metrics service (a real gRPC server), neuron-monitor (a replaying
stand-in) -> collector daemon -> Kafka -> pipeline -> rollups grouped by vendor and model."""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from fleetmeter.collectors.backends import open_backends
from fleetmeter.collectors.backends.nvml import NvmlBackend
from fleetmeter.collectors.daemon import CollectorDaemon
from fleetmeter.demo.broker import EmbeddedBroker
from fleetmeter.pipeline.worker import PipelineWorker
from tests.conftest import StepClock, collector_settings
from tests.fakes.fake_libamd_smi import FakeAmdGpu, FakeLibAmdSmi
from tests.fakes.fake_libhlml import GIB, FakeGaudi, FakeLibHlml
from tests.fakes.fake_nvml import FakeNvml
from tests.fakes.fake_tpu_runtime import FakeRuntime, FakeTpuDevice, pci_bus, running_runtime
from tests.fakes.shared_library import loaded_as
from tests.pipeline.fleet import hours_ago, pipeline_settings, read_table, topic_rows, unique_valid

FIXTURES = Path(__file__).parent / "fixtures"
NODE = "mixed-0"
SCRAPES = 7  # six 10-second intervals
INTERVAL_S = 10.0
AMD_TICKS_PER_SCRAPE = 1_000_000  # of 15.259 uJ (a C float)
GAUDI_MJ_PER_SCRAPE = 4_000_000


def test_every_vendor_reports_every_device_and_rollups_split_by_vendor_and_model(
        kafka_broker: EmbeddedBroker, topic: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    amd_gpus = [FakeAmdGpu("amd-0", gfx_activity=80, vram_used=50 * GIB),
                FakeAmdGpu("amd-1", market_name="AMD Instinct MI250X", gfx_activity=20,
                           unsupported={"amdsmi_get_energy_count"})]
    gaudis = [FakeGaudi("gaudi-0", aip_util=60), FakeGaudi("gaudi-1", aip_util=0,
                                                           unsupported={"hlml_device_get_memory_info"})]
    runtime = FakeRuntime({0: FakeTpuDevice(duty_cycle_pct=90.0, hbm_used=8 * GIB),
                           1: FakeTpuDevice(duty_cycle_pct=30.0, hbm_used=2 * GIB)})
    pci_bus(tmp_path / "sys", "v5e", chips=2)
    first_report = tmp_path / "neuron-report.jsonl"  # the recording's complete one
    first_report.write_text((FIXTURES / "neuron" / "reports.jsonl").read_text().splitlines()[0] + "\n")
    monitor = [sys.executable, str(FIXTURES / "fake_neuron_monitor.py"), "--reports", str(first_report)]
    kafka_broker.create_topic(topic, partitions=2)
    with loaded_as(monkeypatch, "libamd_smi.so", FakeLibAmdSmi(amd_gpus), "amdsmi"), \
            loaded_as(monkeypatch, "libhlml.so", FakeLibHlml(gaudis), "pyhlml"), running_runtime(runtime) as address:
        settings = collector_settings(
            tmp_path, kafka_broker.bootstrap_servers, topic, node=NODE, interval_s=INTERVAL_S,
            backends=["amd", "gaudi", "tpu", "neuron"],
            tpu={"addresses": [address], "sys_root": tmp_path / "sys"},
            neuron={"command": monitor, "period_s": 60}, attribution={"proc_root": tmp_path / "proc"})
        backends = [NvmlBackend(NODE, FakeNvml()), *open_backends(settings)]
        neuron = backends[-1]
        deadline = time.monotonic() + 20
        while not neuron.discover() and time.monotonic() < deadline:  # the first report is on its way
            time.sleep(0.05)
        daemon = CollectorDaemon(settings, backends)
        daemon.clock = StepClock(start_ms=hours_ago(1), step_ms=int(INTERVAL_S * 1000))
        daemon.sender.start()
        for _ in range(SCRAPES):
            daemon.scrape_once()
            amd_gpus[0].energy_ticks += AMD_TICKS_PER_SCRAPE
            gaudis[0].energy_mj += GAUDI_MJ_PER_SCRAPE
        daemon.shutdown()
    PipelineWorker(pipeline_settings(kafka_broker.bootstrap_servers, topic, tmp_path / "warehouse")).run()

    rows = unique_valid(topic_rows(kafka_broker.bootstrap_servers, topic))
    by_device: dict[str, list[dict[str, object]]] = defaultdict(list)
    for row in rows:
        by_device[str(row["device_uuid"])].append(row)
    discovered = {device.uuid: device for backend in backends for device in backend.discover()}
    assert set(by_device) == set(discovered)  # a row for every device of every vendor...
    assert {len(device_rows) for device_rows in by_device.values()} == {SCRAPES - 1}  # ...at every interval
    assert {(d.vendor, d.kind) for d in discovered.values()} == {
        ("nvidia", "gpu"), ("nvidia", "mig"), ("amd", "gpu"), ("intel", "hpu"), ("google", "tpu"),
        ("aws", "neuron_core")}

    def columns(uuid: str, *names: str) -> set[tuple[object, ...]]:
        return {tuple(row[name] for name in names) for row in by_device[uuid]}

    # the documented mapping, per vendor, from the fakes' own figures
    assert columns("amd-0", "util_compute", "mem_used_bytes", "power_w") == {(0.8, 50 * GIB, 150.0)}
    assert {round(float(e), 6) for (e,) in columns("amd-0", "energy_j")} == {
        round(AMD_TICKS_PER_SCRAPE * 15.259e-6, 6)}
    assert columns("amd-1", "util_compute", "energy_j") == {(0.2, 150.0 * INTERVAL_S)}  # no counter: power x time
    assert columns("gaudi-0", "util_compute", "energy_j", "temp_c") == {(0.6, GAUDI_MJ_PER_SCRAPE / 1000, 35.0)}
    assert columns("gaudi-1", "util_compute", "mem_used_bytes") == {(0.0, None)}
    tpu_rows = {uuid: columns(uuid, "util_compute", "mem_used_bytes", "model")
                for uuid, device in discovered.items() if device.vendor == "google"}
    assert sorted(tpu_rows.values(), key=str) == [{(0.3, 2 * GIB, "Google TPU v5e")},
                                                  {(0.9, 8 * GIB, "Google TPU v5e")}]
    neuron_util = sorted(u for uuid, d in discovered.items() if d.vendor == "aws"
                         for (u,) in columns(uuid, "util_compute"))
    assert neuron_util == [0.0, 0.25, 0.625, 0.875]  # the recording's first report, per NeuronCore
    neuron_memory = {row for uuid, d in discovered.items() if d.vendor == "aws"
                     for row in columns(uuid, "mem_used_bytes", "mem_total_bytes")}
    assert neuron_memory == {(used, 16 * GIB) for used in (4_000_000_000, 2_000_000_000, 1_000_000_000, 0)}

    # rollups: device-seconds and busy seconds per vendor and model, against sums over the topic's rows
    expected: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for row in rows:
        mig_parent = dict(row["extras"] or []).get("mig.enabled", 0) > 0
        seconds = 0.0 if mig_parent else float(row["interval_s"])
        totals = expected[(str(row["vendor"]), str(row["model"]))]
        totals[0] += seconds
        totals[1] += seconds * float(row["util_compute"] or 0.0)
    stored: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    for window in read_table(tmp_path / "warehouse", "util_1h"):
        totals = stored[(window["vendor"], window["model"])]
        totals[0] += window["device_seconds"]
        totals[1] += window["busy_seconds"]
    assert set(stored) == set(expected) and len({vendor for vendor, _ in stored}) == 5
    for key, (device_seconds, busy_seconds) in expected.items():
        assert stored[key] == [pytest.approx(device_seconds), pytest.approx(busy_seconds)], key
    intervals = (SCRAPES - 1) * INTERVAL_S
    assert expected[("amd", "AMD Instinct MI250X")][0] == intervals
    assert expected[("google", "Google TPU v5e")][0] == 2 * intervals

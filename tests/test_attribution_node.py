"""One node with every kind of owner, end to end: NVML (fake driver) -> attribution (a real gRPC kubelet,
a real HTTP API server, /proc fixtures, squeue) -> Kafka -> pipeline -> rollups."""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import pytest

from fleetmeter.collectors.backends.nvml import NvmlBackend
from fleetmeter.collectors.daemon import CollectorDaemon
from fleetmeter.demo.broker import EmbeddedBroker
from fleetmeter.pipeline.worker import PipelineWorker
from fleetmeter.schemas.sample_v1_columns import SHARE_BY_PROCESS_UTIL, SHARE_EQUALLY
from tests.cluster import NODE, TOKEN, UID_CGROUPFS, UID_SYSTEMD, api_pod, pod, running_api_server, running_kubelet
from tests.conftest import StepClock, collector_settings
from tests.fakes.fake_nvml import GIB, FakeNvml
from tests.pipeline.fleet import hours_ago, pipeline_settings, read_table, topic_rows, unique_valid

FIXTURES = Path(__file__).parent / "fixtures"
SCRAPES = 13  # twelve 10-second intervals
INTERVAL_S = 10.0


def test_every_device_second_goes_to_the_right_owner(kafka_broker: EmbeddedBroker, topic: str,
                                                     tmp_path: Path) -> None:
    fake = FakeNvml()
    gpu = fake.gpus
    mig_big, mig_small = (slot for slot in gpu[6].mig_slots if slot is not None)
    gpu[2].processes = [(1004, GIB), (1005, GIB)]  # time-sliced between two pods
    gpu[3].processes = [(1001, GIB)]  # Slurm job 4242
    gpu[4].processes = [(1001, GIB), (1002, GIB)]  # Slurm jobs 4242 and 5151, no per-process figures
    token = tmp_path / "token"
    token.write_text(TOKEN)
    kafka_broker.create_topic(topic, partitions=1)
    with running_kubelet(tmp_path / "kubelet.sock") as kubelet, running_api_server() as api:
        kubelet.pods = [
            pod("ml", "trainer-0", ("nvidia.com/gpu", [gpu[0].uuid, gpu[1].uuid])),
            pod("a", "one", ("nvidia.com/gpu", [f"{gpu[2].uuid}::0"])),
            pod("b", "two", ("nvidia.com/gpu", [f"{gpu[2].uuid}::1"])),
            pod("ml", "notebook", ("nvidia.com/mig-3g.40gb", [mig_big.uuid])),
        ]
        api.pods = [
            api_pod("ml", "trainer-0", "u0", labels={"team": "research", "training.kubeflow.org/job-name": "llm"}),
            api_pod("a", "one", UID_SYSTEMD, labels={"team": "tenant-a"}),
            api_pod("b", "two", UID_CGROUPFS, labels={"team": "tenant-b"}),
            api_pod("ml", "notebook", "u3", annotations={"fleetmeter.io/tenant": "vision"}, owner="nb"),
        ]
        attribution = {
            "proc_root": FIXTURES / "proc",
            "kubernetes": {"enabled": True, "pod_resources_socket": tmp_path / "kubelet.sock", "api_server": api.url,
                           "token_file": token, "ca_file": None},
            "slurm": {"enabled": True, "squeue": [sys.executable, str(FIXTURES / "fake_squeue.py")]},
        }
        settings = collector_settings(tmp_path, kafka_broker.bootstrap_servers, topic, backends=["nvml"], node=NODE,
                                      interval_s=INTERVAL_S, attribution=attribution)
        daemon = CollectorDaemon(settings, [NvmlBackend(NODE, fake)])
        daemon.clock = StepClock(start_ms=hours_ago(1), step_ms=int(INTERVAL_S * 1000))
        daemon.sender.start()
        for scrape in range(SCRAPES):
            ts_us = (scrape + 1) * 10_000_000
            gpu[2].process_samples += [(ts_us, 1004, 60), (ts_us, 1005, 20)]
            daemon.scrape_once()
        daemon.shutdown()
    for source in ("kubernetes", "slurm"):  # every source answered: nothing fell back
        assert daemon.registry.get_sample_value("fleetmeter_collector_attribution_errors_total",
                                                {"source": source}) == 0
    PipelineWorker(pipeline_settings(kafka_broker.bootstrap_servers, topic, tmp_path / "warehouse")).run()

    rows = unique_valid(topic_rows(kafka_broker.bootstrap_servers, topic))
    owners: dict[str, set[tuple[str, str | None, float | None, str | None]]] = defaultdict(set)
    for row in rows:
        share = None if row["share"] is None else round(row["share"], 9)
        owners[row["device_uuid"]].add((row["tenant"], row["job_id"], share, row["share_rule"]))
    assert owners[gpu[0].uuid] == owners[gpu[1].uuid] == {("research", "llm", None, None)}
    assert owners[gpu[2].uuid] == {("tenant-a", "one", 0.75, SHARE_BY_PROCESS_UTIL),  # 60 % vs 20 % SM
                                   ("tenant-b", "two", 0.25, SHARE_BY_PROCESS_UTIL)}
    assert owners[gpu[3].uuid] == {("research", "4242", None, None)}
    assert owners[gpu[4].uuid] == {("research", "4242", 0.5, SHARE_EQUALLY), ("vision", "5151", 0.5, SHARE_EQUALLY)}
    assert owners[mig_big.uuid] == {("vision", "nb", None, None)}
    for unowned in (mig_small.uuid, gpu[5].uuid, gpu[6].uuid, gpu[7].uuid):
        assert owners[unowned] == {("unallocated", None, None, None)}

    # The rollups charge each tenant its device-seconds, and together they are the node's capacity:
    # 7 GPUs not in MIG mode and 2 MIG instances (the MIG-mode GPU adds none) for 12 intervals.
    per_tenant: dict[str, float] = defaultdict(float)
    for window in read_table(tmp_path / "warehouse", "util_1h"):
        per_tenant[window["tenant"]] += window["device_seconds"]
    intervals = (SCRAPES - 1) * INTERVAL_S
    assert per_tenant == {
        "research": pytest.approx((2 + 1 + 0.5) * intervals),
        "tenant-a": pytest.approx(0.75 * intervals),
        "tenant-b": pytest.approx(0.25 * intervals),
        "vision": pytest.approx((1 + 0.5) * intervals),
        "unallocated": pytest.approx(3 * intervals),
    }
    assert sum(per_tenant.values()) == pytest.approx(9 * intervals)

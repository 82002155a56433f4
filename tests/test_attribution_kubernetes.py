"""Kubernetes attribution against a real gRPC PodResources server on a unix socket (stubs generated from
the proto) and a real HTTP server answering the API server's pod list, with /proc fixtures for processes."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from fleetmeter.collectors.attribution.kubernetes import KubernetesPods, KubernetesSettings
from fleetmeter.collectors.attribution.procfs import Procfs
from fleetmeter.collectors.attribution.sharing import split
from fleetmeter.collectors.readings import Device, DeviceReading, Owner, ProcessUsage, Workload
from fleetmeter.schemas.sample_v1_columns import SHARE_BY_PROCESS_UTIL
from tests.cluster import (
    NODE,
    TOKEN,
    UID_CGROUPFS,
    UID_SYSTEMD,
    ApiServer,
    Kubelet,
    api_pod,
    pod,
    running_api_server,
    running_kubelet,
)

PROC = Procfs(Path(__file__).parent / "fixtures" / "proc")


@pytest.fixture
def kubelet(tmp_path: Path) -> Iterator[tuple[Kubelet, Path]]:
    socket = tmp_path / "kubelet.sock"
    with running_kubelet(socket) as servicer:
        yield servicer, socket


@pytest.fixture
def api_server() -> Iterator[ApiServer]:
    with running_api_server() as server:
        yield server


def source(socket: Path, api: ApiServer | None, tmp_path: Path, clock: list[float] | None = None,
           **overrides: Any) -> KubernetesPods:
    token = tmp_path / "token"
    token.write_text(TOKEN + "\n")
    settings = KubernetesSettings(enabled=True, pod_resources_socket=socket, token_file=token, ca_file=None,
                                  api_server=api.url if api else None, **overrides)
    now = clock if clock is not None else [0.0]
    return KubernetesPods(settings, NODE, PROC, clock=lambda: now[0])


def device(uuid: str, index: int = 0, processes: tuple[ProcessUsage, ...] = (), vendor: str = "nvidia",
           ) -> DeviceReading:
    return DeviceReading(device=Device(NODE, uuid, index, "gpu", vendor, "H100"), processes=processes)


def owners(found: KubernetesPods, reading: DeviceReading) -> list[Owner]:
    """The owners (tenant and job) of the claims on a device."""
    return [replace(claim.owner, workload=None) for claim in found.claims(reading)]


def workloads(found: KubernetesPods, reading: DeviceReading) -> list[Workload | None]:
    return [claim.owner.workload for claim in found.claims(reading)]


def test_pods_devices_and_the_rules_for_tenant_and_job(kubelet: tuple[Kubelet, Path], api_server: ApiServer,
                                                       tmp_path: Path) -> None:
    servicer, socket = kubelet
    servicer.pods = [
        pod("ml", "trainer-0", ("nvidia.com/gpu", ["GPU-aaa", "GPU-bbb"])),
        pod("ml", "notebook", ("nvidia.com/mig-1g.10gb", ["MIG-ccc"])),
        pod("team-x", "serve-7f9", ("google.com/tpu", ["3"])),
        pod("default", "no-metadata", ("nvidia.com/gpu", ["GPU-ddd"])),
    ]
    api_server.pods = [
        api_pod("ml", "trainer-0", "u1", labels={"team": "research", "jobset.sigs.k8s.io/jobset-name": "llm-7b"},
                owner="llm-7b-workers"),
        api_pod("ml", "notebook", "u2", annotations={"fleetmeter.io/tenant": "vision"}, owner="nb-set"),
        api_pod("team-x", "serve-7f9", "u3"),
    ]
    found = source(socket, api_server, tmp_path)
    found.refresh()
    assert owners(found, device("GPU-aaa")) == [Owner("research", "llm-7b")]  # label team; JobSet label
    assert owners(found, device("GPU-bbb", 1)) == [Owner("research", "llm-7b")]
    assert owners(found, device("MIG-ccc")) == [Owner("vision", "nb-set")]  # annotation; its controller
    assert owners(found, device("TPU-x", index=3, vendor="google")) == [Owner("team-x", "serve-7f9")]  # namespace
    assert owners(found, device("GPU-other", index=3)) == []  # an NVIDIA GPU is never matched by index
    assert owners(found, device("GPU-ddd")) == [Owner("default", "no-metadata")]  # the API has not seen it
    assert owners(found, device("GPU-free")) == []  # not assigned: another source may know
    assert workloads(found, device("GPU-bbb", 1)) == [Workload("ml", "trainer-0", "main")]
    assert workloads(found, device("TPU-x", index=3, vendor="google")) == [Workload("team-x", "serve-7f9", "main")]
    assert api_server.requests and all("spec.nodeName" in request for request in api_server.requests)


def test_a_time_sliced_gpu_is_split_by_its_pods_processes(kubelet: tuple[Kubelet, Path], api_server: ApiServer,
                                                          tmp_path: Path) -> None:
    servicer, socket = kubelet
    servicer.pods = [pod("a", "one", ("nvidia.com/gpu", ["GPU-shared::0"])),
                     pod("b", "two", ("nvidia.com/gpu", ["GPU-shared::1"]))]
    api_server.pods = [api_pod("a", "one", UID_SYSTEMD, labels={"team": "ta"}),
                       api_pod("b", "two", UID_CGROUPFS, labels={"team": "tb"})]
    found = source(socket, api_server, tmp_path)
    found.refresh()
    reading = device("GPU-shared", processes=(ProcessUsage(1004, 1, 0.6), ProcessUsage(1005, 1, 0.2)))
    claims = found.claims(reading)
    assert {(c.owner, c.pids) for c in claims} == {
        (Owner("ta", "one", Workload("a", "one", "main")), frozenset({1004})),
        (Owner("tb", "two", Workload("b", "two", "main")), frozenset({1005}))}
    shares = {s.owner.tenant: (s.fraction, s.rule, s.workloads) for s in split(reading, claims)}
    assert shares == {
        "ta": (pytest.approx(0.75), SHARE_BY_PROCESS_UTIL, ((Workload("a", "one", "main"), 1.0, {1004}),)),
        "tb": (pytest.approx(0.25), SHARE_BY_PROCESS_UTIL, ((Workload("b", "two", "main"), 1.0, {1005}),))}


def test_the_cost_is_bounded_by_caching(kubelet: tuple[Kubelet, Path], api_server: ApiServer,
                                        tmp_path: Path) -> None:
    servicer, socket = kubelet
    servicer.pods = [pod("ml", "p0", ("nvidia.com/gpu", ["GPU-0"]))]
    api_server.pods = [api_pod("ml", "p0", "u0")]
    clock = [0.0]
    found = source(socket, api_server, tmp_path, clock)
    for second in range(600):  # ten minutes of scrapes every second
        clock[0] = float(second)
        if second == 305:  # a new pod appears: listed at 310, its metadata fetched then, not at 360
            servicer.pods.append(pod("ml", "p1", ("nvidia.com/gpu", ["GPU-1"])))
            api_server.pods.append(api_pod("ml", "p1", "u1", labels={"team": "late"}))
        found.refresh()
        owners(found, device("GPU-0"))
        if second == 310:
            assert owners(found, device("GPU-1")) == [Owner("late", "p1")]
    assert servicer.calls == 60  # List every pod_resources_ttl_s (10 s)
    assert len(api_server.requests) == 11  # at 0, 60, ..., 300, then 310 for the new pod, 370, ..., 550


def test_a_missing_kubelet_or_api_server_degrades_without_failing(api_server: ApiServer, tmp_path: Path) -> None:
    found = source(tmp_path / "no-kubelet.sock", None, tmp_path)
    found.refresh()
    assert found.errors == 1 and owners(found, device("GPU-0")) == []
    bad = source(tmp_path / "no-kubelet.sock", ApiServer("http://127.0.0.1:9"), tmp_path)
    bad.refresh()
    assert bad.errors == 2  # kubelet, then the API server

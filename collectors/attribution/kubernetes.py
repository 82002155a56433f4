"""Kubernetes: a device belongs to the pods the kubelet assigned it to.

Which containers hold which devices comes from the kubelet's PodResources gRPC API on its unix socket
(``List``, listed at most every ``pod_resources_ttl_s``). Device ids are GPU or MIG UUIDs (NVIDIA; a
time-slicing replica ``<uuid>::<n>`` counts as its GPU, so a shared GPU has several pods), or device
indices for the resources in ``index_resources`` (TPU, Neuron, Gaudi plugins). Who a pod is (tenant and
job) comes from its labels, annotations, namespace and owner, read from the API server with the node's
service account: one list of this node's pods, refreshed every ``metadata_ttl_s`` and, when a pod it has
not seen appears, at most every ``min_metadata_interval_s``. Never a call per scrape or per device.
"""

from __future__ import annotations

import os
import re
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import structlog
from pydantic import Field, field_validator

from fleetmeter.collectors.attribution.procfs import Procfs
from fleetmeter.collectors.attribution.sharing import Claim
from fleetmeter.collectors.readings import Device, DeviceReading, Owner, Workload
from fleetmeter.common.settings import Section

log = structlog.get_logger(__name__)

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
#: A pod's UID in a container's cgroup path: ``pod<uid>`` (cgroupfs) or ``pod<uid with _>.slice`` (systemd).
_POD_UID_IN_CGROUP = re.compile(r"pod([0-9a-f]{8}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{4}[-_][0-9a-f]{12})")
_RULE = re.compile(r"^(label:.+|annotation:.+|namespace|pod|owner)$")

PodKey = tuple[str, str]  # (namespace, name)


class KubernetesSettings(Section):
    enabled: bool = False
    pod_resources_socket: Path = Path("/var/lib/kubelet/pod-resources/kubelet.sock")
    pod_resources_ttl_s: float = Field(default=10.0, ge=0,
                                       description="List device assignments at most this often.")
    api_server: str | None = Field(
        default=None, description="API server URL; default: from KUBERNETES_SERVICE_HOST/PORT (in-cluster).")
    token_file: Path = SERVICE_ACCOUNT / "token"
    ca_file: Path | None = SERVICE_ACCOUNT / "ca.crt"
    metadata_ttl_s: float = Field(default=60.0, gt=0, description="Re-list this node's pods this often.")
    min_metadata_interval_s: float = Field(default=10.0, ge=0,
                                           description="... and at most this often when a new pod appears.")
    tenant_from: list[str] = Field(
        default=["label:fleetmeter.io/tenant", "annotation:fleetmeter.io/tenant", "label:team", "namespace"],
        description="Where a pod's tenant is read, first present wins: label:<key>, annotation:<key>, namespace.")
    job_from: list[str] = Field(
        default=["label:fleetmeter.io/job", "label:jobset.sigs.k8s.io/jobset-name",
                 "label:training.kubeflow.org/job-name", "label:volcano.sh/job-name", "label:ray.io/cluster",
                 "label:batch.kubernetes.io/job-name", "owner", "pod"],
        description="Where a pod's job is read, first present wins; also owner (its controller) and pod.")
    index_resources: list[str] = Field(
        default=["google.com/tpu", "aws.amazon.com/neuron", "aws.amazon.com/neuroncore", "habana.ai/gaudi"],
        description="Resources whose device ids are device indices rather than UUIDs.")

    @field_validator("tenant_from", "job_from")
    @classmethod
    def _known_rules(cls, rules: list[str]) -> list[str]:
        unknown = [rule for rule in rules if not _RULE.match(rule)]
        if unknown:
            raise ValueError(f"unknown rule(s) {unknown}: use label:<key>, annotation:<key>, namespace, pod or owner")
        return rules


@dataclass(frozen=True)
class Pod:
    """What the API server says about a pod (what attribution needs of it)."""

    uid: str
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    controller: str | None = None

    @classmethod
    def from_api(cls, item: dict[str, Any]) -> Pod:
        meta = item.get("metadata") or {}
        owners = meta.get("ownerReferences") or []
        controller = next((o.get("name") for o in owners if o.get("controller")), None)
        return cls(meta.get("uid", ""), meta.get("labels") or {}, meta.get("annotations") or {},
                   controller or (owners[0].get("name") if owners else None))


def rule_value(rule: str, key: PodKey, pod: Pod | None) -> str | None:
    """What one rule (``label:<key>``, ``annotation:<key>``, ``owner``, ``namespace``, ``pod``) reads of a pod."""
    kind, _, arg = rule.partition(":")
    if kind == "namespace":
        return key[0]
    if kind == "pod":
        return key[1]
    if pod is None:  # labels, annotations and the controller need the API server's metadata
        return None
    if kind == "label":
        return pod.labels.get(arg)
    if kind == "annotation":
        return pod.annotations.get(arg)
    return pod.controller


def owner_of(settings: KubernetesSettings, key: PodKey, pod: Pod | None) -> Owner:
    """A pod's tenant and job: the first rule of each list that finds a value."""

    def first(rules: list[str]) -> str | None:
        return next((value for rule in rules if (value := rule_value(rule, key, pod))), None)

    namespace, name = key
    return Owner(first(settings.tenant_from) or namespace, first(settings.job_from) or name)


def in_cluster_api_server() -> str | None:
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    return None if host is None else f"https://{host}:{port}"


class KubernetesPods:
    name = "kubernetes"

    def __init__(self, settings: KubernetesSettings, node: str, procfs: Procfs,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.node = node
        self.procfs = procfs
        self.clock = clock
        self.list_calls = self.api_calls = self.errors = 0
        self.holders: dict[str, set[PodKey]] = {}  # device id (UUID, or resource/index) -> pods holding it
        self.containers: dict[tuple[str, PodKey], str] = {}  # (device id, pod) -> the container holding it
        self.pods: dict[PodKey, Pod] = {}
        self._listed_at = self._described_at = -float("inf")
        # gRPC, protobuf and the HTTP client are imported here, not with the settings: a node without
        # Kubernetes attribution never loads them (about 15 MB of the daemon's memory)
        import grpc

        from fleetmeter.collectors.attribution.kubelet.podresources_v1_pb2_grpc import PodResourcesListerStub

        channel = grpc.insecure_channel(f"unix://{settings.pod_resources_socket}")  # connects when first used
        self._stub = PodResourcesListerStub(channel)  # type: ignore[no-untyped-call]
        self._api_server = settings.api_server or in_cluster_api_server()

    def refresh(self) -> None:
        now = self.clock()
        if now - self._listed_at >= self.settings.pod_resources_ttl_s:
            self._listed_at = now
            self._list_devices()
        unseen = any(key not in self.pods for keys in self.holders.values() for key in keys)
        since = now - self._described_at
        if since >= self.settings.metadata_ttl_s or (unseen and since >= self.settings.min_metadata_interval_s):
            self._described_at = now
            self._describe_pods()

    def claims(self, reading: DeviceReading) -> list[Claim]:
        device = reading.device
        keys = set(self.holders.get(device.uuid, ()))
        if device.vendor != "nvidia":  # the other vendors' device plugins name devices by index
            keys |= self.holders.get(f"index:{device.index}", set())
        if not keys:
            return []
        uids = {self.pods[key].uid.replace("_", "-"): key for key in keys if key in self.pods}
        pids: dict[PodKey, set[int]] = {key: set() for key in keys}
        for process in reading.processes or ():
            key = self._pod_of(process.pid, uids)
            if key is not None:
                pids[key].add(process.pid)
        return [Claim(replace(owner_of(self.settings, key, self.pods.get(key)), workload=self._workload(device, key)),
                      frozenset(pids[key])) for key in sorted(keys)]

    def _workload(self, device: Device, key: PodKey) -> Workload:
        container = (self.containers.get((device.uuid, key))
                     or self.containers.get((f"index:{device.index}", key), ""))
        return Workload(key[0], key[1], container)

    def _pod_of(self, pid: int, uids: dict[str, PodKey]) -> PodKey | None:
        for path in self.procfs.cgroups(pid):
            match = _POD_UID_IN_CGROUP.search(path)
            if match:
                return uids.get(match.group(1).replace("_", "-"))
        return None

    def _list_devices(self) -> None:
        import grpc

        from fleetmeter.collectors.attribution.kubelet import podresources_v1_pb2 as podresources

        self.list_calls += 1
        try:
            response = self._stub.List(podresources.ListPodResourcesRequest(), timeout=5)
        except grpc.RpcError as exc:
            self.errors += 1
            log.warning("kubelet PodResources List failed; keeping the last assignment", error=str(exc))
            return
        holders: dict[str, set[PodKey]] = {}
        containers: dict[tuple[str, PodKey], str] = {}
        for pod in response.pod_resources:
            for container in pod.containers:
                for devices in container.devices:
                    for device_id in devices.device_ids:
                        device_key = self._device_key(devices.resource_name, device_id)
                        holders.setdefault(device_key, set()).add((pod.namespace, pod.name))
                        # two containers of a pod on one (time-sliced) GPU: it is named by the first, by name
                        held = (device_key, (pod.namespace, pod.name))
                        containers[held] = min(containers.get(held, container.name), container.name)
        self.holders, self.containers = holders, containers

    def _device_key(self, resource: str, device_id: str) -> str:
        if resource in self.settings.index_resources:
            return f"index:{device_id}"
        return device_id.split("::", 1)[0]  # a time-slicing replica of a GPU is that GPU

    def _describe_pods(self) -> None:
        if self._api_server is None:
            return  # not in a cluster and none configured: namespace and pod names only
        import httpx

        self.api_calls += 1
        try:
            token = self.settings.token_file.read_text().strip()  # re-read: projected tokens rotate
            verify: ssl.SSLContext | bool = True
            if self._api_server.startswith("https:") and self.settings.ca_file is not None:
                verify = ssl.create_default_context(cafile=str(self.settings.ca_file))
            response = httpx.get(f"{self._api_server}/api/v1/pods",
                                 params={"fieldSelector": f"spec.nodeName={self.node}"},
                                 headers={"Authorization": f"Bearer {token}"}, verify=verify, timeout=10)
            response.raise_for_status()
            items = response.json().get("items") or []
        except (OSError, httpx.HTTPError, ValueError) as exc:  # ssl.SSLError is an OSError
            self.errors += 1
            log.warning("listing this node's pods failed; keeping the last metadata", error=str(exc))
            return
        self.pods = {}
        for item in items:
            meta = item.get("metadata") or {}
            self.pods[(meta.get("namespace", ""), meta.get("name", ""))] = Pod.from_api(item)

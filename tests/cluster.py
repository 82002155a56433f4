"""Real servers standing in for a Kubernetes node's control plane in tests: the kubelet's PodResources
gRPC service on a unix socket (stubs generated from the proto) and an HTTP server answering the API
server's pod list for one node, with the service-account token it expects."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import grpc

from fleetmeter.collectors.attribution.kubelet import podresources_v1_pb2 as pb
from fleetmeter.collectors.attribution.kubelet.podresources_v1_pb2_grpc import (
    PodResourcesListerServicer,
    add_PodResourcesListerServicer_to_server,
)

NODE = "node-a"
TOKEN = "sa-token"
UID_SYSTEMD = "1b4c3f7e-9d2a-4c1e-8f3b-2a6d5e4c3b21"  # pid 1004's pod, as its cgroup path names it
UID_CGROUPFS = "7e1d2c3b-4a5f-6789-abcd-ef0123456789"  # pid 1005's pod


def pod(namespace: str, name: str, *devices: tuple[str, list[str]]) -> pb.PodResources:
    return pb.PodResources(name=name, namespace=namespace, containers=[pb.ContainerResources(
        name="main", devices=[pb.ContainerDevices(resource_name=r, device_ids=ids) for r, ids in devices])])


class Kubelet(PodResourcesListerServicer):
    def __init__(self) -> None:
        self.pods: list[pb.PodResources] = []
        self.calls = 0

    def List(self, request: pb.ListPodResourcesRequest, context: Any) -> pb.ListPodResourcesResponse:
        self.calls += 1
        return pb.ListPodResourcesResponse(pod_resources=self.pods)


@dataclass
class ApiServer:
    url: str
    pods: list[dict[str, Any]] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)


@contextlib.contextmanager
def running_kubelet(socket: Path) -> Iterator[Kubelet]:
    servicer = Kubelet()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    add_PodResourcesListerServicer_to_server(servicer, server)
    server.add_insecure_port(f"unix://{socket}")
    server.start()
    try:
        yield servicer
    finally:
        server.stop(grace=None)


@contextlib.contextmanager
def running_api_server() -> Iterator[ApiServer]:
    state = ApiServer("")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            state.requests.append(self.path)
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                self.send_response(401)
                self.end_headers()
                return
            assert url.path == "/api/v1/pods"
            assert parse_qs(url.query)["fieldSelector"] == [f"spec.nodeName={NODE}"]
            body = json.dumps({"kind": "PodList", "apiVersion": "v1", "items": state.pods}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()


def api_pod(namespace: str, name: str, uid: str, labels: dict[str, str] | None = None,
            annotations: dict[str, str] | None = None, owner: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"namespace": namespace, "name": name, "uid": uid, "labels": labels or {},
                            "annotations": annotations or {}}
    if owner:
        meta["ownerReferences"] = [{"kind": "Job", "name": owner, "controller": True}]
    return {"metadata": meta, "spec": {"nodeName": NODE}}

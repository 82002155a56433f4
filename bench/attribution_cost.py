"""What attributing one 8-GPU node's devices costs per scrape, with Kubernetes and Slurm sources on.

Against the test stand-ins for a node (tests/cluster.py: a real gRPC kubelet on a unix socket, a real
HTTP API server; tests/fixtures/proc; the squeue stand-in), it times ``refresh()`` and ``shares_of()`` of
every device per scrape: with caches that never expire, and at a 10 s scrape interval with the default
TTLs (a kubelet List every scrape, the API server's pod list every sixth, squeue once per job).

    PYTHONPATH=. .venv/bin/python bench/attribution_cost.py [--scrapes 2000]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from fleetmeter.collectors.attribution import Attribution
from fleetmeter.collectors.attribution.kubernetes import KubernetesPods, KubernetesSettings
from fleetmeter.collectors.attribution.procfs import Procfs
from fleetmeter.collectors.attribution.slurm import SlurmJobs, SlurmSettings
from fleetmeter.collectors.readings import Device, DeviceReading, ProcessUsage
from tests.cluster import NODE, TOKEN, UID_CGROUPFS, UID_SYSTEMD, api_pod, pod, running_api_server, running_kubelet

FIXTURES = Path(__file__).parent.parent / "tests" / "fixtures"
INTERVAL_S = 10.0


def node_devices() -> list[DeviceReading]:
    """Eight GPUs: four held by a pod, one time-sliced by two pods, two Slurm jobs' GPUs, one free."""
    processes: dict[int, tuple[ProcessUsage, ...]] = {
        4: (ProcessUsage(1004, 1, 0.5), ProcessUsage(1005, 1, 0.2)),
        5: (ProcessUsage(1001, 1),), 6: (ProcessUsage(1001, 1), ProcessUsage(1002, 1)),
    }
    return [DeviceReading(device=Device(NODE, f"GPU-{i}", i, "gpu", "nvidia", "H100"), processes=processes.get(i))
            for i in range(8)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scrapes", type=int, default=2000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, running_kubelet(Path(tmp) / "kubelet.sock") as kubelet, \
            running_api_server() as api:
        kubelet.pods = [pod("ml", "trainer", ("nvidia.com/gpu", [f"GPU-{i}" for i in range(4)])),
                        pod("a", "one", ("nvidia.com/gpu", ["GPU-4::0"])),
                        pod("b", "two", ("nvidia.com/gpu", ["GPU-4::1"]))]
        api.pods = [api_pod("ml", "trainer", "u0", labels={"team": "research"}),
                    api_pod("a", "one", UID_SYSTEMD), api_pod("b", "two", UID_CGROUPFS)]
        token = Path(tmp) / "token"
        token.write_text(TOKEN)
        k8s = KubernetesSettings(enabled=True, pod_resources_socket=Path(tmp) / "kubelet.sock", api_server=api.url,
                                 token_file=token, ca_file=None)
        slurm = SlurmSettings(enabled=True, squeue=[sys.executable, str(FIXTURES / "fake_squeue.py")])
        procfs = Procfs(FIXTURES / "proc")
        devices = node_devices()
        results = {}
        for mode, step_s in (("cached", 0.0), ("steady", INTERVAL_S)):
            clock = [0.0]
            kubernetes = KubernetesPods(k8s, NODE, procfs, clock=lambda c=clock: c[0])  # type: ignore[misc]
            attribution = Attribution([kubernetes, SlurmJobs(slurm, procfs)])
            attribution.refresh()  # the first scrape asks everything once (squeue too)
            times = []
            for _ in range(args.scrapes):
                clock[0] += step_s
                started = time.perf_counter()
                attribution.refresh()
                for reading in devices:
                    attribution.shares_of(reading)
                times.append(time.perf_counter() - started)
            results[mode] = (statistics.mean(times) * 1e3, max(times) * 1e3, kubernetes.list_calls,
                             kubernetes.api_calls)
        for mode, (mean_ms, max_ms, lists, pod_lists) in results.items():
            print(f"{mode:>7}: {mean_ms:.3f} ms per scrape of 8 devices on average (max {max_ms:.2f} ms); "
                  f"{lists} kubelet Lists, {pod_lists} API pod lists in {args.scrapes} scrapes")
        print("cached: TTLs never run out; steady: a scrape every 10 s at the default TTLs "
              "(List every 10 s, pod list every 60 s, squeue once per job)")

if __name__ == "__main__":
    main()

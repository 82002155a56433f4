"""A stand-in for a TPU host: libtpu's runtime metrics service and the chips' sysfs and /proc traces.

The service is a real gRPC server of ``tpu.monitoring.runtime.RuntimeMetricService`` built from the proto
definitions that ``tpu-info`` ships, on 127.0.0.1 with local credentials as libtpu serves it. It answers
``GetRuntimeMetric`` with one measure per device, keyed by the ``device-id`` attribute, gauges as libtpu
types them (memory as ints, percentages as doubles); a metric it does not know answers NOT_FOUND.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from tpu_info.proto import tpu_metric_service_pb2 as pb
from tpu_info.proto.tpu_metric_service_pb2_grpc import (
    RuntimeMetricServiceServicer,
    add_RuntimeMetricServiceServicer_to_server,
)

GIB = 2**30
#: PCI (device id, subsystem id) of the chips a test can put on the bus.
PCI_IDS = {"v4": ("0x005e", "0x0000"), "v5e": ("0x0063", "0x0000"), "v6e": ("0x006f", "0x0000"),
           "7x": ("0x0076", "0x0000")}


@dataclass
class FakeTpuDevice:
    hbm_used: int = 0
    hbm_total: int = 16 * GIB
    duty_cycle_pct: float = 0.0
    hbm_bandwidth_pct: float = 0.0


@dataclass
class FakeRuntime(RuntimeMetricServiceServicer):  # type: ignore[misc]
    devices: dict[int, FakeTpuDevice] = field(default_factory=dict)
    served: set[str] = field(default_factory=lambda: {
        "tpu.runtime.hbm.memory.usage.bytes", "tpu.runtime.hbm.memory.total.bytes",
        "tpu.runtime.tensorcore.dutycycle.percent", "tpu.runtime.hbm.utilization.percent"})
    chip_duty_cycle_pct: dict[int, float] | None = None  # chips with two cores: the duty cycle per chip
    requests: list[str] = field(default_factory=list)

    def GetRuntimeMetric(self, request: pb.MetricRequest, context: Any) -> pb.MetricResponse:
        self.requests.append(request.metric_name)
        if request.metric_name not in self.served:
            context.abort(grpc.StatusCode.NOT_FOUND, f"metric {request.metric_name} not found")
        gauges = {
            "tpu.runtime.hbm.memory.usage.bytes": lambda d: pb.Gauge(as_int=d.hbm_used),
            "tpu.runtime.hbm.memory.total.bytes": lambda d: pb.Gauge(as_int=d.hbm_total),
            "tpu.runtime.tensorcore.dutycycle.percent": lambda d: pb.Gauge(as_double=d.duty_cycle_pct),
            "tpu.runtime.hbm.utilization.percent": lambda d: pb.Gauge(as_double=d.hbm_bandwidth_pct),
        }[request.metric_name]
        values = {device_id: gauges(device) for device_id, device in self.devices.items()}
        if request.metric_name == "tpu.runtime.tensorcore.dutycycle.percent" and self.chip_duty_cycle_pct:
            values = {chip: pb.Gauge(as_double=pct) for chip, pct in self.chip_duty_cycle_pct.items()}
        measures = [pb.Metric(attribute=pb.Attribute(key="device-id", value=pb.AttrValue(int_attr=device_id)),
                              gauge=gauge) for device_id, gauge in values.items()]
        return pb.MetricResponse(metric=pb.TPUMetric(name=request.metric_name, metrics=measures))


@contextmanager
def running_runtime(runtime: FakeRuntime) -> Iterator[str]:
    """Serve ``runtime`` on a free localhost port; yields its address."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    add_RuntimeMetricServiceServicer_to_server(runtime, server)
    port = server.add_secure_port("127.0.0.1:0", grpc.local_server_credentials(grpc.LocalConnectionType.LOCAL_TCP))
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


def pci_bus(sys_root: Path, generation: str, chips: int, first_iommu_group: int = 0) -> None:
    """Put ``chips`` TPU chips of one generation on a sysfs PCI bus under ``sys_root``, with a non-TPU
    device beside them, each in an IOMMU group as VFIO needs."""
    devices = sys_root / "bus" / "pci" / "devices"
    groups = sys_root / "kernel" / "iommu_groups"
    entries = [(f"0000:00:{4 + chip:02x}.0", "0x1ae0", *PCI_IDS[generation]) for chip in range(chips)]
    entries.append(("0000:00:01.0", "0x8086", "0x1234", "0x0000"))  # a non-Google device
    for number, (address, vendor, device, subsystem) in enumerate(entries):
        path = devices / address
        path.mkdir(parents=True)
        for name, value in (("vendor", vendor), ("device", device), ("subsystem_device", subsystem)):
            (path / name).write_text(value + "\n")
        (groups / str(first_iommu_group + number)).mkdir(parents=True)
        os.symlink(groups / str(first_iommu_group + number), path / "iommu_group")


def holding(proc_root: Path, pid: int, *device_files: str) -> None:
    """A process in ``proc_root`` whose file descriptors hold ``device_files`` open (and a log file)."""
    fd = proc_root / str(pid) / "fd"
    fd.mkdir(parents=True)
    for number, target in enumerate(("/var/log/train.log", *device_files)):
        os.symlink(target, fd / str(number + 3))

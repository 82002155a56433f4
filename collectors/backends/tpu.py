"""Google Cloud TPUs: chips from sysfs, readings from the libtpu runtime metrics service.

libtpu, loaded by the workload (JAX, PyTorch/XLA), serves ``tpu.monitoring.runtime.RuntimeMetricService``
over gRPC on localhost (port 8431; more with ``TPU_RUNTIME_METRICS_PORTS``): the service ``tpu-info``
reads, whose proto definitions and generated stubs this backend uses (the ``tpu`` extra). Metrics used,
each a list of per-device measures keyed by the ``device-id`` attribute: HBM in use and total
(``tpu.runtime.hbm.memory.{usage,total}.bytes``), TensorCore duty cycle (percent of time busy, per chip)
and HBM bandwidth utilization. The mapping to the sample columns is in schemas/sample_v1.md ("TPU").

The service exists only while a workload runs, so chips are found on the PCI bus (Google's vendor id),
and a chip whose device file no process holds is idle, not unknown. A chip that is held while the service
does not answer (metrics ports turned off) has unknown utilization. The holders' PIDs, from /proc's file
descriptor links (as ``tpu-info`` finds chip owners), become the row's processes, so the procfs-based
attribution (Kubernetes pods, Slurm jobs) works for TPUs as for GPUs.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc

from fleetmeter.collectors.backends.base import BackendUnavailable
from fleetmeter.collectors.readings import Device, DeviceReading, ProcessUsage
from fleetmeter.collectors.settings import TpuSettings

GOOGLE_PCI_VENDOR_ID = "0x1ae0"
HBM_USAGE = "tpu.runtime.hbm.memory.usage.bytes"
HBM_TOTAL = "tpu.runtime.hbm.memory.total.bytes"
DUTY_CYCLE = "tpu.runtime.tensorcore.dutycycle.percent"
HBM_BANDWIDTH = "tpu.runtime.hbm.utilization.percent"
#: Status codes with which a running service says it does not have a metric (older libtpu).
_NO_SUCH_METRIC = {grpc.StatusCode.NOT_FOUND, grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.INVALID_ARGUMENT}


@dataclass(frozen=True)
class Chip:
    """A TPU chip on the PCI bus and the device file its owner holds open."""

    pci_address: str  # domain:bus:device, without the function
    generation: str  # "v5e", "v6e", ...
    devices_per_chip: int
    hbm_bytes: int
    device_file: str


def _read(path: Path) -> str:
    return path.read_text().strip()


def find_chips(sys_root: Path, chip_types: Any) -> list[Chip]:
    """Google TPU chips under ``<sys_root>/bus/pci/devices``, one per PCI device (functions grouped)."""
    found: dict[str, Chip] = {}
    for path in sorted((sys_root / "bus" / "pci" / "devices").glob("*")):
        try:
            if _read(path / "vendor") != GOOGLE_PCI_VENDOR_ID:
                continue
            chip_type = chip_types.from_pci_device_id(_read(path / "device"), _read(path / "subsystem_device"))
            group = os.readlink(path / "iommu_group") if (path / "iommu_group").is_symlink() else None
        except OSError:
            continue
        base = path.name.rsplit(".", 1)[0]
        if chip_type is None or base in found:
            continue
        info = chip_type.value
        # v5e and newer are driven through VFIO; older chips through the accel driver
        device_file = f"/dev/vfio/{Path(group).name}" if group and info.name not in ("v2", "v3", "v4") else (
            f"/dev/accel{len(found)}")
        found[base] = Chip(base, info.name, info.devices_per_chip, info.hbm_gib * 2**30, device_file)
    return list(found.values())


def holders(proc_root: Path, device_files: set[str]) -> dict[str, list[int]]:
    """Which processes hold each device file open (PIDs in ``proc_root``'s namespace)."""
    held: dict[str, list[int]] = {}
    for fd_dir in proc_root.glob("[0-9]*/fd"):
        try:
            targets = {os.readlink(fd) for fd in fd_dir.iterdir()}
        except OSError:  # the process ended, or is not ours to read
            continue
        for target in targets & device_files:
            held.setdefault(target, []).append(int(fd_dir.parent.name))
    return held


class TpuBackend:
    name = "tpu"

    def __init__(self, node: str, settings: TpuSettings, proc_root: Path, chips: list[Chip],
                 service: ModuleType, stubs: ModuleType) -> None:
        self.node = node
        self.settings = settings
        self._proc_root = proc_root
        self._chips = chips
        self._service = service
        self._channels = [grpc.secure_channel(address, grpc.local_channel_credentials())
                          for address in settings.addresses]
        self._clients = [stubs.RuntimeMetricServiceStub(channel) for channel in self._channels]
        self._missing_metrics: set[tuple[int, str]] = set()  # (address, metric) its runtime does not serve
        self._errors: dict[str, int] = {}
        self._devices = [
            Device(node, f"TPU-{node}-{chip.pci_address}" + (f"-{core}" if chip.devices_per_chip > 1 else ""),
                   index * chip.devices_per_chip + core, "tpu", "google", f"Google TPU {chip.generation}",
                   parent_uuid=f"TPU-{node}-{chip.pci_address}" if chip.devices_per_chip > 1 else None)
            for index, chip in enumerate(chips) for core in range(chip.devices_per_chip)]

    def discover(self) -> list[Device]:
        return list(self._devices)

    def read(self, now_ms: int) -> list[DeviceReading]:
        metrics = self._runtime_metrics()
        held = holders(self._proc_root, {chip.device_file for chip in self._chips})
        readings = []
        for device in self._devices:
            chip = self._chips[device.index // self._chips[0].devices_per_chip]
            pids = held.get(chip.device_file, [])
            reading = DeviceReading(device=device, processes=tuple(ProcessUsage(pid, None) for pid in pids))
            if metrics is None:  # no runtime serves metrics: an unheld chip is idle, a held one unknown
                reading.mem_total_bytes = chip.hbm_bytes // chip.devices_per_chip
                if not pids:
                    reading.util_compute, reading.mem_used_bytes = 0.0, 0
            else:
                self._fill(reading, metrics, chip)
            readings.append(reading)
        if metrics is None and held:
            self._count("runtime_metrics_unavailable")
        return readings

    def read_errors(self) -> Mapping[str, int]:
        return dict(self._errors)

    def close(self) -> None:
        for channel in self._channels:
            channel.close()

    def _fill(self, reading: DeviceReading, metrics: Mapping[str, dict[int, Any]], chip: Chip) -> None:
        index = reading.device.index
        used, total = metrics.get(HBM_USAGE, {}).get(index), metrics.get(HBM_TOTAL, {}).get(index)
        reading.mem_used_bytes = None if used is None else int(used.gauge.as_int)
        reading.mem_total_bytes = None if total is None else int(total.gauge.as_int)
        duty = metrics.get(DUTY_CYCLE, {})
        # the duty cycle is per chip: where a chip has two cores, both rows take their chip's
        per_chip = chip.devices_per_chip > 1 and len(duty) * chip.devices_per_chip == len(self._devices)
        busy = duty.get(index // chip.devices_per_chip if per_chip else index)
        reading.util_compute = None if busy is None else min(1.0, busy.gauge.as_double / 100)
        bandwidth = metrics.get(HBM_BANDWIDTH, {}).get(index)
        reading.util_mem_bw = None if bandwidth is None else min(1.0, bandwidth.gauge.as_double / 100)

    def _runtime_metrics(self) -> dict[str, dict[int, Any]] | None:
        """Each metric's measures by device id, from every address that answers; None if none does."""
        answered = False
        merged: dict[str, dict[int, Any]] = {}
        for address, client in enumerate(self._clients):
            for name in (HBM_USAGE, HBM_TOTAL, DUTY_CYCLE, HBM_BANDWIDTH):
                if (address, name) in self._missing_metrics:
                    continue
                try:
                    response = client.GetRuntimeMetric(self._service.MetricRequest(metric_name=name),
                                                       timeout=self.settings.timeout_s)
                except grpc.RpcError as exc:
                    if exc.code() in _NO_SUCH_METRIC:
                        self._missing_metrics.add((address, name))
                        continue
                    break  # this address has no runtime (UNAVAILABLE) or it stalls: try the next
                answered = True
                for measure in response.metric.metrics:
                    merged.setdefault(name, {})[int(measure.attribute.value.int_attr)] = measure
        if not answered:
            self._missing_metrics.clear()  # the next workload may bring another libtpu
        return merged if answered else None

    def _count(self, error: str) -> None:
        self._errors[error] = self._errors.get(error, 0) + 1


def create(node: str, settings: TpuSettings, proc_root: Path) -> TpuBackend:
    """BackendUnavailable when tpu-info is not installed or the node has no TPU chip."""
    try:
        chip_types = importlib.import_module("tpu_info.device").TpuChip
        service = importlib.import_module("tpu_info.proto.tpu_metric_service_pb2")
        stubs = importlib.import_module("tpu_info.proto.tpu_metric_service_pb2_grpc")
    except ImportError as exc:
        raise BackendUnavailable("the tpu backend needs tpu-info: pip install 'fleetmeter[tpu]'") from exc
    chips = find_chips(settings.sys_root, chip_types)
    if not chips:
        raise BackendUnavailable(f"no Google TPU chip on the PCI bus ({settings.sys_root}/bus/pci/devices)")
    return TpuBackend(node, settings, proc_root, chips, service, stubs)

"""AWS Trainium and Inferentia: NeuronCores as ``neuron-monitor`` reports them.

``neuron-monitor`` (the aws-neuronx-tools package) streams one JSON report per line on stdout, every
``period``. This backend runs it as a subprocess, reads its stdout in a thread, parses each complete line
(a half-written line waits for the rest) and keeps the newest report; ``read`` turns that report into one
reading per NeuronCore, the unit that Neuron workloads and the Kubernetes ``aws.amazon.com/neuroncore``
resource are scheduled on. The mapping to the sample columns is in schemas/sample_v1.md ("Neuron").

Report fields used: ``instance_info`` (instance id and type: stable device ids, the model name),
``neuron_hardware_info`` (device count, cores per device, chip type); from each Neuron runtime's ``report``:
``neuroncore_counters.neuroncores_in_use.<core>.neuroncore_utilization`` (percent of the period busy) and
``memory_used.neuron_runtime_used_bytes.usage_breakdown.neuroncore_memory_usage.<core>`` (bytes by
category), summed over the runtimes (each lists every core, zero where it has none); from ``system_data``:
``neuron_hw_counters`` (ECC events during the period, per device). A core no runtime uses is idle with
no memory held; a group every runtime reports with an ``error`` leaves its reading null.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import structlog

from fleetmeter.collectors.backends.base import BackendUnavailable
from fleetmeter.collectors.readings import Counter, Device, DeviceReading
from fleetmeter.collectors.settings import NeuronSettings

log = structlog.get_logger(__name__)

#: Instance family -> (product, NeuronCore generation), for the model column.
_PRODUCTS = {"inf1": ("AWS Inferentia", "NeuronCore-v1"), "inf2": ("AWS Inferentia2", "NeuronCore-v2"),
             "trn1": ("AWS Trainium", "NeuronCore-v2"), "trn1n": ("AWS Trainium", "NeuronCore-v2"),
             "trn2": ("AWS Trainium2", "NeuronCore-v3")}


def monitor_config(period_s: float) -> dict[str, Any]:
    """The neuron-monitor configuration: the metric groups this backend reads, for every runtime."""
    return {
        "period": f"{period_s:g}s",
        "neuron_runtimes": [{"tag_filter": ".*", "metrics": [
            {"type": "neuroncore_counters"}, {"type": "memory_used"}, {"type": "neuron_hw_counters"}]}],
        "system_metrics": [{"type": "neuron_hw_counters"}],
    }


#: A report older than this many periods is not used (neuron-monitor died or stalls).
_STALE_PERIODS = 3


class _Reports(threading.Thread):
    """Reads neuron-monitor's stdout line by line, keeps the newest parsed report, and adds up the ECC
    events that each report counts for its own period (so none is lost between two scrapes)."""

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(name="neuron-monitor", daemon=True)
        self.stream = stream
        self.latest: dict[str, Any] | None = None
        self.received_at = 0.0  # monotonic time of the newest report
        self.reports = 0
        self.bad_lines = 0
        self._ecc: dict[tuple[int, str], float] = {}  # (device, column) -> events so far: a counter
        self._lock = threading.Lock()

    def run(self) -> None:
        for line in self.stream:  # a line is only yielded once its newline arrived
            if not line.strip():
                continue
            try:
                report = json.loads(line)
            except json.JSONDecodeError:
                self.bad_lines += 1
                continue
            if isinstance(report, dict):
                with self._lock:
                    self.latest, self.reports, self.received_at = report, self.reports + 1, time.monotonic()
                    _add_ecc(self._ecc, report)

    def newest(self) -> tuple[dict[str, Any] | None, dict[tuple[int, str], float]]:
        with self._lock:
            return self.latest, dict(self._ecc)


def _runtime_groups(report: Mapping[str, Any], name: str) -> tuple[list[Mapping[str, Any]], int]:
    """The ``name`` group of every Neuron runtime's report that has it without error, and how many had an
    error. Each runtime lists every core, with zeros for those it does not use: figures add up per core."""
    good, failed = [], 0
    for runtime in report.get("neuron_runtime_data") or []:
        group = (runtime.get("report") or {}).get(name)
        if not isinstance(group, Mapping) or runtime.get("error"):
            continue
        if group.get("error"):
            failed += 1
        else:
            good.append(group)
    return good, failed


def _busy_fractions(group: Mapping[str, Any]) -> dict[str, float]:
    """``neuroncore_counters``: the share of the period each core executed."""
    return {core: float((data or {}).get("neuroncore_utilization") or 0.0) / 100
            for core, data in (group.get("neuroncores_in_use") or {}).items()}


def _memory_held(group: Mapping[str, Any]) -> dict[str, float]:
    """``memory_used``: device memory held per core, all categories together."""
    breakdown = (group.get("neuron_runtime_used_bytes") or {}).get("usage_breakdown") or {}
    return {core: float(sum(v for v in (categories or {}).values() if isinstance(v, int | float)))
            for core, categories in (breakdown.get("neuroncore_memory_usage") or {}).items()}


def _add_ecc(totals: dict[tuple[int, str], float], report: Mapping[str, Any]) -> None:
    group = (report.get("system_data") or {}).get("neuron_hw_counters")
    if not isinstance(group, Mapping) or group.get("error"):
        return
    for device in group.get("neuron_devices") or []:
        index = int(device.get("neuron_device_index", 0))
        corrected = device.get("mem_ecc_corrected") or 0
        uncorrected = (device.get("mem_ecc_uncorrected") or 0) + (device.get("sram_ecc_uncorrected") or 0)
        for column, events in (("ecc_corrected", corrected), ("ecc_uncorrected", uncorrected)):
            totals[(index, column)] = totals.get((index, column), 0.0) + float(events)


class NeuronBackend:
    name = "neuron"

    def __init__(self, node: str, settings: NeuronSettings, reports: _Reports,
                 process: subprocess.Popen[str] | None = None, config: Path | None = None) -> None:
        self.node = node
        self.settings = settings
        self._reports = reports
        self._process = process
        self._config = config  # neuron-monitor's configuration file, ours to remove
        self._errors: dict[str, int] = {}

    def discover(self) -> list[Device]:
        report, _ = self._reports.newest()
        return [] if report is None else self._devices(report)

    def read(self, now_ms: int) -> list[DeviceReading]:
        report, ecc = self._reports.newest()
        if report is None:
            return []
        if time.monotonic() - self._reports.received_at > _STALE_PERIODS * self.settings.period_s:
            self._count("stale_report")  # neuron-monitor stopped or hangs: report nothing rather than old figures
            return []
        devices = self._devices(report)
        utilization = self._per_core(report, "neuroncore_counters", _busy_fractions)
        memory = self._per_core(report, "memory_used", _memory_held)
        readings = []
        for device in devices:
            reading = DeviceReading(device=device)
            reading.util_compute = None if utilization is None else min(1.0, utilization.get(device.index, 0.0))
            reading.mem_used_bytes = None if memory is None else int(memory.get(device.index, 0))
            device_index = self._device_index(report, device.index)
            for column in ("ecc_corrected", "ecc_uncorrected"):
                value = ecc.get((device_index, column))
                if value is not None and device.index == self._first_core(report, device_index):
                    reading.counters[column] = Counter(value)  # the device's events, on its first core
            reading.extras["neuron.device_index"] = float(device_index)
            readings.append(reading)
        return readings

    @property
    def reports_read(self) -> int:
        return self._reports.reports

    def read_errors(self) -> Mapping[str, int]:
        return dict(self._errors) | ({"unparsable_line": self._reports.bad_lines} if self._reports.bad_lines else {})

    def close(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
        if self._config is not None:
            self._config.unlink(missing_ok=True)

    # -- report -> readings ----------------------------------------------------------------------

    @staticmethod
    def _cores_per_device(report: Mapping[str, Any]) -> int:
        hardware = report.get("neuron_hardware_info") or {}
        return int(hardware.get("neuroncore_per_device_count") or 1)

    def _device_index(self, report: Mapping[str, Any], core: int) -> int:
        return core // self._cores_per_device(report)

    def _first_core(self, report: Mapping[str, Any], device_index: int) -> int:
        return device_index * self._cores_per_device(report)

    def _devices(self, report: Mapping[str, Any]) -> list[Device]:
        hardware = report.get("neuron_hardware_info") or {}
        instance = report.get("instance_info") or {}
        instance_id = instance.get("instance_id") or self.node
        family = str(instance.get("instance_type") or "").split(".")[0]
        product, core_kind = _PRODUCTS.get(family, ("AWS Neuron", "NeuronCore"))
        if hardware.get("neuron_device_type"):  # newer neuron-monitor names the chip itself
            product = f"AWS {str(hardware['neuron_device_type']).capitalize()}"
            core_kind = f"NeuronCore-{hardware.get('neuroncore_version') or ''}".rstrip("-")
        per_device = self._cores_per_device(report)
        cores = int(hardware.get("neuron_device_count") or 0) * per_device
        return [Device(self.node, f"NC-{instance_id}-{core}", core, "neuron_core", "aws", f"{product} {core_kind}",
                       parent_uuid=f"ND-{instance_id}-{core // per_device}") for core in range(cores)]

    def _per_core(self, report: Mapping[str, Any], group_name: str,
                  values: Callable[[Mapping[str, Any]], Mapping[str, float]]) -> dict[int, float] | None:
        """A figure per core summed over the runtimes; None when every runtime reported the group failed."""
        groups, failed = _runtime_groups(report, group_name)
        if failed and not groups:
            self._count(group_name)
            return None
        totals: dict[int, float] = {}
        for group in groups:
            for core, value in values(group).items():
                totals[int(core)] = totals.get(int(core), 0.0) + value
        return totals

    def _count(self, error: str) -> None:
        self._errors[error] = self._errors.get(error, 0) + 1


def create(node: str, settings: NeuronSettings) -> NeuronBackend:
    """Start neuron-monitor; BackendUnavailable when it is not installed (no Neuron tools on this node)."""
    if shutil.which(settings.command[0]) is None and not Path(settings.command[0]).exists():
        raise BackendUnavailable(f"the neuron backend needs {settings.command[0]} (package aws-neuronx-tools)")
    config = Path(tempfile.mkstemp(prefix="fleetmeter-neuron-", suffix=".json")[1])
    config.write_text(json.dumps(monitor_config(settings.period_s)))
    process = subprocess.Popen([*settings.command, "-c", str(config)], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL, text=True, bufsize=1)
    assert process.stdout is not None
    reports = _Reports(process.stdout)
    reports.start()
    log.info("neuron-monitor started", pid=process.pid, period_s=settings.period_s)
    return NeuronBackend(node, settings, reports, process, config)

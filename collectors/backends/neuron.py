"""AWS Trainium and Inferentia: NeuronCores as ``neuron-monitor`` reports them.

``neuron-monitor`` (the aws-neuronx-tools package) streams one JSON report per line on stdout, every
``period``. This backend runs it as a subprocess, reads its stdout in a thread, parses each complete line
(a half-written line waits for the rest) and keeps the newest report; ``read`` turns that report into one
reading per NeuronCore, the unit that Neuron workloads and the Kubernetes ``aws.amazon.com/neuroncore``
resource are scheduled on. The mapping to the sample columns is in schemas/sample_v1.md ("Neuron").

Report fields used: ``instance_info`` (instance id and type: stable device ids, the model name),
``neuron_hardware_info`` (device count, cores per device, chip type, memory per device); from each Neuron
runtime's ``report``: ``neuroncore_counters.neuroncores_in_use.<core>.neuroncore_utilization`` (percent of the
period busy) and ``memory_used.neuron_runtime_used_bytes.usage_breakdown.neuroncore_memory_usage.<core>``
(bytes by category), summed over the runtimes (each lists every core, zero where it has none); from
``system_data``: ``neuron_hw_counters`` (ECC events during the period, per device). A core no runtime uses
is idle with no memory held. A runtime that failed to report a group (its entry's or the group's ``error``,
or a group not in the documented shape) may be using any core no healthy runtime shows as its own, so such
cores read null for that group rather than idle.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any, NamedTuple, TypeGuard

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
    """The neuron-monitor configuration: the metric groups this backend reads, each at the level that has it
    (ECC counters are a system-level group only)."""
    return {
        "period": f"{period_s:g}s",
        "neuron_runtimes": [{"tag_filter": ".*",
                             "metrics": [{"type": "neuroncore_counters"}, {"type": "memory_used"}]}],
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


#: One runtime's figure of a metric group per core; None for a core whose figure is unreadable.
_CoreFigures = dict[int, float | None]


def _is_number(value: object) -> TypeGuard[int | float]:
    """A finite JSON number: NaN would bill a core as busy (``min(1.0, nan)``) and infinity cannot be an int."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


#: Bounds on the counts a report gives (a trn2.48xlarge has 16 devices of 8 cores): a broken report must not
#: make the collector invent thousands of devices.
MAX_DEVICES, MAX_CORES_PER_DEVICE = 256, 64


def _bounded_count(value: object, limit: int) -> int:
    """A count from the report: a whole number from 0 to ``limit``, else 0."""
    return int(value) if _is_number(value) and value == int(value) and 0 <= value <= limit else 0


def _member(data: object, *keys: str) -> object:
    """``data[k1][k2]...``, or None where a level is missing or not an object."""
    for key in keys:
        data = data.get(key) if isinstance(data, Mapping) else None
    return data


def _by_core(cores: object, figure: Callable[[object], float | None]) -> _CoreFigures | None:
    """A figure per core from an object keyed by core index; None when it is not such an object."""
    if not isinstance(cores, Mapping) or not all(str(key).isdecimal() for key in cores):  # int() takes these
        return None
    return {int(key): figure(data) for key, data in cores.items()}


def _busy_fraction(data: object) -> float | None:
    value = _member(data, "neuroncore_utilization")
    return float(value) / 100 if _is_number(value) else None


def _bytes_held(categories: object) -> float | None:
    """All categories together; a category that is not a number leaves the total unknown, not smaller."""
    if not isinstance(categories, Mapping) or not all(_is_number(v) for v in categories.values()):
        return None
    return float(sum(categories.values()))


def _busy_fractions(group: Mapping[str, Any]) -> _CoreFigures | None:
    """``neuroncore_counters``: the share of the period each core executed."""
    return _by_core(group.get("neuroncores_in_use"), _busy_fraction)


def _memory_held(group: Mapping[str, Any]) -> _CoreFigures | None:
    """``memory_used``: device memory held per core (neuron-monitor before SDK 2.4 has no per-core breakdown)."""
    return _by_core(_member(group, "neuron_runtime_used_bytes", "usage_breakdown", "neuroncore_memory_usage"),
                    _bytes_held)


def _runtime_figures(runtime: object, name: str, values: Callable[[Mapping[str, Any]], _CoreFigures | None]
                     ) -> tuple[_CoreFigures | None, str | None]:
    """One runtime's per-core figures of the ``name`` group (None: it gave none), and the problem met if any,
    named as a read error."""
    if not isinstance(runtime, Mapping) or runtime.get("error"):
        return None, "runtime"
    group = _member(runtime, "report", name)
    if not isinstance(group, Mapping) or group.get("error"):
        return None, name
    figures = values(group)
    unreadable = figures is None or any(value is None for value in figures.values())
    return figures, f"{name}_unreadable" if unreadable else None


class _Cores(NamedTuple):
    """A metric group summed per core over the healthy runtimes. A NeuronCore belongs to one runtime at a time, so
    when one runtime gave no figures, a core no healthy runtime shows a non-zero figure for may be its own."""

    totals: dict[int, float | None]
    some_runtime_failed: bool

    def of(self, core: int) -> float | None:
        total = self.totals.get(core, 0.0)
        return None if total is None or (self.some_runtime_failed and total == 0) else total


def _per_core(report: Mapping[str, Any], name: str, values: Callable[[Mapping[str, Any]], _CoreFigures | None]
              ) -> tuple[_Cores, set[str]]:
    """The ``name`` group per core over the runtimes, and the problems met (read error names)."""
    totals: dict[int, float | None] = {}
    problems: set[str] = set()
    failed = False
    for runtime in report.get("neuron_runtime_data") or []:
        figures, problem = _runtime_figures(runtime, name, values)
        if problem:
            problems.add(problem)
        failed = failed or figures is None
        for core, value in (figures or {}).items():
            total = totals.get(core, 0.0)
            totals[core] = None if value is None or total is None else total + value
    return _Cores(totals, failed), problems


def _add_ecc(totals: dict[tuple[int, str], float], report: Mapping[str, Any]) -> None:
    group = (report.get("system_data") or {}).get("neuron_hw_counters")
    if not isinstance(group, Mapping) or group.get("error"):
        return
    for device in group.get("neuron_devices") or []:
        index = int(device.get("neuron_device_index", 0))
        corrected = (device.get("mem_ecc_corrected") or 0) + (device.get("sram_ecc_corrected") or 0)  # SDK 2.3+
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
        utilization, util_problems = _per_core(report, "neuroncore_counters", _busy_fractions)
        memory, memory_problems = _per_core(report, "memory_used", _memory_held)
        for problem in sorted(util_problems | memory_problems):
            self._count(problem)
        mem_total = self._core_memory_size(report)
        readings = []
        for device in devices:
            reading = DeviceReading(device=device, mem_total_bytes=mem_total)
            busy, held = utilization.of(device.index), memory.of(device.index)
            reading.util_compute = None if busy is None else min(1.0, busy)
            reading.mem_used_bytes = None if held is None else int(held)
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
        count = _member(report, "neuron_hardware_info", "neuroncore_per_device_count")
        return _bounded_count(count, MAX_CORES_PER_DEVICE) or 1

    def _core_memory_size(self, report: Mapping[str, Any]) -> int | None:
        """A core's share of its device's memory (``neuron_device_memory_size``, bytes per device, SDK 2.19+):
        per core, as ``mem_used_bytes`` is, so that used and total compare and sum over cores."""
        size = _member(report, "neuron_hardware_info", "neuron_device_memory_size")
        return int(size) // self._cores_per_device(report) if _is_number(size) and size > 0 else None

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
        cores = _bounded_count(hardware.get("neuron_device_count"), MAX_DEVICES) * per_device
        return [Device(self.node, f"NC-{instance_id}-{core}", core, "neuron_core", "aws", f"{product} {core_kind}",
                       parent_uuid=f"ND-{instance_id}-{core // per_device}") for core in range(cores)]

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

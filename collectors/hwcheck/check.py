"""Run the nvml backend beside nvidia-smi, idle and under load, and say where they agree.

Each phase reads every second: the backend's readings (as the collector takes them) and nvidia-smi's query. The
report compares per GPU and phase the means of what both measure (utilization, memory, power, temperature,
SM clock, throttle reasons), the energy counter against power integrated over time, GPM's SM and tensor activity
against what the phase's load should give, and the processes each sees.
"""

from __future__ import annotations

import os
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from types import ModuleType
from typing import Any

from fleetmeter.collectors.backends.nvml import NvmlBackend, throttle_names
from fleetmeter.collectors.counters import counter_delta
from fleetmeter.collectors.hwcheck import driver_tools
from fleetmeter.collectors.readings import DeviceReading

MIB = 1024**2


@dataclass
class Phase:
    """What was read during one phase: per GPU UUID, the backend's readings and nvidia-smi's, each timed."""

    name: str
    readings: dict[str, list[tuple[float, DeviceReading]]] = field(default_factory=lambda: defaultdict(list))
    smi: dict[str, list[driver_tools.SmiGpu]] = field(default_factory=lambda: defaultdict(list))
    dmon: dict[int, list[float]] = field(default_factory=lambda: defaultdict(list))
    apps: dict[str, set[int]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Row:
    """One line of the report: a measure, both tools' figures, and the verdict."""

    gpu: str
    phase: str
    measure: str
    fleetmeter: str
    driver: str
    verdict: str  # "agrees", "differs", or why it could not be compared


def sample(backend: NvmlBackend, phase: Phase, seconds: float, tool: driver_tools.DriverTool,
           clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
    """Read both tools once a second for ``seconds``."""
    end = clock() + seconds
    while True:
        now = clock()
        for reading in backend.read(int(time.time() * 1000)):
            phase.readings[reading.device.uuid].append((now, reading))
        try:
            for gpu in tool.query_gpus():
                phase.smi[gpu.uuid].append(gpu)
        except driver_tools.DriverToolMissing as exc:
            if not phase.notes:  # once is enough
                phase.notes.append(f"nvidia-smi query: {exc}")
        try:
            for index, value in tool.dmon_sm_pct().items():
                phase.dmon[index].append(value)
        except driver_tools.DriverToolMissing:
            pass  # dmon is absent on some drivers and in containers: said in the report
        if now >= end:
            break
        sleep(max(0.0, 1.0 - (clock() - now)))
    try:
        phase.apps = tool.compute_apps()
    except driver_tools.DriverToolMissing as exc:
        phase.notes.append(f"nvidia-smi compute apps: {exc}")


def _mean(values: Sequence[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return statistics.fmean(known) if known else None


def _scaled(values: Sequence[float | None], factor: float) -> float | None:
    mean = _mean(values)
    return None if mean is None else mean * factor


def _shown(value: float | None, unit: str, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f} {unit}".strip()


def _verdict(ours: float | None, theirs: float | None, absolute: float, relative: float = 0.0) -> str:
    if ours is None or theirs is None:
        return "not compared: " + ("fleetmeter has no reading" if ours is None else "nvidia-smi has no reading")
    allowed = max(absolute, relative * abs(theirs))
    return "agrees" if abs(ours - theirs) <= allowed else f"differs by {ours - theirs:+.2f}"


def _energy_row(gpu: str, phase: str, timed: list[tuple[float, DeviceReading]]) -> Row:
    """The energy counter's increase against the backend's power readings integrated over the same time."""
    counted = [(t, r.counters["energy_j"], r.power_w) for t, r in timed if "energy_j" in r.counters]
    if len(counted) < 2 or any(power is None for _, _, power in counted):
        return Row(gpu, phase, "energy counter vs power x time", "n/a", "n/a", "not compared: no energy counter "
                   "or no power reading")
    energy = sum(counter_delta(a.value, b.value, b.wrap_at) for (_, a, _), (_, b, _) in pairwise(counted))
    integrated = sum((t1 - t0) * ((p0 or 0) + (p1 or 0)) / 2 for (t0, _, p0), (t1, _, p1) in pairwise(counted))
    return Row(gpu, phase, "energy counter vs power x time", _shown(energy, "J"), _shown(integrated, "J (power)"),
               _verdict(energy, integrated, absolute=5.0, relative=0.05))


def _activity_rows(gpu: str, phase: str, readings: list[DeviceReading], loaded: bool) -> list[Row]:
    """Activity against what the phase should give: about 0 idle; under the FMA load, utilization about 100 %,
    GPM's SM activity high and its tensor activity about 0. The load runs on whole GPUs: a GPU in MIG mode and
    its instances have no expectation under it."""
    device = readings[0].device
    if loaded and (device.kind != "gpu" or any(r.extras.get("mig.enabled") for r in readings)):
        return [Row(gpu, phase, "activity under the load", "", "", "not compared: the load runs on whole GPUs, "
                    "not on MIG instances")]
    rows = []
    expectations: list[tuple[str, list[float | None], tuple[float, float]]] = [
        ("GPM SM activity", [r.sm_active for r in readings], (0.5, 1.0) if loaded else (0.0, 0.05)),
        ("GPM tensor activity", [r.tensor_active for r in readings], (0.0, 0.05))]
    if loaded:
        expectations.append(("utilization under the load", [r.util_compute for r in readings], (0.9, 1.0)))
    for measure, values, expected in expectations:
        mean = _mean(values)
        low, high = expected
        verdict = (f"not compared: no reading{' (GPM needs Hopper or later)' if 'GPM' in measure else ''}"
                   if mean is None
                   else "as expected" if low <= mean <= high else "unexpected")
        rows.append(Row(gpu, phase, measure, _shown(mean, "", 3), f"expected {low:g}-{high:g}", verdict))
    return rows


def compare(phase: Phase, loaded: bool, load_pid: int | None) -> list[Row]:
    rows: list[Row] = []
    for uuid, timed in sorted(phase.readings.items()):
        readings = [reading for _, reading in timed]
        smi = phase.smi.get(uuid, [])
        index = readings[0].device.index
        gpu = f"{index} ({readings[0].device.kind}) {uuid}"
        util = _scaled([r.util_compute for r in readings], 100)
        pairs: list[tuple[str, float | None, float | None, str, float, float]] = [
            ("utilization", util, _mean([g.util_gpu_pct for g in smi]), "%", 5.0, 0.0),
            ("memory bandwidth utilization", _scaled([r.util_mem_bw for r in readings], 100),
             _mean([g.util_mem_pct for g in smi]), "%", 5.0, 0.0),
            ("memory used", _scaled([r.mem_used_bytes for r in readings], 1 / MIB),
             _mean([g.memory_used_mib for g in smi]), "MiB", 64.0, 0.01),
            ("memory total", _scaled([r.mem_total_bytes for r in readings], 1 / MIB),
             _mean([g.memory_total_mib for g in smi]), "MiB", 1.0, 0.0),
            ("power", _mean([r.power_w for r in readings]), _mean([g.power_w for g in smi]), "W", 5.0, 0.05),
            ("temperature", _mean([r.temp_c for r in readings]), _mean([g.temp_c for g in smi]), "C", 2.0, 0.0),
            ("SM clock", _mean([r.sm_clock_mhz for r in readings]), _mean([g.sm_clock_mhz for g in smi]), "MHz",
             30.0, 0.05),
        ]
        if not smi:
            rows.append(Row(gpu, phase.name, "nvidia-smi", "", "", "not compared: nvidia-smi has no row for it "
                            "(a MIG instance, or no nvidia-smi)"))
        for measure, ours, theirs, unit, absolute, relative in pairs:
            if smi:
                rows.append(Row(gpu, phase.name, measure, _shown(ours, unit), _shown(theirs, unit),
                                _verdict(ours, theirs, absolute, relative)))
        if smi:
            rows.append(_reasons_row(gpu, phase.name, readings, smi))
        if phase.dmon.get(index) and readings[0].device.kind == "gpu":
            dmon = _mean(phase.dmon[index])
            rows.append(Row(gpu, phase.name, "utilization vs dmon sm", _shown(util, "%"), _shown(dmon, "%"),
                            _verdict(util, dmon, 10.0)))
        rows.append(_energy_row(gpu, phase.name, timed))
        rows.extend(_activity_rows(gpu, phase.name, readings, loaded))
        rows.append(_processes_row(gpu, phase, uuid, readings, load_pid))
    return rows


def _reasons_row(gpu: str, phase: str, readings: list[DeviceReading], smi: list[driver_tools.SmiGpu]) -> Row:
    ours = {name for r in readings for name in r.throttle_reasons or ()}
    theirs = {name for g in smi if g.reasons_mask is not None for name in throttle_names(g.reasons_mask)}
    verdict = "agrees" if ours == theirs else f"differs: only fleetmeter {sorted(ours - theirs)}, only nvidia-smi " \
                                               f"{sorted(theirs - ours)}"
    return Row(gpu, phase, "throttle reasons seen", ", ".join(sorted(ours)) or "none",
               ", ".join(sorted(theirs)) or "none", verdict)


def _processes_row(gpu: str, phase: Phase, uuid: str, readings: list[DeviceReading], load_pid: int | None) -> Row:
    ours = {p.pid for r in readings for p in r.processes or ()}
    theirs = phase.apps.get(uuid, set())
    whole_gpu = readings[0].device.kind == "gpu" and not any(r.extras.get("mig.enabled") for r in readings)
    if load_pid is not None and whole_gpu:
        verdict = "agrees" if load_pid in ours and load_pid in theirs else (
            f"differs: the load's pid {load_pid} is {'' if load_pid in ours else 'not '}in fleetmeter's list and "
            f"{'' if load_pid in theirs else 'not '}in nvidia-smi's")
    else:
        verdict = "agrees" if ours == theirs else "differs"
    return Row(gpu, phase.name, "compute processes", ", ".join(map(str, sorted(ours))) or "none",
               ", ".join(map(str, sorted(theirs))) or "none", verdict)


def _cell(text: str) -> str:
    """Text from the driver (names, error messages) kept inside its table cell or list item."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


@dataclass
class Report:
    rows: list[Row]
    could_not_check: list[str]
    driver: str
    gpus: list[str]

    def markdown(self) -> str:
        lines = ["# fleetmeter hardware check", "", f"Driver {self.driver}; GPUs: " + "; ".join(self.gpus), ""]
        agreed = sum(row.verdict in ("agrees", "as expected") for row in self.rows)
        lines += [f"{agreed} of {len(self.rows)} comparisons agree.", "",
                  "| GPU | phase | measure | fleetmeter | nvidia-smi (or expected) | verdict |",
                  "|---|---|---|---|---|---|"]
        lines += ["| " + " | ".join(_cell(text) for text in (r.gpu, r.phase, r.measure, r.fleetmeter, r.driver,
                                                             r.verdict)) + " |" for r in self.rows]
        lines += ["", "## Could not be checked", ""]
        lines += [f"- {_cell(item)}" for item in self.could_not_check] or ["- nothing"]
        return "\n".join(lines) + "\n"


def run_check(nvml: ModuleType | Any, seconds: float, run: driver_tools.Run = driver_tools.run_tool,
              start_load: Callable[[], Any] | None = None, clock: Callable[[], float] = time.monotonic,
              sleep: Callable[[float], None] = time.sleep) -> Report:
    """The idle phase, then the load phase (``start_load`` returns a load with ``stop()``, or raises)."""
    backend = NvmlBackend(os.uname().nodename, nvml)
    tool = driver_tools.DriverTool(run)
    try:
        backend.read(int(time.time() * 1000))  # primes the sample buffers and GPM, as the collector's first scrape
        idle = Phase("idle")
        sample(backend, idle, seconds, tool, clock, sleep)
        could_not = list(idle.notes)
        rows = compare(idle, loaded=False, load_pid=None)
        if start_load is None:
            could_not.append("the load phase: not asked for (--no-load)")
        else:
            try:
                load = start_load()
            except Exception as exc:  # no CUDA driver, no device CUDA sees: the idle phase still stands
                could_not.append(f"the load phase: {exc}")
            else:
                loaded = Phase("load")
                try:
                    backend.read(int(time.time() * 1000))  # the load's first interval, not the idle one
                    sample(backend, loaded, seconds, tool, clock, sleep)
                finally:
                    load.stop()
                could_not += loaded.notes + [f"the load: {error}" for error in getattr(load, "errors", [])]
                rows += compare(loaded, loaded=True, load_pid=os.getpid())
        if not any(idle.dmon.values()):
            could_not.append("nvidia-smi dmon: absent or gave nothing, so SM utilization was compared with "
                             "nvidia-smi's utilization.gpu only")
        could_not += [f"NVML {function}: not supported here (asked for {count} devices or readings)"
                      for function, count in sorted(backend.unsupported_calls().items())]
        could_not += [f"NVML calls that failed: {error}, {count} times"
                      for error, count in sorted(backend.read_errors().items())]
        driver = getattr(nvml, "nvmlSystemGetDriverVersion", lambda: "unknown")()
        gpus = [f"{d.index}: {d.model} ({d.kind})" for d in backend.discover()]
        return Report(rows, could_not, driver, gpus)
    finally:
        backend.close()


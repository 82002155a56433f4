"""The hardware check (collectors/hwcheck), prepared without a GPU: the fake NVML stands in for the driver, and a
fake nvidia-smi writes what the real one writes (its CSV query, its compute-app list, dmon's table) from the same
fake GPUs; time is stepped, and the fake hardware's energy counter integrates its power as a board's does."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pynvml
import pytest

from fleetmeter.collectors.hwcheck.bundle import build
from fleetmeter.collectors.hwcheck.check import Report, run_check
from fleetmeter.collectors.hwcheck.load import LoadUnavailable
from tests.fakes.fake_nvml import FakeGpu, FakeNvml

GIB = 1024**3


class FakeMachine:
    """The fake GPUs as both tools see them, and a clock that steps one second per sleep."""

    def __init__(self, nvml: FakeNvml) -> None:
        self.nvml = nvml
        self.now = 1_000.0
        self.smi_power_factor = 1.0  # a driver tool that reads power differently, to see a difference reported
        for index, gpu in enumerate(self.boards()):
            gpu.util_gpu, gpu.mem_used, gpu.power_mw, gpu.temp_c = 2, 3 * GIB, 70_000, 31 + index
            gpu.gpm = {pynvml.NVML_GPM_METRIC_SM_UTIL: 1.0, pynvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL: 0.0}

    def boards(self) -> list[FakeGpu]:
        return [gpu for gpu in self.nvml.gpus if not gpu.mig_enabled]

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += 1.0
        for gpu in self.boards():
            gpu.energy_mj += gpu.power_mw  # mW for one second
            gpu.util_samples.append((int(self.now * 1e6), gpu.util_gpu))

    def smi(self, arguments: Sequence[str]) -> str:
        if arguments[1] == "dmon":
            rows = [f"{index:>5} {gpu.util_gpu:>5} {gpu.util_gpu // 2:>5}     0     0"
                    for index, gpu in enumerate(self.nvml.gpus) if not gpu.mig_enabled]
            return "# gpu    sm   mem   enc   dec\n# Idx     %     %     %     %\n" + "\n".join(rows) + "\n"
        if arguments[1].startswith("--query-compute-apps"):
            return "".join(f"{gpu.uuid}, {pid}, {used // 2**20}\n" for gpu in self.nvml.gpus for pid, used in
                           gpu.processes)
        lines = []
        for index, gpu in enumerate(self.nvml.gpus):
            util = "[N/A]" if gpu.mig_enabled else f"{gpu.util_gpu}"
            memory_util = "[N/A]" if gpu.mig_enabled else f"{gpu.util_gpu // 2}"
            lines.append(f"{index}, {gpu.uuid}, {util}, {memory_util}, {gpu.mem_used // 2**20}, "
                         f"{gpu.mem_total // 2**20}, {gpu.power_mw / 1000 * self.smi_power_factor:.2f}, "
                         f"{gpu.temp_c}, {gpu.sm_clock_mhz}, 0x{gpu.throttle_mask:016x}")
        return "\n".join(lines) + "\n"


class FakeLoad:
    """What the CUDA load does to the boards: busy, hotter, more power, its memory and its process."""

    def __init__(self, machine: FakeMachine) -> None:
        self.machine, self.errors = machine, list[str]()
        for gpu in machine.boards():
            gpu.util_gpu, gpu.power_mw, gpu.mem_used = 100, 650_000, gpu.mem_used + 2 * GIB
            gpu.gpm = {pynvml.NVML_GPM_METRIC_SM_UTIL: 97.0, pynvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL: 0.0}
            gpu.processes = [(os.getpid(), 2 * GIB)]

    def stop(self) -> None:
        for gpu in self.machine.boards():
            gpu.processes = []


def check(machine: FakeMachine, load: bool = True) -> Report:
    return run_check(machine.nvml, seconds=5, run=machine.smi, clock=machine.clock, sleep=machine.sleep,
                     start_load=(lambda: FakeLoad(machine)) if load else None)


def verdicts(report: Report, gpu: int, phase: str) -> dict[str, str]:
    return {row.measure: row.verdict for row in report.rows if row.gpu.startswith(f"{gpu} (gpu)")
            and row.phase == phase}


def test_on_agreeing_hardware_every_comparison_agrees_idle_and_under_load() -> None:
    report = check(FakeMachine(FakeNvml()))
    for phase in ("idle", "load"):
        found = verdicts(report, 0, phase)
        assert {found[m] for m in ("utilization", "memory used", "memory total", "power", "temperature",
                                   "SM clock", "throttle reasons seen", "utilization vs dmon sm",
                                   "energy counter vs power x time", "compute processes")} == {"agrees"}, found
        assert {found["GPM SM activity"], found["GPM tensor activity"]} == {"as expected"}, found
    assert verdicts(report, 0, "load")["utilization under the load"] == "as expected"
    loaded = [row for row in report.rows if row.gpu.startswith("0 (gpu)") and row.phase == "load"]
    assert next(row.fleetmeter for row in loaded if row.measure == "power") == "650.0 W"
    assert str(os.getpid()) in next(row.driver for row in loaded if row.measure == "compute processes")
    text = report.markdown()
    assert text.startswith("# fleetmeter hardware check") and "| 0 (gpu) GPU-" in text
    assert "550.54.15" in text and "## Could not be checked" in text


def test_a_difference_is_reported_as_one() -> None:
    machine = FakeMachine(FakeNvml())
    machine.smi_power_factor = 1.5  # nvidia-smi reads half as much again
    found = verdicts(check(machine, load=False), 0, "idle")
    assert found["power"].startswith("differs by") and found["temperature"] == "agrees"


def test_what_the_board_cannot_say_is_listed_not_compared() -> None:
    """GPU 7 lacks the sample buffer, GPM and ECC; GPU 6 is in MIG mode: nvidia-smi has no row for its
    instances; no CUDA driver means no load phase."""
    machine = FakeMachine(FakeNvml())

    def no_cuda() -> FakeLoad:
        raise LoadUnavailable("no CUDA driver library (libcuda.so.1)")

    report = run_check(machine.nvml, seconds=3, run=machine.smi, clock=machine.clock, sleep=machine.sleep,
                       start_load=no_cuda)
    assert {row.phase for row in report.rows} == {"idle"}
    assert any("the load phase: no CUDA driver" in item for item in report.could_not_check)
    assert any("nvmlGpmQueryDeviceSupport" in item for item in report.could_not_check)
    assert verdicts(report, 7, "idle")["GPM SM activity"].startswith("not compared: no reading (GPM")
    assert any(row.gpu.startswith("6 (mig)") and row.verdict.startswith("not compared: nvidia-smi has no row")
               for row in report.rows)


def test_the_bundle_runs_on_a_bare_python_and_says_what_is_missing(tmp_path: Path) -> None:
    """No virtual environment, no site-packages (-I -S): it imports all it needs from itself; without a driver it
    says so in one line."""
    bundle = build(tmp_path / "fleetmeter-hwcheck.pyz")
    assert bundle.stat().st_size < 1024**2
    result = subprocess.run([sys.executable, "-I", "-S", str(bundle), "--seconds", "1", "--output",
                             str(tmp_path / "report.md")], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    if result.returncode == 0:  # this machine has an NVIDIA GPU and its driver
        pytest.skip("a real driver answered: the check ran; see report.md")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "fleetmeter-hwcheck: NVML did not initialise (is the NVIDIA driver loaded?): NVML Shared Library Not Found"]

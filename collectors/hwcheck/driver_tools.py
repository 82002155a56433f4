"""What the driver's own tool says: ``nvidia-smi``'s per-GPU query, its compute-process list and ``dmon``.

Each is read as text in the formats nvidia-smi writes (CSV without header or units; dmon's table with its
``#`` header); a caller may pass another command that writes the same text (the tests' fake driver does).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass

#: The per-GPU fields read each second, in this order. Drivers before 535 name the last one
#: ``clocks_throttle_reasons.active``; it is tried when the first is refused.
QUERY_FIELDS = ("index", "uuid", "utilization.gpu", "utilization.memory", "memory.used", "memory.total",
                "power.draw", "temperature.gpu", "clocks.sm", "clocks_event_reasons.active")
OLD_REASONS_FIELD = "clocks_throttle_reasons.active"
Run = Callable[[Sequence[str]], str]


class DriverToolMissing(Exception):
    """nvidia-smi is not on this machine, or refused the question."""


def run_tool(arguments: Sequence[str]) -> str:
    """Run nvidia-smi (or what ``arguments`` names) and return its standard output. It exits non-zero when one
    GPU fails to answer while printing the others' rows: those are kept; only no output at all is an error."""
    try:
        done = subprocess.run(list(arguments), capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DriverToolMissing(f"{arguments[0]}: {exc}") from exc
    if done.returncode != 0 and not done.stdout.strip():
        raise DriverToolMissing(f"{arguments[0]} said: {(done.stdout + done.stderr).strip()[:300]}")
    return done.stdout


@dataclass(frozen=True)
class SmiGpu:
    """One GPU as nvidia-smi reports it (None: "[N/A]" or "[Not Supported]")."""

    index: int
    uuid: str
    util_gpu_pct: float | None
    util_mem_pct: float | None
    memory_used_mib: float | None
    memory_total_mib: float | None
    power_w: float | None
    temp_c: float | None
    sm_clock_mhz: float | None
    reasons_mask: int | None


def _number(text: str) -> float | None:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        return None  # [N/A], [Not Supported], [Unknown Error]


def _mask(text: str) -> int | None:
    try:
        return int(text.strip(), 16)
    except ValueError:
        return None


def parse_query(text: str) -> list[SmiGpu]:
    gpus = []
    for line in text.strip().splitlines():
        cells = [cell.strip() for cell in line.split(",")]
        if len(cells) != len(QUERY_FIELDS):
            continue
        util_gpu, util_mem, used, total, power, temp, clock = (_number(cell) for cell in cells[2:9])
        gpus.append(SmiGpu(int(cells[0]), cells[1], util_gpu, util_mem, used, total, power, temp, clock,
                           _mask(cells[9])))
    return gpus


class DriverTool:
    """nvidia-smi, asked through ``run``: the per-GPU query (with the throttle reasons' older field name from
    the first refusal on, on drivers before 535), the compute apps, and dmon."""

    def __init__(self, run: Run = run_tool, command: str = "nvidia-smi") -> None:
        self.run, self.command = run, command
        self.fields = ",".join(QUERY_FIELDS)

    def query_gpus(self) -> list[SmiGpu]:
        try:
            return self._query()
        except DriverToolMissing as exc:
            if "is not a valid field" not in str(exc) or OLD_REASONS_FIELD in self.fields:
                raise
            self.fields = ",".join((*QUERY_FIELDS[:-1], OLD_REASONS_FIELD))
            return self._query()

    def _query(self) -> list[SmiGpu]:
        return parse_query(self.run([self.command, "--format=csv,noheader,nounits", f"--query-gpu={self.fields}"]))

    def compute_apps(self) -> dict[str, set[int]]:
        """The compute processes on each GPU, by GPU UUID."""
        text = self.run([self.command, "--query-compute-apps=gpu_uuid,pid,used_memory",
                         "--format=csv,noheader,nounits"])
        apps: dict[str, set[int]] = {}
        for line in text.strip().splitlines():
            cells = [cell.strip() for cell in line.split(",")]
            if len(cells) == 3 and cells[1].isdigit():
                apps.setdefault(cells[0], set()).add(int(cells[1]))
        return apps

    def dmon_sm_pct(self) -> dict[int, float]:
        """``nvidia-smi dmon``'s SM utilization (%) of each GPU, one sample; empty where dmon is absent."""
        text = self.run([self.command, "dmon", "-c", "1", "-s", "u"])
        columns: list[str] = []
        found: dict[int, float] = {}
        for line in text.splitlines():
            cells = line.lstrip("#").split()
            if line.startswith("#") and cells and cells[0] == "gpu":
                columns = cells
            elif cells and not line.startswith("#") and "sm" in columns and len(cells) == len(columns):
                value = _number(cells[columns.index("sm")])
                if cells[0].isdigit() and value is not None:
                    found[int(cells[0])] = value
        return found

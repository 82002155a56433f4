"""What ``/proc`` says about a process that uses a device: its cgroup paths and its environment.

Every read goes through a configurable root (tests point it at recorded fixture trees), and a process
that has exited or that the collector may not read is simply not known: never an error.
"""

from __future__ import annotations

from pathlib import Path


class Procfs:
    def __init__(self, root: Path = Path("/proc")) -> None:
        self.root = root

    def cgroups(self, pid: int) -> list[str]:
        """The cgroup paths of ``pid``, one per hierarchy (v1) or the one unified path (v2)."""
        text = self._read(pid, "cgroup")
        return [] if text is None else [line.split(":", 2)[2] for line in text.splitlines() if line.count(":") >= 2]

    def environ(self, pid: int) -> dict[str, str]:
        text = self._read(pid, "environ")
        if text is None:
            return {}
        return dict(entry.split("=", 1) for entry in text.split("\0") if "=" in entry)

    def uid(self, pid: int) -> int | None:
        """The real user id of ``pid``."""
        for line in (self._read(pid, "status") or "").splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
        return None

    def _read(self, pid: int, name: str) -> str | None:
        try:
            return (self.root / str(pid) / name).read_text(errors="replace")
        except OSError:  # gone, or not ours to read
            return None

"""The interface every device backend implements."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from fleetmeter.collectors.readings import Device, DeviceReading


class BackendUnavailable(Exception):
    """This backend cannot run here: its library is not installed, or the node has no such device."""


class Backend(Protocol):
    name: str

    def discover(self) -> list[Device]:
        """The devices this backend reports on (MIG instances included)."""
        ...

    def read(self, now_ms: int) -> list[DeviceReading]:
        """One snapshot of every device. ``now_ms`` is the collector's clock (simulated or wall)."""
        ...

    def read_errors(self) -> Mapping[str, int]:
        """Cumulative count of failed readings, by error name (fields that came back null)."""
        ...

    def close(self) -> None: ...

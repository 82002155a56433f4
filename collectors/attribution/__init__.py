"""Who owns each device: sources asked in order, the first that knows wins, else ``unallocated``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from collectors.readings import DeviceReading, Owner
from schemas.sample_v1 import UNALLOCATED_TENANT

UNALLOCATED = Owner(UNALLOCATED_TENANT)


class AttributionSource(Protocol):
    name: str

    def refresh(self) -> None:
        """Called once per scrape before lookups; must be cheap (cache what is expensive)."""

    def owner_of(self, reading: DeviceReading) -> Owner | None: ...


class BackendHint:
    """The owner that the backend itself reports (the simulator knows its simulated scheduler)."""

    name = "backend"

    def refresh(self) -> None:
        pass

    def owner_of(self, reading: DeviceReading) -> Owner | None:
        return reading.owner


class Attribution:
    def __init__(self, sources: Sequence[AttributionSource]) -> None:
        self.sources = tuple(sources)

    def refresh(self) -> None:
        for source in self.sources:
            source.refresh()

    def owner_of(self, reading: DeviceReading) -> Owner:
        for source in self.sources:
            owner = source.owner_of(reading)
            if owner is not None:
                return owner
        return UNALLOCATED

"""Who owns each device: sources asked in order, the first that finds an owner wins, else ``unallocated``.

A source may find several owners of one device (time-slicing, MPS); ``sharing.split`` then divides the
device's interval between them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import structlog

from fleetmeter.collectors.attribution.sharing import Claim, Share, split
from fleetmeter.collectors.readings import DeviceReading, Owner
from fleetmeter.schemas.sample_v1_columns import UNALLOCATED_TENANT

log = structlog.get_logger(__name__)

UNALLOCATED = Owner(UNALLOCATED_TENANT)


class AttributionSource(Protocol):
    name: str

    @property
    def errors(self) -> int:
        """Failures the source met and survived (an unreachable kubelet, a failed squeue, a bad file)."""
        ...

    def refresh(self) -> None:
        """Called once per scrape before lookups; must be cheap (cache what is expensive)."""

    def claims(self, reading: DeviceReading) -> list[Claim]:
        """The device's owners as this source sees them; empty when it does not know."""
        ...


class BackendHint:
    """The owner that the backend itself reports (the simulator knows its simulated scheduler)."""

    name = "backend"
    errors = 0

    def refresh(self) -> None:
        pass

    def claims(self, reading: DeviceReading) -> list[Claim]:
        return [Claim(owner) for owner in reading.owners]


class Attribution:
    """The sources in order of precedence. A source that raises fails alone: it is logged, counted in
    :meth:`errors` and skipped, and the next source answers."""

    def __init__(self, sources: Sequence[AttributionSource]) -> None:
        self.sources = tuple(sources)
        self._raised: dict[str, int] = {source.name: 0 for source in self.sources}

    def refresh(self) -> None:
        for source in self.sources:
            try:
                source.refresh()
            except Exception:  # a bug or an unforeseen failure in one source must not stop the scrape
                self._failed(source, "refresh")

    def shares_of(self, reading: DeviceReading) -> list[Share]:
        for source in self.sources:
            try:
                claims = source.claims(reading)
            except Exception:
                self._failed(source, "claims")
                continue
            if claims:
                return split(reading, claims)
        return [Share(UNALLOCATED)]

    def errors(self) -> dict[str, int]:
        """Per source: what it survived on its own, and what it raised (and was skipped for)."""
        return {source.name: source.errors + self._raised[source.name] for source in self.sources}

    def _failed(self, source: AttributionSource, step: str) -> None:
        self._raised[source.name] += 1
        log.exception("attribution source failed; skipped", source=source.name, step=step)

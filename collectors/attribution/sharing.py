"""One device, several owners (time-slicing, MPS): how its interval is split between them.

A source reports each owner it finds for a device as a :class:`Claim`, with the device's processes that
belong to that owner when it knows them. Shares follow the owners' processes' SM utilization where the
backend reports it per process (NVML ``nvmlDeviceGetProcessUtilization``), else they are equal; either
way they add up to 1, and the rule used is recorded on each row (``share_rule``, schema 1.1).
``collectors/intervals.py`` turns a device's row into one row per share.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from fleetmeter.collectors.readings import DeviceReading, Owner
from fleetmeter.schemas.sample_v1 import SHARE_BY_PROCESS_UTIL, SHARE_EQUALLY


@dataclass(frozen=True, slots=True)
class Claim:
    """An owner of a device, and the device's processes that are the owner's (empty: not known)."""

    owner: Owner
    pids: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class Share:
    """The part of a device's interval charged to ``owner``: ``fraction`` None means the whole device."""

    owner: Owner
    fraction: float | None = None
    rule: str | None = None


def split(reading: DeviceReading, claims: Sequence[Claim]) -> list[Share]:
    """The shares of the owners ``claims`` name (claims of one owner are merged)."""
    pids: dict[Owner, set[int]] = {}
    for claim in claims:
        pids.setdefault(claim.owner, set()).update(claim.pids)
    if len(pids) == 1:
        return [Share(next(iter(pids)))]
    utilization = {process.pid: process.sm_util for process in reading.processes or ()
                   if process.sm_util is not None}
    weights = [sum(utilization.get(pid, 0.0) for pid in owned) for owned in pids.values()]
    if utilization and all(pids.values()) and sum(weights) > 0:
        total = sum(weights)
        return [Share(owner, weight / total, SHARE_BY_PROCESS_UTIL)
                for owner, weight in zip(pids, weights, strict=True)]
    return [Share(owner, 1 / len(pids), SHARE_EQUALLY) for owner in pids]


def largest_remainder(total: int, fractions: Sequence[float]) -> list[int]:
    """Integer parts of ``total`` in proportion to ``fractions`` (summing to 1) that add up to ``total``."""
    exact = [total * fraction for fraction in fractions]
    parts = [math.floor(value) for value in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: exact[i] - parts[i], reverse=True)
    for i in by_remainder[:total - sum(parts)]:
        parts[i] += 1
    return parts

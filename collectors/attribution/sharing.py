"""One device, several owners (time-slicing, MPS): how its interval is split between them.

A source reports each owner it finds for a device as a :class:`Claim`, with the device's processes that
belong to that owner when it knows them. Shares follow the owners' processes' SM utilization where the
backend reports it per process (NVML ``nvmlDeviceGetProcessUtilization``), else they are equal; either
way they add up to 1, and the rule used is recorded on each row (``share_rule``, schema 1.1).
``collectors/intervals.py`` turns a device's row into one row per share.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from fleetmeter.collectors.readings import DeviceReading, Owner, Workload
from fleetmeter.schemas.sample_v1_columns import SHARE_BY_PROCESS_UTIL, SHARE_EQUALLY


@dataclass(frozen=True, slots=True)
class Claim:
    """An owner of a device, and the device's processes that are the owner's (empty: not known)."""

    owner: Owner
    pids: frozenset[int] = frozenset()


@dataclass(frozen=True, slots=True)
class Share:
    """The part of a device's interval charged to ``owner``: ``fraction`` None means the whole device.

    ``workloads``: the owner's containers on the device (Kubernetes), each with its part of this share (the
    parts add up to 1) and its processes. They name per-pod /metrics series; the sample row is the owner's.
    """

    owner: Owner
    fraction: float | None = None
    rule: str | None = None
    workloads: tuple[tuple[Workload, float, frozenset[int]], ...] = ()


def split(reading: DeviceReading, claims: Sequence[Claim]) -> list[Share]:
    """The shares of the owners ``claims`` name (claims of one owner, one per container, are merged)."""
    by_owner: dict[Owner, dict[Workload | None, set[int]]] = {}
    for claim in claims:
        workloads = by_owner.setdefault(replace(claim.owner, workload=None), {})
        workloads.setdefault(claim.owner.workload, set()).update(claim.pids)
    utilization = {process.pid: process.sm_util for process in reading.processes or ()
                   if process.sm_util is not None}
    workload_parts = [_workload_parts(workloads, utilization) for workloads in by_owner.values()]
    if len(by_owner) <= 1:
        return [Share(owner, workloads=parts) for owner, parts in zip(by_owner, workload_parts, strict=True)]
    fractions, rule = _fractions([set().union(*workloads.values()) for workloads in by_owner.values()], utilization)
    return [Share(owner, fraction, rule, parts)
            for owner, fraction, parts in zip(by_owner, fractions, workload_parts, strict=True)]


def _fractions(pids: Sequence[set[int]], utilization: Mapping[int, float]) -> tuple[list[float], str]:
    """Each holder's fraction (adding up to 1) and the rule used: in proportion to its processes' SM
    utilization where the backend reports it, every holder has processes and some utilization is nonzero;
    else equal."""
    weights = [sum(utilization.get(pid, 0.0) for pid in owned) for owned in pids]
    if utilization and all(pids) and sum(weights) > 0:
        return [weight / sum(weights) for weight in weights], SHARE_BY_PROCESS_UTIL
    return [1 / len(pids)] * len(pids), SHARE_EQUALLY


def _workload_parts(workloads: dict[Workload | None, set[int]], utilization: Mapping[int, float],
                    ) -> tuple[tuple[Workload, float, frozenset[int]], ...]:
    """The owner's containers with their parts of its share and their processes (a claim without a container
    has none)."""
    known = {workload: pids for workload, pids in workloads.items() if workload is not None}
    if not known:
        return ()
    fractions, _ = _fractions(list(known.values()), utilization)
    return tuple((workload, fraction, frozenset(known[workload]))
                 for workload, fraction in zip(known, fractions, strict=True))


def largest_remainder(total: int, fractions: Sequence[float]) -> list[int]:
    """Integer parts of ``total`` in proportion to ``fractions`` (summing to 1) that add up to ``total``."""
    exact = [total * fraction for fraction in fractions]
    parts = [math.floor(value) for value in exact]
    by_remainder = sorted(range(len(exact)), key=lambda i: exact[i] - parts[i], reverse=True)
    for i in by_remainder[:total - sum(parts)]:
        parts[i] += 1
    return parts

"""Device backends, registered in one table. Adding a vendor means one module and one line here."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import structlog

from fleetmeter.collectors.backends.base import Backend, BackendUnavailable

if TYPE_CHECKING:  # the settings need pydantic, which the hardware check's bundle leaves out
    from fleetmeter.collectors.settings import CollectorSettings

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class BackendSpec:
    factory: Callable[[CollectorSettings], Backend]
    in_auto: bool  # probed by ``auto``; the simulator never is


# Each backend's module is imported when the backend is opened: a node loads only what it reads (the TPU
# backend's gRPC alone is about 8 MB).


def _nvml(settings: CollectorSettings) -> Backend:
    from fleetmeter.collectors.backends import nvml

    return nvml.create(settings)


def _simulated(settings: CollectorSettings) -> Backend:
    from fleetmeter.collectors.backends import simulated

    return simulated.SimulatedBackend(settings.simulated, settings.cluster)


def _neuron(settings: CollectorSettings) -> Backend:
    from fleetmeter.collectors.backends import neuron

    return neuron.create(settings.node, settings.neuron)


def _amd(settings: CollectorSettings) -> Backend:
    from fleetmeter.collectors.backends import amd

    return amd.create(settings.node)


def _gaudi(settings: CollectorSettings) -> Backend:
    from fleetmeter.collectors.backends import gaudi

    return gaudi.create(settings.node)


def _tpu(settings: CollectorSettings) -> Backend:
    from fleetmeter.collectors.backends import tpu

    return tpu.create(settings.node, settings.tpu, settings.attribution.proc_root)


BACKENDS: dict[str, BackendSpec] = {
    "nvml": BackendSpec(_nvml, in_auto=True),
    "amd": BackendSpec(_amd, in_auto=True),
    "neuron": BackendSpec(_neuron, in_auto=True),
    "gaudi": BackendSpec(_gaudi, in_auto=True),
    "tpu": BackendSpec(_tpu, in_auto=True),
    "simulated": BackendSpec(_simulated, in_auto=False),
}


def open_backends(settings: CollectorSettings) -> list[Backend]:
    """Open the configured backends; ``auto`` means every real backend this node has."""
    unknown = [name for name in settings.backends if name != "auto" and name not in BACKENDS]
    if unknown:
        raise BackendUnavailable(f"backends: unknown {unknown}; choose from auto, {', '.join(BACKENDS)}")
    if "auto" in settings.backends and len(settings.backends) > 1:
        raise BackendUnavailable("backends: auto cannot be combined with named backends; list them instead")
    if settings.backends != ["auto"]:
        return [BACKENDS[name].factory(settings) for name in settings.backends]
    opened = []
    for name, spec in BACKENDS.items():
        if not spec.in_auto:
            continue
        try:
            opened.append(spec.factory(settings))
        except BackendUnavailable as exc:
            log.debug("backend not present on this node", backend=name, reason=str(exc))
    if not opened:
        raise BackendUnavailable("auto found no accelerator on this node; use --backend simulated for a demo")
    return opened

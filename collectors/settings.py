"""Configuration of the collector daemon (``fleetmeter collect``), declared once with its defaults."""

from __future__ import annotations

import socket
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import Field

from fleetmeter.collectors.attribution.kubernetes import KubernetesSettings
from fleetmeter.collectors.attribution.slurm import SlurmSettings
from fleetmeter.collectors.attribution.static import OwnerRule
from fleetmeter.common.settings import (
    CommaList,
    EndpointSettings,
    KafkaSettings,
    LayeredSettings,
    LoggingSettings,
    Section,
)


class SimulatedSettings(Section):
    """The simulated fleet: a seeded stand-in for hardware (demo, tests, benchmarks)."""

    nodes: int = Field(default=4, ge=1)
    devices_per_node: int = Field(default=8, ge=1, le=64)
    seed: int = 0
    start: datetime | None = Field(default=None, description="Simulated time at start (default: now).")
    speedup: float = Field(default=1.0, gt=0, description="Simulated seconds per real second.")
    model: str = "NVIDIA H100 80GB HBM3"
    tenants: list[str] = Field(default=["research", "search-ranking", "vision", "speech"], min_length=1)
    failing_devices: int = Field(default=1, ge=0, description="Devices that degrade and raise XIDs.")
    time_sliced_per_node: int = Field(default=0, ge=0, le=64, description="The last devices of each node, time-"
                                      "sliced: a second pod (an inference service) shares each of them.")


class NvmlSettings(Section):
    rediscover_every: int = Field(
        default=30, ge=1, description="Scrapes between re-enumerations (MIG reconfiguration, hot-plug)."
    )


class NeuronSettings(Section):
    command: list[str] = Field(default=["neuron-monitor"], min_length=1,
                               description="How to run neuron-monitor (its config file is appended).")
    period_s: float = Field(default=5.0, gt=0, description="neuron-monitor's report period.")


class TpuSettings(Section):
    addresses: list[str] = Field(default=["localhost:8431"], min_length=1,
                                 description="libtpu runtime metrics services (one per TPU_RUNTIME_METRICS_PORTS).")
    timeout_s: float = Field(default=1.0, gt=0, description="Deadline of one metric request.")
    sys_root: Path = Field(default=Path("/sys"), description="Where the PCI bus is read (the host's /sys).")


class SpoolSettings(Section):
    """The on-disk queue in front of Kafka. Every message is written here first, then sent."""

    dir: Path = Path("/var/lib/fleetmeter/spool")
    max_bytes: int = Field(default=1 << 30, gt=0, description="Oldest messages are dropped beyond this.")
    fsync: bool = Field(default=False, description="fsync each message (survives power loss, costs I/O).")


class MetricsSettings(EndpointSettings):
    port: int = Field(default=9410, ge=0, le=65535)
    profile: Literal["fleetmeter", "dcgm"] = Field(
        default="fleetmeter", description="Metric names: fleetmeter's own, or dcgm-exporter compatible."
    )


class AttributionSettings(Section):
    """Who owns each device; sources are asked in this order: scheduler_file, static, kubernetes, slurm,
    then the backend's own hint (the simulator's scheduler); the first that finds an owner wins."""

    static: list[OwnerRule] = Field(default_factory=list)
    scheduler_file: Path | None = Field(
        default=None, description="Rules file that a scheduler hook rewrites: {'rules': [...]}."
    )
    kubernetes: KubernetesSettings = KubernetesSettings()
    slurm: SlurmSettings = SlurmSettings()
    proc_root: Path = Field(default=Path("/proc"), description="Where processes are read (the host's /proc).")


class CollectorSettings(LayeredSettings):
    cluster: str = Field(default="default", min_length=1)
    node: str = Field(default_factory=socket.gethostname, min_length=1)
    backends: CommaList = Field(default=["auto"], min_length=1)
    interval_s: float = Field(default=10.0, gt=0)
    scrapes_per_message: int = Field(default=1, ge=1, description="Scrapes of a node batched per message.")
    max_interval_factor: float = Field(
        default=3.0, gt=1, description="A gap longer than this many intervals starts the device afresh."
    )
    run_for_s: float | None = Field(default=None, gt=0, description="Stop after this long (tests, demos).")
    shutdown_timeout_s: float = Field(default=10.0, ge=0)
    kafka: KafkaSettings = KafkaSettings()
    spool: SpoolSettings = SpoolSettings()
    metrics: MetricsSettings = MetricsSettings()
    attribution: AttributionSettings = AttributionSettings()
    simulated: SimulatedSettings = SimulatedSettings()
    nvml: NvmlSettings = NvmlSettings()
    neuron: NeuronSettings = NeuronSettings()
    tpu: TpuSettings = TpuSettings()
    logging: LoggingSettings = LoggingSettings()

"""A seeded, deterministic fleet of simulated GPUs: the hardware stand-in for the demo, tests and benchmarks.

Each node's schedule is a sequence of allocations drawn from a per-node random stream, so the owner and
workload of a device at any simulated instant depend only on the seed. Utilization patterns per kind
of work: training (near full, with checkpoint dips), inference (diurnal), idle allocations (memory held,
no compute), notebooks (bursty) and free devices; some jobs busy on few SMs, some small enough for a MIG slice
(``job_habit``). A few devices degrade: ECC errors, then XIDs. Optionally the last devices of each node are
time-sliced: a second pod runs an inference service on each (``guest_at``). Every owner comes with its pod,
as a Kubernetes scheduler would place it (namespace: the tenant, pod: the job's, container ``main``).
Readings at a given timestamp are a pure function of (seed, device, timestamp); counters integrate.
"""

from __future__ import annotations

import math
import random
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from fleetmeter.collectors.readings import Counter, Device, DeviceReading, Owner, ProcessUsage, Workload
from fleetmeter.collectors.settings import SimulatedSettings

HOUR_MS = 3_600_000
MEM_TOTAL_BYTES = 80 * 1024**3
IDLE_W, MAX_W = 70.0, 700.0
NVLINK_PEAK_BYTES_PER_S = 300e9
PCIE_PEAK_BYTES_PER_S = 20e9
FAILURE_AFTER_MS = 2 * HOUR_MS
#: How long a time-sliced device's guest pod stays before another takes its place.
GUEST_MS = 3 * HOUR_MS
DRIVER_VERSION = "550.54.15"

#: kind -> (weight, min hours, max hours)
WORKLOADS: dict[str, tuple[float, float, float]] = {
    "training": (0.40, 2.0, 12.0),
    "inference": (0.22, 6.0, 36.0),
    "idle": (0.13, 1.0, 8.0),
    "notebook": (0.10, 0.5, 4.0),
    "free": (0.15, 0.25, 2.0),
}


@dataclass(frozen=True, slots=True)
class Allocation:
    start_ms: int
    end_ms: int
    workload: str
    owner: Owner | None


@dataclass(slots=True)
class _DeviceState:
    device: Device
    failing: bool
    last_ms: int | None = None
    energy_j: float = 0.0
    ecc_corrected: float = 0.0
    ecc_uncorrected: float = 0.0
    pcie_tx: float = 0.0
    pcie_rx: float = 0.0
    nvlink_tx: float = 0.0
    nvlink_rx: float = 0.0
    xid_79_sent: bool = False


def _pid(job_id: str) -> int:
    """A job's process id on its devices (stable across processes)."""
    return 10_000 + zlib.crc32(job_id.encode()) % 50_000


def noise(*key: object) -> float:
    """A deterministic pseudo-random value in [-1, 1] for a key (stable across processes)."""
    return zlib.crc32(repr(key).encode()) / 0x7FFFFFFF - 1.0


def workload_util(workload: str, ts_ms: int, key: str) -> float:
    """Compute utilization in 0..1 of a device doing ``workload`` at ``ts_ms``."""
    jitter = noise(key, ts_ms // 10_000)
    if workload == "training":
        in_checkpoint = (ts_ms // 60_000) % 30 == 0  # one minute in thirty
        return 0.08 if in_checkpoint else min(1.0, 0.93 + 0.05 * jitter)
    if workload == "inference":
        hour = (ts_ms / HOUR_MS) % 24
        diurnal = 0.5 + 0.5 * math.sin(2 * math.pi * (hour - 9) / 24)
        return max(0.0, min(1.0, 0.12 + 0.6 * diurnal + 0.05 * jitter))
    if workload == "notebook":
        burst = noise(key, ts_ms // 300_000) > 0.4  # busy in about a third of 5-minute windows
        return max(0.0, 0.65 + 0.2 * jitter) if burst else 0.02 * (1 + jitter)
    if workload == "idle":
        return 0.005 * (1 + jitter)
    return 0.0


#: How some jobs use what they hold (the waste the driver's utilization hides, docs/efficiency.md): a training
#: job whose kernels keep the GPU "busy" on a few SMs (waiting on input or on communication), and an inference
#: service that would fit a small MIG slice. Per job, so that all of a job's devices behave alike.
HABIT_SM = {"busy_low_sm": 0.06, "small": 0.25}
HABIT_MEMORY = {"busy_low_sm": 0.7, "small": 0.06}
HABIT_MEM_BW = {"busy_low_sm": 0.05, "small": 0.1}


def job_habit(allocation: Allocation) -> str:
    """``busy_low_sm`` for a fifth of the training jobs, ``small`` for a third of the inference ones, else
    ``usual``."""
    draw = noise(allocation.owner.job_id, "habit") if allocation.owner is not None else 0.0
    if allocation.workload == "training" and draw > 0.6:
        return "busy_low_sm"
    if allocation.workload == "inference" and draw > 1 / 3:
        return "small"
    return "usual"


@dataclass
class NodeSchedule:
    """The allocations of one node's device groups, generated lazily as simulated time advances."""

    rng: random.Random
    node_index: int
    devices: int
    tenants: list[str]
    start_ms: int
    groups: list[list[Allocation]] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Half the nodes run one job per node, the others two jobs on half the devices each.
        group_count = 1 if self.rng.random() < 0.5 or self.devices < 2 else 2
        self.groups = [[] for _ in range(group_count)]

    def group_of(self, device_index: int) -> int:
        return device_index * len(self.groups) // self.devices

    def allocation_at(self, device_index: int, ts_ms: int) -> Allocation:
        group = self.group_of(device_index)
        timeline = self.groups[group]
        while not timeline or timeline[-1].end_ms <= ts_ms:
            timeline.append(self._next_allocation(group, timeline))
        for allocation in reversed(timeline):
            if allocation.start_ms <= ts_ms:
                return allocation
        return timeline[0]

    def _next_allocation(self, group: int, timeline: list[Allocation]) -> Allocation:
        kinds = list(WORKLOADS)
        workload = self.rng.choices(kinds, weights=[WORKLOADS[k][0] for k in kinds])[0]
        _, low_h, high_h = WORKLOADS[workload]
        duration_ms = int(self.rng.uniform(low_h, high_h) * HOUR_MS)
        # The first allocation started before the simulation did, so the fleet is busy from the start.
        start_ms = timeline[-1].end_ms if timeline else self.start_ms - int(self.rng.random() * duration_ms)
        owner = None
        if workload != "free":
            number = len(timeline)
            owner = pod_owner(self.rng.choice(self.tenants), f"{workload}-{self.node_index:03d}-{group}-{number}")
        return Allocation(start_ms, start_ms + duration_ms, workload, owner)


def pod_owner(tenant: str, job_id: str) -> Owner:
    return Owner(tenant, job_id, Workload(tenant, f"{job_id}-0", "main"))


class SimulatedBackend:
    name = "simulated"

    def __init__(self, settings: SimulatedSettings, cluster: str) -> None:
        self.settings = settings
        start = settings.start or datetime.now(UTC)
        self.start_ms = int(start.timestamp() * 1000)
        fleet_rng = random.Random(settings.seed)
        self._schedules: dict[str, NodeSchedule] = {}
        self._states: list[_DeviceState] = []
        total = settings.nodes * settings.devices_per_node
        failing = set(fleet_rng.sample(range(total), min(settings.failing_devices, total)))
        for node_index in range(settings.nodes):
            node = f"{cluster}-sim-{node_index:03d}"
            self._schedules[node] = NodeSchedule(
                random.Random(f"{settings.seed}/{node}"), node_index, settings.devices_per_node,
                settings.tenants, self.start_ms,
            )
            for index in range(settings.devices_per_node):
                device_uuid = "GPU-" + str(uuid.UUID(int=fleet_rng.getrandbits(128), version=4))
                device = Device(node, device_uuid, index, "gpu", "nvidia", settings.model,
                                pci_bus_id=f"00000000:{0x18 + index:02X}:00.0",
                                driver_version=DRIVER_VERSION)
                position = node_index * settings.devices_per_node + index
                self._states.append(_DeviceState(device, failing=position in failing))

    def discover(self) -> list[Device]:
        return [state.device for state in self._states]

    def read_errors(self) -> Mapping[str, int]:
        return {}

    def close(self) -> None:
        pass

    def allocation_at(self, device: Device, ts_ms: int) -> Allocation:
        return self._schedules[device.node].allocation_at(device.index, ts_ms)

    def guest_at(self, device: Device, ts_ms: int) -> Owner | None:
        """The second pod on a time-sliced device (None on the others): a new one every ``GUEST_MS``."""
        if device.index < self.settings.devices_per_node - self.settings.time_sliced_per_node:
            return None
        stint = (ts_ms - self.start_ms) // GUEST_MS
        tenants = self.settings.tenants
        return pod_owner(tenants[zlib.crc32(f"{device.uuid}/{stint}".encode()) % len(tenants)],
                         f"shared-{device.node}-{device.index}-{stint}")

    def read(self, now_ms: int) -> list[DeviceReading]:
        return [self._read(state, now_ms) for state in self._states]

    def _read(self, state: _DeviceState, now_ms: int) -> DeviceReading:
        device = state.device
        allocation = self.allocation_at(device, now_ms)
        guest = self.guest_at(device, now_ms)
        failed = state.failing and now_ms - self.start_ms >= FAILURE_AFTER_MS
        host_util = 0.0 if failed else workload_util(allocation.workload, now_ms, device.uuid)
        guest_util = 0.0 if failed or guest is None else workload_util("inference", now_ms, device.uuid) / 2
        util = min(1.0, host_util + guest_util)
        power_w = IDLE_W + (MAX_W - IDLE_W) * util ** 1.2
        habit = job_habit(allocation)
        mem_fraction = HABIT_MEMORY.get(habit) or {"training": 0.88, "inference": 0.55, "idle": 0.35,
                                                   "notebook": 0.4}.get(allocation.workload, 0.0)
        mem_used = int(MEM_TOTAL_BYTES * mem_fraction * (1 + 0.02 * noise(device.uuid, "mem")))
        guest_mem = 0 if guest is None else min(MEM_TOTAL_BYTES // 10, MEM_TOTAL_BYTES - mem_used)
        self._advance_counters(state, now_ms, power_w, util, allocation.workload)
        xids = self._xid_events(state, now_ms, failed)
        processes = [ProcessUsage(_pid(owner.job_id), used, share) for owner, used, share in
                     ((allocation.owner, mem_used, host_util), (guest, guest_mem, guest_util))
                     if owner is not None and owner.job_id is not None and used]
        temp_c = 32 + 45 * util + 2 * noise(device.uuid, now_ms // 60_000) + (15 if state.failing else 0)
        sm_active = util * HABIT_SM.get(habit, 0.96)
        return DeviceReading(
            device=device,
            util_compute=util,
            util_mem_bw=util * HABIT_MEM_BW.get(habit, 0.55 if allocation.workload == "training" else 0.35),
            sm_active=sm_active,
            tensor_active=util * (0.72 if allocation.workload == "training" else 0.3),
            mem_used_bytes=mem_used + guest_mem,
            mem_total_bytes=MEM_TOTAL_BYTES,
            power_w=power_w,
            temp_c=temp_c,
            sm_clock_mhz=1980.0 if util > 0.05 else 345.0,
            throttle_reasons=("hw_thermal",) if temp_c > 85 else (("gpu_idle",) if util < 0.05 else ()),
            xid_errors=xids,
            processes=tuple(processes),
            counters={
                "energy_j": Counter(state.energy_j),
                "ecc_corrected": Counter(state.ecc_corrected),
                "ecc_uncorrected": Counter(state.ecc_uncorrected),
                "pcie_tx_bytes": Counter(state.pcie_tx),
                "pcie_rx_bytes": Counter(state.pcie_rx),
                "nvlink_tx_bytes": Counter(state.nvlink_tx),
                "nvlink_rx_bytes": Counter(state.nvlink_rx),
            },
            extras={"sim.workload_" + allocation.workload: 1.0, "gpm.sm_occupancy": sm_active * 0.45,
                    "nvml.enc_util": 0.0, "nvml.dec_util": 0.0},
            owners=tuple(owner for owner in (allocation.owner, guest) if owner is not None),
        )

    @staticmethod
    def _advance_counters(state: _DeviceState, now_ms: int, power_w: float, util: float, workload: str) -> None:
        elapsed_s = 0.0 if state.last_ms is None else max(0.0, (now_ms - state.last_ms) / 1000)
        state.last_ms = now_ms
        state.energy_j += power_w * elapsed_s
        link_share = util if workload == "training" else util * 0.05
        state.nvlink_tx += NVLINK_PEAK_BYTES_PER_S * 0.4 * link_share * elapsed_s
        state.nvlink_rx += NVLINK_PEAK_BYTES_PER_S * 0.4 * link_share * elapsed_s
        state.pcie_tx += PCIE_PEAK_BYTES_PER_S * 0.02 * util * elapsed_s
        state.pcie_rx += PCIE_PEAK_BYTES_PER_S * 0.05 * util * elapsed_s
        if state.failing:
            state.ecc_corrected += round(3 * elapsed_s / 10)

    def _xid_events(self, state: _DeviceState, now_ms: int, failed: bool) -> tuple[int, ...]:
        if not state.failing:
            return ()
        if failed and not state.xid_79_sent:
            state.xid_79_sent = True
            state.ecc_uncorrected += 1
            return (48, 79)  # double-bit ECC error, then the GPU fell off the bus
        return (13,) if not failed and noise(state.device.uuid, now_ms // 10_000) > 0.98 else ()

"""How an exporter's series become schema-v1 readings: which metric feeds which column, in which unit, and
which labels name the node, the device and its owner.

Two mappings are built in: dcgm-exporter's (NVIDIA) and AMD's device-metrics-exporter's. A configuration
changes any part of one (``prometheus.mapping``): label names, owner rules, or a column's sources. Each
column lists its sources in order of preference; per device and time the first that has a value wins
(dcgm-exporter has no ``DCGM_FI_DEV_GPU_UTIL`` on MIG instances, so ``DCGM_FI_PROF_GR_ENGINE_ACTIVE`` stands in).

Owner rules use the attribution's language (collectors/attribution/kubernetes.py), read off the series'
labels: ``namespace`` and ``pod`` read those labels, ``label:<name>`` any label; the first rule that finds
a non-empty value wins, and a device no rule claims is ``unallocated``, as in the collector.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator

from fleetmeter.common.settings import Section

#: What a source's value is: a level averaged over each step (gauge), a level of which a step keeps its last
#: value (level), a cumulative counter (counter, its increase per interval becomes the column), a per-second
#: rate (rate, times the interval), the code of the last XID error (last_xid: a change to a non-zero code is
#: one event), or NVML's clock-event bitmask (throttle_mask).
Kind = Literal["gauge", "level", "counter", "rate", "last_xid", "throttle_mask"]

#: Columns a mapping can fill: schema-v1 columns, plus free and reserved memory (total = used + free + reserved).
Column = Literal[
    "util_compute", "util_mem_bw", "sm_active", "tensor_active", "mem_used_bytes", "mem_free_bytes",
    "mem_reserved_bytes", "mem_total_bytes", "power_w", "energy_j", "temp_c", "sm_clock_mhz", "throttle_reasons",
    "xid_errors", "ecc_corrected", "ecc_uncorrected", "pcie_tx_bytes", "pcie_rx_bytes", "nvlink_tx_bytes",
    "nvlink_rx_bytes",
]

_SELECTOR = re.compile(r'^[A-Za-z_:][A-Za-z0-9_:]*(\{[^{}]*\})?$')
_RULE = re.compile(r"^(label:[A-Za-z_][A-Za-z0-9_]*|namespace|pod)$")
_MIB = 1024**2


class Source(Section):
    """One metric feeding a column: ``value x scale`` is in the column's unit (bytes, joules, watts, 0..1)."""

    metric: str = Field(description='A metric name, optionally with label matchers: gpu_clock{clock_type="system"}.')
    kind: Kind = "gauge"
    scale: float = Field(default=1.0, gt=0, allow_inf_nan=False)

    @field_validator("metric")
    @classmethod
    def _selector(cls, metric: str) -> str:
        if len(metric) > 512 or not _SELECTOR.match(metric):
            raise ValueError(f"{metric[:80]!r} is not a metric name with optional {{label matchers}}")
        return metric

    @property
    def name(self) -> str:
        return self.metric.partition("{")[0]


class Labels(Section):
    """The series labels that identify a device."""

    node: str = Field(min_length=1)
    device: str = Field(min_length=1, description="A label unique per device: its UUID or serial number.")
    index: str = Field(min_length=1)
    model: str = Field(min_length=1)
    instance: str | None = Field(default=None, description="A partition of the device (MIG's GPU_I_ID).")
    cluster: str | None = Field(default=None, description="Default: the import's `cluster` setting.")


class Mapping(Section):
    vendor: str = Field(min_length=1, max_length=64)
    labels: Labels
    partitions: Literal["mig", "devices"] = Field(
        default="mig", description="mig: an instance label marks a MIG instance of its board; devices: a device "
                                   "seen with several instance values is that many devices.")
    tenant_from: list[str] = Field(default=["namespace"])
    job_from: list[str] = Field(default=["pod"])
    columns: dict[Column, list[Source]]

    @field_validator("tenant_from", "job_from")
    @classmethod
    def _known_rules(cls, rules: list[str]) -> list[str]:
        unknown = [rule for rule in rules if not _RULE.match(rule)]
        if unknown:
            raise ValueError(f"unknown rule(s) {unknown}: use namespace, pod or label:<series label>")
        return rules

    def sources(self) -> list[tuple[Column, int, Source]]:
        """Every source with its column and its rank among the column's sources (0 first)."""
        return [(column, rank, source) for column, sources in self.columns.items()
                for rank, source in enumerate(sources)]


def _percent(metric: str) -> list[Source]:
    return [Source(metric=metric, scale=0.01)]


DCGM = Mapping(
    vendor="nvidia",
    labels=Labels(node="Hostname", device="UUID", index="gpu", model="modelName", instance="GPU_I_ID"),
    columns={
        "util_compute": [Source(metric="DCGM_FI_DEV_GPU_UTIL", scale=0.01),
                         Source(metric="DCGM_FI_PROF_GR_ENGINE_ACTIVE")],
        "util_mem_bw": [Source(metric="DCGM_FI_PROF_DRAM_ACTIVE"), Source(metric="DCGM_FI_DEV_MEM_COPY_UTIL",
                                                                          scale=0.01)],
        "sm_active": [Source(metric="DCGM_FI_PROF_SM_ACTIVE")],
        "tensor_active": [Source(metric="DCGM_FI_PROF_PIPE_TENSOR_ACTIVE")],
        "mem_used_bytes": [Source(metric="DCGM_FI_DEV_FB_USED", kind="level", scale=_MIB)],
        "mem_free_bytes": [Source(metric="DCGM_FI_DEV_FB_FREE", kind="level", scale=_MIB)],
        "mem_reserved_bytes": [Source(metric="DCGM_FI_DEV_FB_RESERVED", kind="level", scale=_MIB)],
        "power_w": [Source(metric="DCGM_FI_DEV_POWER_USAGE")],
        "energy_j": [Source(metric="DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", kind="counter", scale=1e-3)],
        "temp_c": [Source(metric="DCGM_FI_DEV_GPU_TEMP")],
        "sm_clock_mhz": [Source(metric="DCGM_FI_DEV_SM_CLOCK")],
        "throttle_reasons": [Source(metric="DCGM_FI_DEV_CLOCKS_EVENT_REASONS", kind="throttle_mask"),
                             Source(metric="DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", kind="throttle_mask")],
        "xid_errors": [Source(metric="DCGM_FI_DEV_XID_ERRORS", kind="last_xid")],
        "ecc_corrected": [Source(metric="DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", kind="counter")],
        "ecc_uncorrected": [Source(metric="DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", kind="counter")],
        "pcie_tx_bytes": [Source(metric="DCGM_FI_PROF_PCIE_TX_BYTES", kind="rate")],
        "pcie_rx_bytes": [Source(metric="DCGM_FI_PROF_PCIE_RX_BYTES", kind="rate")],
        "nvlink_tx_bytes": [Source(metric="DCGM_FI_PROF_NVLINK_TX_BYTES", kind="rate")],
        "nvlink_rx_bytes": [Source(metric="DCGM_FI_PROF_NVLINK_RX_BYTES", kind="rate")],
    },
)

AMD = Mapping(
    vendor="amd",
    labels=Labels(node="hostname", device="serial_number", index="gpu_id", model="card_model",
                  instance="gpu_partition_id"),
    partitions="devices",
    columns={
        "util_compute": _percent("gpu_gfx_activity"),
        "util_mem_bw": _percent("gpu_umc_activity"),
        "sm_active": _percent("gpu_prof_sm_active"),
        "tensor_active": _percent("gpu_prof_tensor_active_percent"),
        "mem_used_bytes": [Source(metric="gpu_used_vram", kind="level", scale=_MIB)],
        "mem_total_bytes": [Source(metric="gpu_total_vram", kind="level", scale=_MIB)],
        "power_w": [Source(metric="gpu_package_power"), Source(metric="gpu_power_usage"),
                    Source(metric="gpu_average_package_power")],
        "energy_j": [Source(metric="gpu_energy_consumed", kind="counter", scale=1e-6)],
        "temp_c": [Source(metric="gpu_junction_temperature"), Source(metric="gpu_edge_temperature")],
        "sm_clock_mhz": [Source(metric='gpu_clock{clock_type="system"}')],
        "ecc_corrected": [Source(metric="gpu_ecc_correct_total", kind="counter")],
        "ecc_uncorrected": [Source(metric="gpu_ecc_uncorrect_total", kind="counter")],
    },
)

EXPORTERS: dict[str, Mapping] = {"dcgm": DCGM, "amd": AMD}


class LabelChanges(Section):
    """The label names a configuration changes; the others stay the built-in mapping's."""

    node: str | None = Field(default=None, min_length=1)
    device: str | None = Field(default=None, min_length=1)
    index: str | None = Field(default=None, min_length=1)
    model: str | None = Field(default=None, min_length=1)
    instance: str | None = None
    cluster: str | None = None


class MappingChanges(Section):
    """What a configuration changes of a built-in mapping; a column given replaces its sources (an empty list
    leaves the column out)."""

    labels: LabelChanges = LabelChanges()
    tenant_from: list[str] | None = None
    job_from: list[str] | None = None
    columns: dict[Column, list[Source]] = Field(default={})


def resolve(exporter: str, changes: MappingChanges) -> Mapping:
    builtin = EXPORTERS[exporter]
    columns = {column: sources for column, sources in (builtin.columns | changes.columns).items() if sources}
    labels = builtin.labels.model_dump() | changes.labels.model_dump(exclude_unset=True)
    rules = changes.model_dump(include={"tenant_from", "job_from"}, exclude_none=True)
    return Mapping.model_validate(builtin.model_dump() | rules | {"labels": labels, "columns": columns})

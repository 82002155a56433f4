"""The API's answers, typed: what ``/openapi.json`` documents and every response is validated against.

Hours are device-hours; ``*_cost`` in the configured currency (null where no price matches the model); shares
are ratios in 0..1, null where nothing was known. Each answer says which window it covers.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Granularity = Literal["1m", "1h", "1d"]


class Answer(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Problem(Answer):
    """An error, as RFC 9457 problem details (``application/problem+json``)."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None


class Window(Answer):
    start: datetime = Field(description="Inclusive, UTC.")
    end: datetime = Field(description="Exclusive, UTC.")


class Usage(Answer):
    """What was held and what became of it: the same figures at every level."""

    device_hours: float
    busy_device_hours: float
    utilization: float | None = Field(description="Busy over device-time with a utilization reading.")
    idle_device_hours: float
    busy_idle_device_hours: float = Field(description="Busy by the driver's figure, SMs nearly idle "
                                                      "(docs/efficiency.md); never the idle hours.")
    cost: float | None
    idle_cost: float | None
    busy_idle_cost: float | None
    wasted_cost: float | None = Field(description="idle_cost + busy_idle_cost: the hours of the two never overlap.")


class FleetSummary(Usage):
    """The usage figures are of allocated time (what tenants held); ``present_device_hours`` is all of it."""

    window: Window
    currency: str
    present_device_hours: float
    tenants: int
    jobs: int


class TenantSummary(Usage):
    tenant: str
    jobs: int


class TenantList(Answer):
    window: Window
    currency: str
    tenants: list[TenantSummary]


class UsagePoint(Usage):
    time: datetime


class TenantUsage(Answer):
    tenant: str
    granularity: Granularity
    window: Window
    currency: str
    points: list[UsagePoint]


class JobSummary(Usage):
    cluster: str
    tenant: str
    job_id: str
    first_day: date
    last_day: date


class JobPage(Answer):
    window: Window
    currency: str
    jobs: list[JobSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page.")


class JobDevice(Answer):
    device_uuid: str
    node: str
    vendor: str
    model: str
    first_seen: datetime
    last_seen: datetime
    device_hours: float
    utilization: float | None
    mem_used_max_bytes: int | None


class JobDetail(Usage):
    cluster: str
    tenant: str
    job_id: str
    currency: str
    first_seen: datetime
    last_seen: datetime
    devices: list[JobDevice]
    utilization_histogram_hours: list[float] = Field(
        description="Device-hours per utilization bin of 0.05 (20 bins), over the job's life.")


class ForecastPoint(Answer):
    cluster: str
    tenant: str = Field(description="'*': the pool, every tenant together.")
    model: str
    measure: str
    day: date
    actual: float | None
    mean: float | None
    lo_80: float | None
    hi_80: float | None
    lo_95: float | None
    hi_95: float | None
    method: str | None
    note: str | None


class CapacityQuarter(Answer):
    cluster: str
    model: str
    quarter: str
    supply_devices: float | None
    demand_devices: float | None
    headroom_devices: float | None
    runs_out_on: date | None
    add_devices: int | None
    note: str | None


class Anomaly(Answer):
    id: str
    kind: str
    status: str
    cluster: str | None
    tenant: str | None
    job_id: str | None
    node: str | None
    device_uuid: str | None
    model: str | None
    start: datetime
    end: datetime | None
    severity: float | None
    evidence: str | None = Field(description="The figures that triggered it, as JSON text.")
    cost_impact: float | None
    cost_per_day: float | None


class Efficiency(Answer):
    grain: Literal["job", "tenant", "model"]
    cluster: str | None
    tenant: str | None
    job_id: str | None
    vendor: str
    model: str
    device_hours: float
    busy_share: float | None
    busy_coverage: float | None
    sm_active: float | None
    sm_coverage: float | None
    tensor_active: float | None
    tensor_coverage: float | None
    mem_bw_active: float | None
    mem_bw_coverage: float | None
    mem_peak_bytes: int | None
    mem_typical_bytes: float | None
    mem_total_bytes: int | None
    mem_coverage: float | None
    kwh_per_busy_device_hour: float | None
    energy_coverage: float | None
    idle_device_hours: float | None
    busy_idle_device_hours: float | None
    busy_idle_coverage: float | None = Field(description="Share of the device-time whose SM activity could show "
                                                         "busy-but-idle time.")
    shared_share: float | None = Field(description="Share of the device-time on devices shared with other owners.")
    idle_cost: float | None
    busy_idle_cost: float | None
    unmeasured: str | None


class Rightsizing(Answer):
    cluster: str
    tenant: str
    job_id: str
    model: str
    recommended: str
    change: Literal["mig_profile", "model"]
    saving_per_day: float
    saving_in_period: float
    per_device_hour: float
    recommended_per_device_hour: float
    compute_reading: str
    compute_quantile: float
    compute_peak_hourly: float | None = Field(description="The busiest device-hour's mean of the same reading.")
    compute_needed: float
    recommended_compute_share: float
    mem_peak_bytes: int
    memory_needed: float
    recommended_memory_bytes: float
    device_hours: float
    observed_hours: float

"""Configuration of the analyst commands (``query``, ``sql``, ``report``): where the warehouse is, what
each device model costs, and what counts as idle. Prices and thresholds live here, not in stored data,
so changing one changes every answer at once without reprocessing (design principle 5)."""

from __future__ import annotations

from pydantic import Field, field_validator

from fleetmeter.common.settings import LayeredSettings, Section
from fleetmeter.schemas.warehouse import HISTOGRAM_BINS


class Price(Section):
    """The price of one device model (or of every model a GLOB pattern matches)."""

    model: str = Field(min_length=1, description="Model name or GLOB pattern ('NVIDIA H100*'); the longest match wins.")
    per_device_hour: float = Field(
        ge=0, description="Price of one device-hour (for a MIG profile's model: of one instance).")
    per_kwh: float | None = Field(default=None, ge=0, description="Price of energy; adds energy cost where set.")


class AnalysisSettings(LayeredSettings):
    warehouse: str = Field(default="warehouse", min_length=1, description="Warehouse directory or object-store URI.")
    storage_options: dict[str, str] = Field(
        default_factory=dict, description="delta-rs object-store options (AWS_ENDPOINT_URL, ...), as the "
                                          "pipeline's warehouse.storage_options.")
    idle_threshold: float = Field(
        default=0.05, gt=0, le=1,
        description="util_compute below this is idle; a multiple of 0.05 (read off the stored histogram).")
    currency: str = Field(default="USD", min_length=1, description="Label of the prices' currency.")
    prices: list[Price] = Field(default_factory=list)

    @field_validator("idle_threshold")
    @classmethod
    def _on_a_bin_edge(cls, value: float) -> float:
        bins = value * HISTOGRAM_BINS
        if abs(bins - round(bins)) > 1e-9:
            raise ValueError(f"must be a multiple of {1 / HISTOGRAM_BINS} (a bin edge of the stored histogram)")
        return value

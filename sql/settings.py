"""Configuration of the analyst commands (``query``, ``sql``, ``report``, ``forecast``, ``plan``): where the
warehouse is, what each device model costs to use and to own, what counts as idle, and how to forecast and
plan. Prices and thresholds live here, not in stored data, so changing one changes every answer at once
without reprocessing (design principle 5)."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from fleetmeter.common.settings import ConfigError, EndpointSettings, LayeredSettings, Section
from fleetmeter.schemas.warehouse import HISTOGRAM_BINS


class Price(Section):
    """The price of one device model (or of every model a GLOB pattern matches)."""

    model: str = Field(min_length=1, description="Model name or GLOB pattern ('NVIDIA H100*'); the longest match wins.")
    per_device_hour: float = Field(
        ge=0, description="Price of one device-hour (for a MIG profile's model: of one instance).")
    per_kwh: float | None = Field(default=None, ge=0, description="Price of energy; adds energy cost where set.")


class Economics(Section):
    """What owning (or renting) one device of a model costs, and what it is worth; for TCO and procurement."""

    model_config = ConfigDict(allow_inf_nan=False)

    model: str = Field(min_length=1, description="Model name or GLOB pattern; the longest match wins.")
    purchase_price: float | None = Field(default=None, ge=0, description="Per device, bought.")
    depreciation_years: float = Field(default=4.0, gt=0, le=30)
    hosting_per_year: float = Field(default=0.0, ge=0, description="Rack, network, people: per device-year.")
    support_per_year: float = Field(default=0.0, ge=0)
    on_demand_per_hour: float | None = Field(default=None, ge=0, description="Rented by the hour: paid for the "
                                                                             "hours allocated.")
    reserved_per_hour: float | None = Field(default=None, ge=0, description="Reserved: paid for every hour of "
                                                                            "every device present.")
    committed_per_hour: float | None = Field(default=None, ge=0, description="A committed-use rate: likewise.")
    throughput: float = Field(default=1.0, gt=0, description="Compute per device relative to the others' (units).")
    power_kw: float = Field(default=0.7, ge=0, le=100, description="Drawn per device at full load, for site power.")
    lead_time_quarters: int = Field(default=1, ge=0, le=8, description="From order to service.")
    min_order: int = Field(default=1, ge=1, le=100_000, description="Devices per order at least (a server's worth).")


class ForecastSettings(Section):
    horizon_days: int = Field(default=90, ge=7, le=1095)
    models: list[Literal["AutoETS", "AutoARIMA", "MSTL", "AutoTheta"]] = Field(
        default=["AutoETS", "MSTL"], min_length=1,
        description="Candidates, each backtested against seasonal-naive (always the baseline).")
    season_days: int = Field(default=7, ge=1, le=366)
    backtest_windows: int = Field(default=3, ge=1, le=20, description="Rolling origins.")
    backtest_days: int = Field(default=14, ge=1, le=180, description="Horizon of each backtest.")
    history_days: int = Field(default=365, ge=14, description="Days of history a model is fitted on, at most.")

    @property
    def min_history_days(self) -> int:
        """Two seasons to fit plus every backtest window's days."""
        return 2 * self.season_days + self.backtest_windows * self.backtest_days

    @model_validator(mode="after")
    def _workable(self) -> ForecastSettings:
        if self.history_days < self.min_history_days:
            raise ValueError(f"history_days {self.history_days} is less than the {self.min_history_days} days that "
                             "two seasons and the backtests need")
        if "MSTL" in self.models and self.season_days < 2:
            raise ValueError("MSTL needs a season of at least 2 days")
        return self


class PlannedChange(Section):
    """Devices that will arrive (positive) or be retired (negative) in a cluster on a date."""

    cluster: str = Field(min_length=1)
    model: str = Field(min_length=1, description="The model's name, exactly as the rows carry it.")
    starting: date
    devices: int = Field(ge=-1_000_000, le=1_000_000)


class CapacitySettings(Section):
    level: Literal[80, 95] = Field(default=80, description="Demand is the upper bound of this prediction interval.")
    target_headroom: float = Field(default=0.1, ge=0, le=10, description="Supply to keep above demand (0.1: 10 %).")
    planned: list[PlannedChange] = Field(default_factory=list, description="The procurement plan already decided.")


class ProcurementSettings(Section):
    quarters: int = Field(default=4, ge=1, le=40)
    budget_per_quarter: float | None = Field(default=None, ge=0, description="None: no budget limit.")
    site_power_kw: dict[str, float] = Field(default_factory=dict, description="Per cluster; absent: no limit.")
    candidates: list[str] = Field(default_factory=list, description="Models that may be bought (economics entries "
                                                                    "with a purchase price); empty: all of them.")


class AnomalySettings(Section):
    idle_hours: int = Field(default=2, ge=1, le=720, description="A job's devices idle this many hours in a row.")
    idle_share: float = Field(default=0.95, gt=0, le=1, description="An hour is idle when this share of the job's "
                                                                    "device-time was below the idle threshold.")
    straggler_min_devices: int = Field(default=4, ge=3, le=100_000, description="Jobs with fewer have no peers.")
    straggler_z: float = Field(default=3.5, gt=0, le=100, description="Robust z-score below the peers' median.")
    straggler_ratio: float = Field(default=0.8, gt=0, lt=1, description="... and at most this share of it.")
    straggler_min_hours: float = Field(default=1.0, gt=0, description="Device-hours a device must have to judge.")
    regression_min_hours: int = Field(default=3, ge=2, le=720, description="Hours on each side of a change point.")
    regression_drop: float = Field(default=0.2, gt=0, le=1, description="Utilization lost at the change point.")
    regression_noise: float = Field(default=4.0, gt=0, description="... and by this many standard errors of the "
                                                                   "difference of the means before and after.")
    sick_min_peers: int = Field(default=5, ge=3, description="Devices of a model under similar load to compare.")
    sick_temp_c: float = Field(default=10.0, gt=0, description="Hotter than its peers' median by this much ...")
    sick_z: float = Field(default=4.0, gt=0, description="... and by this many robust z-scores.")
    sick_throttle_share: float = Field(default=0.2, gt=0, le=1, description="Time held down by thermal or "
                                                                            "hardware slowdown.")
    xid_burst: int = Field(default=3, ge=1, description="XID events in the window that make a burst.")
    spike_z: float = Field(default=4.0, gt=0, description="A day this many robust z-scores above its trailing "
                                                          "days (where no forecast band covers it).")
    spike_trailing_days: int = Field(default=28, ge=7, le=366)


class MigProfile(Section):
    """One MIG profile of a board: the shares of the board's memory and SMs an instance of it gets."""

    model_config = ConfigDict(allow_inf_nan=False)

    name: str = Field(pattern=r"^[0-9]+g\.[0-9]+gb(\+me)?$", description="As NVML names it: 1g.10gb.")
    memory_share: float = Field(gt=0, le=1, description="Of the board's memory (1g.10gb on an 80 GB board: 1/8).")
    compute_share: float = Field(gt=0, le=1, description="Of the board's SMs (a 1g slice: 1/7).")


class MigBoard(Section):
    """The MIG profiles of the boards a GLOB pattern matches (the longest matching pattern wins)."""

    model: str = Field(min_length=1, description="Board model name or GLOB pattern ('NVIDIA H100 80GB*').")
    profiles: list[MigProfile] = Field(min_length=1)


def _seven_slices(model: str, *names: str) -> MigBoard:
    """A board cut in seven compute slices and eight memory slices (A100, H100, H200, B200): NVIDIA's MIG user
    guide, "Supported MIG Profiles"; the names carry each board's memory size."""
    shares = ((1 / 8, 1 / 7), (2 / 8, 1 / 7), (2 / 8, 2 / 7), (4 / 8, 3 / 7), (4 / 8, 4 / 7), (1.0, 1.0))
    return MigBoard(model=model, profiles=[MigProfile(name=name, memory_share=memory, compute_share=compute)
                                           for name, (memory, compute) in zip(names, shares, strict=True)])


DEFAULT_MIG_BOARDS = [
    _seven_slices("NVIDIA A100*40GB*", "1g.5gb", "1g.10gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb"),
    _seven_slices("NVIDIA A100*80GB*", "1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"),
    _seven_slices("NVIDIA H100*", "1g.10gb", "1g.20gb", "2g.20gb", "3g.40gb", "4g.40gb", "7g.80gb"),
    _seven_slices("NVIDIA H100 NVL*", "1g.12gb", "1g.24gb", "2g.24gb", "3g.47gb", "4g.47gb", "7g.94gb"),
    _seven_slices("NVIDIA H200*", "1g.18gb", "1g.35gb", "2g.35gb", "3g.71gb", "4g.71gb", "7g.141gb"),
    _seven_slices("NVIDIA B200*", "1g.23gb", "1g.45gb", "2g.45gb", "3g.90gb", "4g.90gb", "7g.180gb"),
]


class RightsizingSettings(Section):
    """When a job gets a right-sizing recommendation (docs/efficiency.md): conservative by default."""

    headroom: float = Field(default=0.2, ge=0, le=10, description="Kept above the job's need (0.2: 20 %).")
    percentile: float = Field(default=0.99, ge=0.5, le=1, description="Of the job's SM activity (its time at "
                                                                      "each level): what its compute needs.")
    min_hours: float = Field(default=12.0, gt=0, le=8760, description="A job observed for less gets none.")
    min_coverage: float = Field(default=0.9, gt=0, le=1, description="Share of its device-time with compute and "
                                                                     "memory readings, at least.")
    mig_boards: list[MigBoard] = Field(default_factory=lambda: list(DEFAULT_MIG_BOARDS),
                                       description="The MIG profile catalogue (default: NVIDIA's seven-slice "
                                                   "boards).")


class ChargebackSettings(Section):
    """Who charges whom in a FOCUS export (``fleetmeter export focus``): the FOCUS columns naming the provider
    (ProviderName, PublisherName, InvoiceIssuerName), the billing account and the service."""

    provider_name: str = Field(default="GPU platform", min_length=1, max_length=256,
                               description="The team that runs the fleet and charges for it.")
    billing_account_id: str = Field(default="fleet", min_length=1, max_length=256)
    billing_account_name: str = Field(default="GPU fleet", min_length=1, max_length=256)
    service_name: str = Field(default="GPU compute", min_length=1, max_length=256)


class HttpSettings(EndpointSettings):
    """``fleetmeter serve``'s endpoint (the other analysis commands read the same file and leave it be)."""

    address: str = Field(default="127.0.0.1", description="Listen here; 0.0.0.0 only behind a TLS proxy.")
    port: int = Field(default=9412, ge=0, le=65535)
    token: SecretStr | None = Field(default=None, description="An admin's bearer token.")
    token_file: Path | None = Field(default=None, description="File holding it (e.g. a mounted secret).")
    tokens_file: Path | None = Field(default=None, description="Tokens with scopes, stored as hashes (`fleetmeter "
                                                               "token add`); re-read when it changes.")
    api_memory_limit: str = Field(default="4GB", description="DuckDB's memory_limit of the API's and the pages' "
                                                            "session: its snapshot's tables and every answer.")
    api_concurrent: int = Field(default=4, gt=0, le=256, description="API and page queries run at once, each on "
                                                                     "one thread; the others queue.")
    answer_cache: int = Field(default=1024, ge=0, le=1_000_000, description="API answers kept per snapshot for "
                                                                           "the next caller who may see them; 0: none.")
    snapshot_s: float = Field(default=60.0, gt=0, le=3600, description="The API and pages read the warehouse as "
                                                                       "of at most this long ago.")
    max_rows: int = Field(default=10_000, gt=0, description="Rows returned at most; the answer says if cut.")
    timeout_s: float = Field(default=30.0, gt=0, description="A query running longer is interrupted.")
    memory_limit: str = Field(default="1GB", description="DuckDB's memory_limit for each query.")
    max_answer_bytes: int = Field(default=64 << 20, gt=0, description="An answer larger than this is refused.")
    max_concurrent: int = Field(default=2, gt=0, description="Queries run at once; the others queue.")
    queue_timeout_s: float = Field(default=10.0, gt=0, description="A queued query waits this long, then 503.")
    temp_directory: Path | None = Field(default=None, description="Where a query may spill; none: it may not.")
    max_temp_bytes: str = Field(default="1GB", description="Spilled bytes at most, with a temp_directory.")

    def bearer(self) -> str | None:
        """The admin token, from its file when one is configured; with no tokens file either, the server does not
        start (it never runs open)."""
        token = (self.token_file.read_text().strip() if self.token_file is not None
                 else self.token.get_secret_value() if self.token is not None else "")
        if not token and self.tokens_file is None:
            raise ConfigError("http.token, http.token_file or http.tokens_file is required: the server never runs "
                              "open")
        return token or None


class AnalysisSettings(LayeredSettings):
    warehouse: str = Field(default="warehouse", min_length=1, description="Warehouse directory or object-store URI.")
    storage_options: dict[str, str] = Field(
        default_factory=dict, description="delta-rs object-store options (AWS_ENDPOINT_URL, ...), as the "
                                          "pipeline's warehouse.storage_options.")
    idle_threshold: float = Field(
        default=0.05, gt=0, le=1,
        description="util_compute below this is idle; a multiple of 0.05 (read off the stored histogram).")
    sm_idle_threshold: float | None = Field(
        default=None, gt=0, lt=1,
        description="Time with sm_active below this, and not idle, is busy but idle; a multiple of 0.05, at least "
                    "idle_threshold. Unset: 0.1, or idle_threshold where that is higher.")
    currency: str = Field(default="USD", min_length=1, description="Label of the prices' currency.")
    prices: list[Price] = Field(default_factory=list)
    economics: list[Economics] = Field(default_factory=list)
    pue: float = Field(default=1.3, ge=1, le=5, description="Facility power per device power (TCO energy).")
    per_kwh: float | None = Field(default=None, ge=0, description="Energy price for the TCO (else the prices').")
    forecast: ForecastSettings = ForecastSettings()
    capacity: CapacitySettings = CapacitySettings()
    procurement: ProcurementSettings = ProcurementSettings()
    anomalies: AnomalySettings = AnomalySettings()
    rightsizing: RightsizingSettings = RightsizingSettings()
    http: HttpSettings = HttpSettings()
    chargeback: ChargebackSettings = ChargebackSettings()

    @property
    def busy_idle_threshold(self) -> float:
        """The SM activity below which busy time is busy but idle."""
        return self.sm_idle_threshold if self.sm_idle_threshold is not None else max(0.1, self.idle_threshold)

    @field_validator("idle_threshold", "sm_idle_threshold")
    @classmethod
    def _on_a_bin_edge(cls, value: float | None) -> float | None:
        if value is None:
            return value
        bins = value * HISTOGRAM_BINS
        if abs(bins - round(bins)) > 1e-9:
            raise ValueError(f"must be a multiple of {1 / HISTOGRAM_BINS} (a bin edge of the stored histogram)")
        return value

    @model_validator(mode="after")
    def _busy_idle_apart_from_idle(self) -> AnalysisSettings:
        if self.sm_idle_threshold is not None and self.sm_idle_threshold < self.idle_threshold:
            raise ValueError(f"sm_idle_threshold {self.sm_idle_threshold} is below idle_threshold "
                             f"{self.idle_threshold}: idle and busy-but-idle time would overlap (docs/efficiency.md)")
        return self

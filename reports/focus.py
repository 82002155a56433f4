"""The chargeback as a FinOps FOCUS cost and usage dataset (FOCUS 1.2 columns, 1.3's split cost allocation).

One charge per (cluster, tenant, job, model, UTC day) and kind, from the ``costs`` view, so the export adds up
to it exactly:
- device time held and in use, and device time held but idle (``idle_threshold``), as separate charges, so that
  chargeback and waste reconcile: a tenant's used and idle charges are its share of the device cost;
- device time nobody held (tenant ``unallocated``): the fleet's unused capacity, charged to nobody's tenant;
- energy, where a price per kWh is set.
Each charge is an allocated charge (FOCUS 1.3) of an origin charge, the pool of one model in one cluster on one
day for one meter (device time or energy): ResourceId names the pool, AllocatedResourceId the job, and
AllocatedMethodDetails the charge's ratio of the pool and the device-hours (or kWh) it rests on.
Rows without a price are left out (the ``costs`` view has no cost for them either); the caller is told how many.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import IO, Literal

import polars as pl

from fleetmeter.sql.catalog import Catalog
from fleetmeter.sql.settings import AnalysisSettings

Format = Literal["csv", "parquet"]
FOCUS_VERSION = "1.2"
ALLOCATION_METHOD = "fleetmeter-device-time"
_ISO_4217 = re.compile(r"[A-Z]{3}")

#: The charges: each (cluster, tenant, job, model, day) of ``costs`` as its kinds of charge, each with the total
#: of its origin charge (the pool and meter it is part of).
_CHARGES_SQL = """
WITH days AS (
    SELECT day, cluster, tenant, job_id, vendor, model, allocated, device_hours,
           coalesce(idle_device_hours, 0) AS idle_device_hours, device_cost, coalesce(wasted_cost, 0) AS wasted_cost,
           energy_kwh, energy_cost, per_device_hour, per_kwh
    FROM costs
    WHERE day >= $start AND day < $end AND device_cost IS NOT NULL
), charges AS (
    SELECT *, 'device' AS meter, 'used' AS state, device_hours - idle_device_hours AS quantity,
           device_cost - wasted_cost AS charge, per_device_hour AS unit_price
    FROM days WHERE allocated
    UNION ALL
    SELECT *, 'device', 'idle', idle_device_hours, wasted_cost, per_device_hour FROM days WHERE allocated
    UNION ALL
    SELECT *, 'device', 'unallocated', device_hours, device_cost, per_device_hour FROM days WHERE NOT allocated
    UNION ALL
    SELECT *, 'energy', CASE WHEN allocated THEN 'used' ELSE 'unallocated' END, energy_kwh, energy_cost, per_kwh
    FROM days WHERE energy_cost IS NOT NULL
)
SELECT day, cluster, tenant, job_id, vendor, model, meter, state, quantity, charge, unit_price,
       sum(charge) OVER (PARTITION BY day, cluster, model, meter) AS origin_charge
FROM charges
WHERE quantity > 1e-12 OR abs(charge) > 1e-12
ORDER BY day, cluster, tenant, job_id, model, meter, state
"""

#: "meter/state" -> what the charge is, in its ChargeDescription.
_DESCRIPTIONS = {
    "device/used": "device-hours held and in use",
    "device/idle": "device-hours held but idle",
    "device/unallocated": "device-hours nobody held",
    "energy/used": "energy of held devices",
    "energy/unallocated": "energy of devices nobody held",
}


class ExportRefused(ValueError):
    """The export cannot be made as asked (a currency FOCUS does not know, an empty or backwards range)."""


@dataclass(frozen=True)
class FocusExport:
    table: pl.DataFrame
    unpriced_device_hours: float  # in the range, of models no price matches: not exported


def focus_export(catalog: Catalog, settings: AnalysisSettings, start: date, end: date) -> FocusExport:
    """The charges of the UTC days ``start`` (included) to ``end`` (excluded) as FOCUS rows."""
    if not _ISO_4217.fullmatch(settings.currency):
        raise ExportRefused(f"currency {settings.currency!r} is not an ISO 4217 code (USD, EUR, ...), which FOCUS "
                            "requires: set `currency`")
    if end <= start:
        raise ExportRefused(f"--to ({end}) must be after --from ({start})")
    connection = catalog.connect()
    parameters = {"start": start, "end": end}
    charges = pl.from_arrow(connection.sql(_CHARGES_SQL, params=parameters).to_arrow_table())
    unpriced = connection.execute("SELECT coalesce(sum(device_hours), 0) FROM costs WHERE day >= $start AND "
                                  "day < $end AND device_cost IS NULL", parameters).fetchone()
    assert isinstance(charges, pl.DataFrame)
    return FocusExport(_focus_columns(charges, settings), float(unpriced[0]) if unpriced else 0.0)


def _focus_columns(charges: pl.DataFrame, settings: AnalysisSettings) -> pl.DataFrame:
    chargeback, currency = settings.chargeback, settings.currency
    day = pl.col("day").dt.convert_time_zone("UTC").dt.truncate("1d")
    job = pl.col("job_id").fill_null("")
    pool = pl.concat_str([pl.col("cluster"), pl.col("model")], separator="/")
    device = pl.col("meter") == "device"
    unit = pl.when(device).then(pl.lit("Hours")).otherwise(pl.lit("kWh"))
    sku = pl.concat_str([pl.col("model"), pl.when(device).then(pl.lit("device-hour")).otherwise(pl.lit("kWh"))],
                        separator="/")
    description = pl.concat_str([pl.col("model"), pl.col("kind_text"), pl.lit("for"), pl.col("holder")],
                                separator=" ")
    holder = (pl.when(pl.col("state") == "unallocated").then(pl.lit("the fleet"))
              .when(pl.col("job_id").is_null()).then(pl.concat_str([pl.lit("tenant"), pl.col("tenant")],
                                                                   separator=" "))
              .otherwise(pl.concat_str([pl.lit("job"), job, pl.lit("of tenant"), pl.col("tenant")], separator=" ")))
    tags = pl.struct(tenant=pl.col("tenant"), job=pl.col("job_id"), cluster=pl.col("cluster"),
                     model=pl.col("model"), allocation=pl.col("state")).struct.json_encode()
    details = pl.struct(
        Elements=pl.concat_list(pl.struct(
            AllocatedRatio=pl.when(pl.col("origin_charge") != 0).then(pl.col("charge") / pl.col("origin_charge"))
            .otherwise(pl.lit(0.0)),
            UsageUnit=unit,
            UsageQuantity=pl.col("quantity"))),
        x_AllocationState=pl.col("state")).struct.json_encode()
    kind_text = pl.concat_str([pl.col("meter"), pl.col("state")], separator="/").replace_strict(_DESCRIPTIONS)
    framed = charges.with_columns(day=day, kind_text=kind_text, holder=holder)
    return framed.select(
        AllocatedMethodDetails=details,
        AllocatedMethodId=pl.lit(ALLOCATION_METHOD),
        AllocatedResourceId=pl.concat_str([pl.col("cluster"), pl.col("tenant"), job], separator="/"),
        AllocatedResourceName=pl.when(pl.col("job_id").is_null()).then(pl.col("tenant")).otherwise(job),
        AllocatedTags=pl.struct(tenant=pl.col("tenant"), job=pl.col("job_id")).struct.json_encode(),
        AvailabilityZone=pl.lit(None, pl.String),
        BilledCost=pl.col("charge").cast(pl.Float64),
        BillingAccountId=pl.lit(chargeback.billing_account_id),
        BillingAccountName=pl.lit(chargeback.billing_account_name),
        BillingAccountType=pl.lit("Internal"),
        BillingCurrency=pl.lit(currency),
        BillingPeriodEnd=pl.col("day").dt.offset_by("1mo").dt.truncate("1mo"),
        BillingPeriodStart=pl.col("day").dt.truncate("1mo"),
        CapacityReservationId=pl.lit(None, pl.String),
        CapacityReservationStatus=pl.lit(None, pl.String),
        ChargeCategory=pl.lit("Usage"),
        ChargeClass=pl.lit(None, pl.String),
        ChargeDescription=description,
        ChargeFrequency=pl.lit("Usage-Based"),
        ChargePeriodEnd=pl.col("day").dt.offset_by("1d"),
        ChargePeriodStart=pl.col("day"),
        CommitmentDiscountCategory=pl.lit(None, pl.String),
        CommitmentDiscountId=pl.lit(None, pl.String),
        CommitmentDiscountName=pl.lit(None, pl.String),
        CommitmentDiscountQuantity=pl.lit(None, pl.Float64),
        CommitmentDiscountStatus=pl.lit(None, pl.String),
        CommitmentDiscountType=pl.lit(None, pl.String),
        CommitmentDiscountUnit=pl.lit(None, pl.String),
        ConsumedQuantity=pl.col("quantity").cast(pl.Float64),
        ConsumedUnit=unit,
        ContractedCost=pl.col("charge").cast(pl.Float64),
        ContractedUnitPrice=pl.col("unit_price").cast(pl.Float64),
        EffectiveCost=pl.col("charge").cast(pl.Float64),
        InvoiceId=pl.lit(None, pl.String),
        InvoiceIssuerName=pl.lit(chargeback.provider_name),
        ListCost=pl.col("charge").cast(pl.Float64),
        ListUnitPrice=pl.col("unit_price").cast(pl.Float64),
        PricingCategory=pl.lit("Standard"),
        PricingCurrency=pl.lit(currency),
        PricingCurrencyContractedUnitPrice=pl.col("unit_price").cast(pl.Float64),
        PricingCurrencyEffectiveCost=pl.col("charge").cast(pl.Float64),
        PricingCurrencyListUnitPrice=pl.col("unit_price").cast(pl.Float64),
        PricingQuantity=pl.col("quantity").cast(pl.Float64),
        PricingUnit=unit,
        ProviderName=pl.lit(chargeback.provider_name),
        PublisherName=pl.lit(chargeback.provider_name),
        RegionId=pl.col("cluster"),
        RegionName=pl.col("cluster"),
        ResourceId=pool,
        ResourceName=pl.concat_str([pl.col("model"), pl.lit("in"), pl.col("cluster")], separator=" "),
        ResourceType=pl.lit("Accelerator pool"),
        ServiceCategory=pl.lit("AI and Machine Learning"),
        ServiceName=pl.lit(chargeback.service_name),
        ServiceSubcategory=pl.lit("Machine Learning"),
        SkuId=sku,
        SkuMeter=pl.when(device).then(pl.lit("Device Hours")).otherwise(pl.lit("Energy")),
        SkuPriceDetails=pl.lit(None, pl.String),
        SkuPriceId=pl.concat_str([sku, pl.col("unit_price").cast(pl.String)], separator="@"),
        SubAccountId=pl.col("tenant"),
        SubAccountName=pl.col("tenant"),
        SubAccountType=pl.lit("Tenant"),
        Tags=tags,
        x_AllocationState=pl.col("state"),
        x_Cluster=pl.col("cluster"),
        x_FocusVersion=pl.lit(FOCUS_VERSION),
        x_JobId=pl.col("job_id"),
        x_Model=pl.col("model"),
        x_Tenant=pl.col("tenant"),
    )


def write_focus(table: pl.DataFrame, path: str | IO[str], output: Format) -> None:
    """CSV with periods as ISO 8601 UTC (``2026-11-30T00:00:00Z``) and costs as decimals (``12.0``, never
    ``12``); Parquet with UTC timestamps and doubles: what FOCUS readers, and its validator, expect."""
    if output == "parquet":
        if not isinstance(path, str):
            raise ExportRefused("Parquet is written to a file, not a stream")
        table.write_parquet(path)
    else:
        table.write_csv(path, datetime_format="%Y-%m-%dT%H:%M:%SZ")

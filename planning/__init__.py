"""What happens next: demand forecasts, supply, the capacity plan and procurement (``fleetmeter forecast``,
``fleetmeter plan``). Reads the warehouse through the analyst views; writes the forecasts and capacity_plan
tables (docs/planning.md)."""

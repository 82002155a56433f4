"""The analyst surface: DuckDB views over the warehouse (``views.sql``), canned queries (``queries/``),
and the ``fleetmeter query`` and ``fleetmeter sql`` commands that open them."""

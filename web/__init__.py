"""The self-service surface served by ``fleetmeter serve``: the versioned REST API (``/v1``), the dashboard's
pages, and the admins' SQL endpoint, each answering only what the caller's token may see."""

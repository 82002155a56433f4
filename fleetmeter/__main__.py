"""``python -m fleetmeter``: the same command as ``fleetmeter``."""

from fleetmeter.cli import app

app()

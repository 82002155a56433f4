"""Plumbing shared by every part, below all of them: layered settings, logs, backoff, Kafka client
arguments and stop signals. It imports nothing of fleetmeter but the schema contract (the default topic)."""

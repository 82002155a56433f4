"""The node side: read accelerators, attribute them, expose /metrics, ship samples to Kafka.

Data flow: backends/ (read devices) -> intervals (counters to per-interval rows) -> attribution/ (owner)
-> transport/ (spool, then Kafka) and exposition/ (Prometheus). daemon.py runs the loop.
"""

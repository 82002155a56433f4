"""History from a Prometheus that scraped an exporter (dcgm-exporter, AMD's device-metrics-exporter), read
back as schema-v1 sample rows: ``fleetmeter import prometheus``."""

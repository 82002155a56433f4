"""The Prometheus face of the collector: device families built at scrape time, and the daemon's health."""

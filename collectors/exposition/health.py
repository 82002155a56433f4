"""The collector daemon's own health: per-backend scrape outcome, Kafka delivery, spool, drops."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

#: Why the collector drops rows (``fleetmeter_samples_dropped_total``); each exists at 0 from the start, so that
#: an alert on ``increase`` sees the first drop.
DROP_REASONS = ("encode_error", "spool_full")


class Health:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.scrape_duration = Gauge(
            "fleetmeter_collector_scrape_duration_seconds", "Time the last read of each backend took.",
            ["backend"], registry=registry,
        )
        self.scrape_success = Gauge(
            "fleetmeter_collector_scrape_success", "1 if the last read of each backend succeeded.",
            ["backend"], registry=registry,
        )
        self.scrapes_missed = Counter(
            "fleetmeter_collector_scrapes_missed", "Scrape ticks skipped because a scrape overran.",
            registry=registry,
        )
        self.interval_gaps = Counter(
            "fleetmeter_collector_interval_gaps",
            "Device intervals not reported because they exceeded the maximum interval.", registry=registry,
        )
        self.samples_produced = Counter(
            "fleetmeter_samples_produced", "Sample rows written to the spool for sending.", registry=registry,
        )
        self.samples_dropped = Counter(
            "fleetmeter_samples_dropped", "Sample rows dropped, by reason.", ["reason"], registry=registry,
        )
        for reason in DROP_REASONS:
            self.samples_dropped.labels(reason)
        self.messages_sent = Counter(
            "fleetmeter_kafka_messages_sent", "Messages acknowledged by Kafka.", registry=registry,
        )
        self.kafka_send_errors = Counter(
            "fleetmeter_kafka_send_errors", "Failed attempts to deliver a message to Kafka.", registry=registry,
        )
        self.kafka_connected = Gauge(
            "fleetmeter_kafka_connected", "1 while the last delivery attempt succeeded.", registry=registry,
        )
        self.spool_messages = Gauge(
            "fleetmeter_spool_messages", "Messages waiting in the disk spool.", registry=registry,
        )
        self.spool_bytes = Gauge("fleetmeter_spool_bytes", "Bytes held by the disk spool.", registry=registry)

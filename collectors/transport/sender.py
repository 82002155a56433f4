"""Drains the spool into Kafka, oldest first, on a thread of its own.

The scrape loop never waits for Kafka: it appends to the spool and moves on. This thread sends a
window of the oldest messages, deletes each one that Kafka acknowledges, and on any failure backs off
(exponentially, up to ``max_backoff_s``), drops its producer and starts again from the oldest message
still in the spool. Delivery is at least once; the pipeline removes duplicates by (device_uuid, ts).
"""

from __future__ import annotations

import contextlib
import threading
import time

import structlog
from kafka import KafkaProducer
from kafka.errors import KafkaError

from fleetmeter.collectors.exposition.health import Health
from fleetmeter.collectors.transport.spool import Entry, Spool, SpooledMessage
from fleetmeter.common.backoff import Backoff
from fleetmeter.common.kafka_client import client_kwargs
from fleetmeter.common.settings import KafkaSettings

log = structlog.get_logger(__name__)

WINDOW = 256


class KafkaSender(threading.Thread):
    def __init__(self, spool: Spool, kafka: KafkaSettings, compression: str | None, health: Health,
                 max_backoff_s: float = 30.0) -> None:
        super().__init__(name="kafka-sender", daemon=True)
        self.spool = spool
        self.kafka = kafka
        self.compression = compression
        self.health = health
        self._stopping = threading.Event()
        self._producer: KafkaProducer | None = None
        self._backoff = Backoff(first_s=0.5, most_s=max_backoff_s)

    def stop(self, timeout_s: float) -> None:
        """Ask the thread to finish: it sends what it can within ``timeout_s``; the rest stays spooled."""
        self._stopping.set()
        self.spool.wake()
        self.join(timeout_s + 1)

    def run(self) -> None:
        while not self._stopping.is_set():
            batch = self.spool.oldest(WINDOW, wait_s=0.5)
            if batch:
                self._deliver(batch)
        final = self.spool.oldest(WINDOW)
        if final:
            self._deliver(final)
        self._close_producer()

    def _deliver(self, batch: list[tuple[Entry, SpooledMessage]]) -> None:
        """Send a window and wait for every message's outcome (each is acknowledged or expires within the
        delivery timeout), so that the producer holds nothing when it is closed after a failure:
        kafka-python's ``close`` raises, and leaves its thread running, while batches are pending.

        The window shares one deadline: a producer that stops sending leaves its futures unresolved, and a
        timeout per future would then hold the sender for that timeout once per message (minutes for a
        window), long after Kafka is back."""
        try:
            producer = self._producer or self._connect()
            pending = [
                (entry, producer.send(self.kafka.topic, key=message.key, value=message.value,
                                      headers=message.headers))
                for entry, message in batch
            ]
        except KafkaError as exc:
            self._failed(exc)
            return
        failure: KafkaError | None = None
        deadline = time.monotonic() + self.kafka.request_timeout_ms / 1000 * 3
        for entry, future in pending:
            try:
                future.get(timeout=max(0.0, deadline - time.monotonic()))  # one resolved by now still counts
            except KafkaError as exc:
                failure = failure or exc
                continue
            self.spool.remove(entry)
            self.health.messages_sent.inc()
        if failure is not None:
            self._failed(failure)
            return
        self._backoff.recovered()
        self.health.kafka_connected.set(1)

    def _connect(self) -> KafkaProducer:
        self._producer = KafkaProducer(
            **client_kwargs(self.kafka),
            compression_type=self.compression,
            acks="all",
            # Delivery is at least once and the pipeline removes duplicates, so idempotence buys nothing here,
            # and kafka-python 3.0's idempotent producer wedges when a batch it already sent expires: it drops
            # its producer id without asking for a new one, then never sends (nor expires) another batch.
            enable_idempotence=False,
            linger_ms=5,
            max_block_ms=self.kafka.request_timeout_ms,
            bootstrap_timeout_ms=self.kafka.request_timeout_ms,
            delivery_timeout_ms=self.kafka.request_timeout_ms * 2,
        )
        log.info("connected to kafka", bootstrap_servers=self.kafka.bootstrap_servers)
        return self._producer

    def _failed(self, exc: KafkaError) -> None:
        self.spool.unsent()
        backoff_s = self._backoff.failed()
        self.health.kafka_send_errors.inc()
        self.health.kafka_connected.set(0)
        log.warning("kafka delivery failed; messages stay spooled", error=repr(exc), retry_in_s=backoff_s,
                    spooled=self.spool.messages)
        self._close_producer()
        self._stopping.wait(backoff_s)

    def _close_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is None:
            return
        try:
            producer.close(timeout=1)
        except KafkaError:
            # kafka-python 3.0's close() raises while batches are pending, before it stops its I/O thread
            # (and raises again when the producer is garbage-collected): abort the batches, then close.
            producer._sender.force_close()
            producer._sender.join(1)
            with contextlib.suppress(KafkaError):
                producer.close(timeout=1)

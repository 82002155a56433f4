"""An import sent through the samples topic, like a collector: each node's rows of a batch as messages under
Kafka's default request size (1 MiB), keyed by node, acknowledged by all replicas. A batch that fails with an
error worth retrying is sent again after a backoff; what arrives twice is removed by the pipeline's dedup."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import structlog
from kafka import KafkaProducer
from kafka.errors import KafkaError

from fleetmeter import __version__
from fleetmeter.common.backoff import Backoff
from fleetmeter.common.kafka_client import client_kwargs
from fleetmeter.common.settings import KafkaSettings
from fleetmeter.pipeline.importing.runner import Batch, Source, payloads
from fleetmeter.schemas import wire

log = structlog.get_logger(__name__)


class KafkaUnavailable(Exception):
    """The topic did not take a batch after every retry."""


@dataclass
class Sent:
    batches: int = 0
    rows: int = 0
    messages: int = 0
    set_aside: Counter[str] = field(default_factory=Counter)


def send_import(source: Source, kafka: KafkaSettings, *, max_message_bytes: int = 900_000, retries: int = 6) -> Sent:
    sent = Sent()
    headers = wire.headers(f"fleetmeter-import/{__version__}")
    producer: KafkaProducer | None = None
    try:
        for batch in source.batches(0):
            backoff = Backoff(first_s=0.5, most_s=30.0)
            while True:
                try:
                    producer = producer or _producer(kafka)
                    sent.messages += _send(producer, kafka, batch, headers, max_message_bytes)
                    break
                except KafkaError as exc:
                    if not exc.retriable or backoff.failures >= retries:
                        raise KafkaUnavailable(f"{kafka.topic}: {exc!r} (tried {backoff.failures + 1} times)") from exc
                    delay_s = backoff.failed()
                    log.warning("import batch not acknowledged; sending it again", error=repr(exc), retry_in_s=delay_s)
                    time.sleep(delay_s)
            sent.batches += 1
            sent.rows += batch.rows.num_rows
            for aside in batch.set_aside:
                sent.set_aside[aside.reason] += aside.count
                log.warning("series set aside", reason=aside.reason, detail=aside.detail, points=aside.count)
    finally:
        if producer is not None:
            producer.close(timeout=kafka.request_timeout_ms / 1000)
    return sent


def _producer(kafka: KafkaSettings) -> KafkaProducer:
    return KafkaProducer(**client_kwargs(kafka), acks="all", compression_type="zstd", linger_ms=20,
                         enable_idempotence=False,  # see collectors/transport/sender.py: kafka-python 3.0 wedges
                         max_block_ms=kafka.request_timeout_ms, delivery_timeout_ms=kafka.request_timeout_ms * 3)


def _send(producer: KafkaProducer, kafka: KafkaSettings, batch: Batch, headers: list[tuple[str, bytes]],
          max_message_bytes: int) -> int:
    """Send the batch's rows, one node's to a message or more; wait for every acknowledgement."""
    rows = pa.Table.from_batches([batch.rows], schema=batch.rows.schema)
    futures = []
    for node in pc.unique(rows.column("node")).to_pylist():
        of_node = rows.filter(pc.equal(rows.column("node"), node)).combine_chunks()
        for part in of_node.to_batches():
            futures += [producer.send(kafka.topic, key=node.encode(), value=payload, headers=headers)
                        for payload in payloads(part, max_message_bytes)]
    producer.flush(timeout=kafka.request_timeout_ms / 1000 * 3)
    for future in futures:
        future.get(timeout=0)
    return len(futures)

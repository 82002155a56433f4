"""An import sent through the samples topic, like a collector: each node's rows of a batch as messages of at
most ``rows_per_message`` rows, keyed by node, acknowledged by all replicas. A batch that fails is sent again
after a backoff; what arrives twice is removed by the pipeline's dedup."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
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
from fleetmeter.pipeline.importing.runner import Batch, Source
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


def send_import(source: Source, kafka: KafkaSettings, *, rows_per_message: int = 2048, retries: int = 6,
                progress: Callable[[Sent], None] | None = None) -> Sent:
    sent = Sent()
    producer = _producer(kafka)
    headers = wire.headers(f"fleetmeter-import/{__version__}")
    try:
        for batch in source.batches(0):
            backoff = Backoff(first_s=0.5, most_s=30.0)
            while True:
                try:
                    sent.messages += _send(producer, kafka, batch, headers, rows_per_message)
                    break
                except KafkaError as exc:
                    if backoff.failures >= retries:
                        raise KafkaUnavailable(f"{kafka.topic}: {exc!r} (tried {backoff.failures + 1} times)") from exc
                    delay_s = backoff.failed()
                    log.warning("import batch not acknowledged; sending it again", error=repr(exc), retry_in_s=delay_s)
                    time.sleep(delay_s)
            sent.batches += 1
            sent.rows += batch.rows.num_rows
            for aside in batch.set_aside:
                sent.set_aside[aside.reason] += aside.count
                log.warning("series set aside", reason=aside.reason, detail=aside.detail, points=aside.count)
            if progress is not None:
                progress(sent)
    finally:
        producer.close(timeout=kafka.request_timeout_ms / 1000)
    return sent


def _producer(kafka: KafkaSettings) -> KafkaProducer:
    return KafkaProducer(**client_kwargs(kafka), acks="all", compression_type="zstd", linger_ms=20,
                         enable_idempotence=False,  # see collectors/transport/sender.py: kafka-python 3.0 wedges
                         max_block_ms=kafka.request_timeout_ms, delivery_timeout_ms=kafka.request_timeout_ms * 3)


def _send(producer: KafkaProducer, kafka: KafkaSettings, batch: Batch, headers: list[tuple[str, bytes]],
          rows_per_message: int) -> int:
    """Send the batch's rows, one node's at most ``rows_per_message`` to a message; wait for every acknowledgement."""
    rows = pa.Table.from_batches([batch.rows])
    futures = []
    for node in pc.unique(rows.column("node")).to_pylist():
        of_node = rows.filter(pc.equal(rows.column("node"), node))
        for offset in range(0, of_node.num_rows, rows_per_message):
            part = of_node.slice(offset, rows_per_message).combine_chunks().to_batches()[0]
            futures.append(producer.send(kafka.topic, key=node.encode(), value=wire.encode(part), headers=headers))
    producer.flush(timeout=kafka.request_timeout_ms / 1000 * 3)
    for future in futures:
        future.get(timeout=0)
    return len(futures)

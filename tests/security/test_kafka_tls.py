"""Kafka over TLS, client certificates included, configured from a file as operators would.

The test broker (Tansu 0.6) cannot serve TLS itself (its ``--cert`` and ``--key`` flags exclude each
other), so TLS is terminated by a relay in front of it, as a TLS sidecar or load balancer would be: the
collector and the worker speak real TLS, with their certificates checked, to the address the broker
advertises.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import trustme
import yaml

from fleetmeter.collectors.settings import CollectorSettings
from fleetmeter.common.kafka_client import client_kwargs
from fleetmeter.common.settings import KafkaSettings, load_settings
from fleetmeter.pipeline.settings import PipelineSettings
from fleetmeter.pipeline.worker import PipelineWorker
from tests.faults.fleet import Collectors, assert_warehouse_holds_exactly
from tests.faults.proxy import broker_behind_relay
from tests.faults.test_broker_faults import wait_until
from tests.pipeline.fleet import hours_ago


def tls_files(tmp_path: Path) -> tuple[trustme.CA, dict[str, str]]:
    """A CA, and a client certificate it issued, as files; the ``kafka`` section that points at them."""
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    client = ca.issue_cert("fleetmeter-client")
    client.cert_chain_pems[0].write_to_path(str(tmp_path / "client.pem"))
    client.private_key_pem.write_to_path(str(tmp_path / "client.key"))
    return ca, {"security_protocol": "SSL", "ssl_cafile": str(tmp_path / "ca.pem"),
                "ssl_certfile": str(tmp_path / "client.pem"), "ssl_keyfile": str(tmp_path / "client.key")}


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    """TLS for 127.0.0.1, asking every client for a certificate from ``ca``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    ca.configure_trust(context)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def test_collector_and_worker_over_tls_with_client_certificates(topic: str, tmp_path: Path) -> None:
    ca, kafka_tls = tls_files(tmp_path)
    warehouse = tmp_path / "warehouse"
    with broker_behind_relay(tls=server_context(ca)) as (broker, relay, servers):
        broker.create_topic(topic, 1, **client_kwargs(KafkaSettings(bootstrap_servers=[servers], **kafka_tls)))
        config = tmp_path / "pipeline.yaml"
        config.write_text(yaml.safe_dump({"kafka": {"bootstrap_servers": [servers], "topic": topic, **kafka_tls},
                                          "warehouse": {"uri": str(warehouse)}, "until_idle": True, "idle_s": 1.0,
                                          "consumer": {"max_poll_interval_ms": 3000, "session_timeout_ms": 3000,
                                                       "heartbeat_interval_ms": 500}}))
        collectors = Collectors(tmp_path, servers, topic, start_ms=hours_ago(1),
                                kafka={"bootstrap_servers": [servers], "topic": topic, "request_timeout_ms": 3000,
                                       **kafka_tls})
        collectors.scrape(10)
        wait_until(lambda: collectors.daemon.spool.messages == 0, 30, "the collector to send over TLS")
        collectors.shutdown()
        PipelineWorker(load_settings(PipelineSettings, config_file=config)).run()
        assert relay.connections > 0

    assert_warehouse_holds_exactly(warehouse, collectors.produced())


def test_a_broker_certificate_from_another_ca_is_refused(topic: str, tmp_path: Path) -> None:
    _, kafka_tls = tls_files(tmp_path)
    with broker_behind_relay(tls=server_context(trustme.CA())) as (_, _, servers):
        collectors = Collectors(tmp_path, servers, topic, start_ms=hours_ago(1),
                                kafka={"bootstrap_servers": [servers], "topic": topic, "request_timeout_ms": 2000,
                                       **kafka_tls})
        collectors.scrape(4)
        wait_until(lambda: collectors.daemon.health.kafka_send_errors._value.get() > 0, 30, "a refused send")
        collectors.shutdown()
    assert collectors.daemon.health.messages_sent._value.get() == 0
    assert collectors.daemon.spool.messages == 3 * 3  # kept for a broker it can trust


def test_settings_from_a_file_reach_the_client(tmp_path: Path) -> None:
    _, kafka_tls = tls_files(tmp_path)
    config = tmp_path / "collector.yaml"
    config.write_text(yaml.safe_dump({"kafka": kafka_tls}))
    settings = load_settings(CollectorSettings, config_file=config)
    assert str(settings.kafka.ssl_certfile) == kafka_tls["ssl_certfile"]

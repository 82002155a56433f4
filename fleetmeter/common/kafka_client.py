"""Translate :class:`KafkaSettings` into kafka-python client arguments (one place for security)."""

from __future__ import annotations

from typing import Any

from fleetmeter.common.settings import KafkaSettings


def client_kwargs(settings: KafkaSettings) -> dict[str, Any]:
    """Connection and security keyword arguments common to producers and consumers."""
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "client_id": settings.client_id,
        "security_protocol": settings.security_protocol,
        "request_timeout_ms": settings.request_timeout_ms,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        kwargs |= {
            "ssl_cafile": _str_or_none(settings.ssl_cafile),
            "ssl_certfile": _str_or_none(settings.ssl_certfile),
            "ssl_keyfile": _str_or_none(settings.ssl_keyfile),
        }
    if settings.security_protocol.startswith("SASL_"):
        kwargs |= {
            "sasl_mechanism": settings.sasl_mechanism or "PLAIN",
            "sasl_plain_username": settings.sasl_username,
            "sasl_plain_password": settings.password(),
        }
    return kwargs


def _str_or_none(value: object) -> str | None:
    return None if value is None else str(value)

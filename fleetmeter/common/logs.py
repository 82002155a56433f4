"""Structured logging: JSON lines for daemons, readable lines in a terminal."""

from __future__ import annotations

import logging
import sys

import structlog

from fleetmeter.common.settings import LoggingSettings


def _current_stderr(*_: object) -> structlog.PrintLogger:
    """A logger on whatever ``sys.stderr`` is when a line is logged, not when logging was configured
    (a stream captured then, by a test or a redirect, may be closed by now)."""
    return structlog.PrintLogger(sys.stderr)


def configure(settings: LoggingSettings) -> None:
    level = logging.getLevelNamesMapping()[settings.level.upper()]
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if settings.format == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=_current_stderr,
        cache_logger_on_first_use=False,
    )
    # kafka-python logs through the standard library; keep its noise at warning and above.
    logging.basicConfig(level=max(level, logging.WARNING), stream=sys.stderr)

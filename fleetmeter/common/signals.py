"""SIGTERM and SIGINT ask a long-running command to finish its work and stop (systemd, Kubernetes, Ctrl-C)."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import structlog

log = structlog.get_logger(__name__)


def stop_on_signals(stopping: threading.Event) -> None:
    """Set ``stopping`` when SIGTERM or SIGINT arrives; the command's loop sees it and shuts down cleanly."""

    def request_stop(signum: int, frame: FrameType | None) -> None:
        log.info("stop requested", signal=signal.Signals(signum).name)
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

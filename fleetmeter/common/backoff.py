"""Exponential backoff for loops that must not give up: a collector's sender, a worker waiting for Kafka or
for its warehouse."""

from __future__ import annotations

import time


class Backoff:
    """When to try again after consecutive failures: ``first_s``, doubling up to ``most_s``."""

    def __init__(self, first_s: float = 1.0, most_s: float = 60.0) -> None:
        self.first_s, self.most_s = first_s, most_s
        self.failures = 0
        self._retry_at = 0.0

    @property
    def failing(self) -> bool:
        return self.failures > 0

    def ready(self) -> bool:
        return time.monotonic() >= self._retry_at

    def failed(self) -> float:
        """Count a failure; the delay before the next try."""
        delay_s = min(self.most_s, self.first_s * 2.0 ** min(self.failures, 30))  # a float power overflows
        self.failures += 1
        self._retry_at = time.monotonic() + delay_s
        return delay_s

    def recovered(self) -> None:
        self.failures, self._retry_at = 0, 0.0

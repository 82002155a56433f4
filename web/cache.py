"""Answers already computed from the current snapshot, kept for the next caller who may see the same rows: a
dashboard polls the same questions, and an answer costs a query while a kept one costs a lookup. Keyed by the
snapshot's version, what the caller may see (scope and tenant, not the token) and the request, so a new snapshot
or another tenant never gets a kept answer; bounded in answers and in bytes, the least recently used dropped."""

from __future__ import annotations

import threading
from collections import OrderedDict


class AnswerCache:
    def __init__(self, answers: int, max_bytes: int = 64 << 20) -> None:
        self._answers, self._max_bytes = answers, max_bytes
        self._kept: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            body = self._kept.get(key)
            if body is not None:
                self._kept.move_to_end(key)
            return body

    def put(self, key: str, body: bytes) -> None:
        if self._answers == 0 or len(body) > self._max_bytes // 4:
            return
        with self._lock:
            if key in self._kept:
                return
            self._kept[key] = body
            self._bytes += len(body)
            while len(self._kept) > self._answers or self._bytes > self._max_bytes:
                _, dropped = self._kept.popitem(last=False)
                self._bytes -= len(dropped)

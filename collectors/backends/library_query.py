"""The one place a backend calls its vendor library and decides what a failed call becomes.

Each vendor's errors are sorted into three outcomes by a small classifier:

- ``UNSUPPORTED`` (not supported, no permission, function absent from this driver or binding): ``None``,
  remembered per device and call, so the call is never made again (logged once, at debug level).
- ``NOTHING_NOW`` (not found, timeout, busy): ``None`` this time, asked again next scrape.
- ``FAILED`` (device lost, unknown error): ``None`` this time, counted by error name.

The rest of a backend never wraps a library call in try/except (the pattern of nvitop's ``nvmlQuery``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Hashable
from enum import Enum
from types import ModuleType
from typing import Any

import structlog

log = structlog.get_logger(__name__)


class Outcome(Enum):
    UNSUPPORTED = "unsupported"
    NOTHING_NOW = "nothing_now"
    FAILED = "failed"


def _type_name(exc: Exception) -> str:
    return type(exc).__name__


class LibraryQuery:
    def __init__(self, library: ModuleType, error: type[Exception], classify: Callable[[Any], Outcome],
                 describe: Callable[[Any], str] = _type_name) -> None:
        self._library = library
        self._error = error
        self._classify = classify
        self._describe = describe
        self._unsupported: set[tuple[str, Hashable]] = set()
        self.errors: Counter[str] = Counter()

    def __call__(self, key: Hashable, function: str, *args: Any) -> Any | None:
        """Call ``library.<function>(*args)``; ``key`` names what is asked of which device, for memory."""
        if self.is_unsupported(key, function):
            return None
        call = getattr(self._library, function, None)
        if call is None:
            self._unsupported.add((function, None))
            log.debug("library binding lacks function", function=function)
            return None
        try:
            return call(*args)
        except self._error as exc:
            outcome = self._classify(exc)
            if outcome is Outcome.UNSUPPORTED:
                self._unsupported.add((function, key))
                log.debug("reading unavailable", function=function, key=str(key), error=str(exc))
            elif outcome is Outcome.FAILED:
                self.errors[self._describe(exc)] += 1
            return None

    def unsupported(self) -> dict[str, int]:
        """Each function the library or device does not support, with how many keys (devices, readings) it
        was asked for."""
        counts: Counter[str] = Counter(function for function, _ in self._unsupported)
        return dict(counts)

    def is_unsupported(self, key: Hashable, function: str) -> bool:
        return (function, key) in self._unsupported or (function, None) in self._unsupported

"""The one place that calls NVML and decides what a failed call becomes.

- Not supported / no permission / function absent from this driver or binding: ``None``, remembered per
  device and call, so the call is never made again (logged once, at debug level).
- Nothing to report right now (not found, timeout): ``None`` this time, asked again next scrape.
- Anything else (GPU lost, unknown error): ``None`` this time, counted by error name.
The rest of the backend never wraps a driver call in try/except.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable
from types import ModuleType
from typing import Any

import structlog

log = structlog.get_logger(__name__)


class NvmlQuery:
    def __init__(self, nvml: ModuleType) -> None:
        self._nvml = nvml
        self._permanent = {
            nvml.NVML_ERROR_NOT_SUPPORTED,
            nvml.NVML_ERROR_NO_PERMISSION,
            nvml.NVML_ERROR_FUNCTION_NOT_FOUND,
        }
        self._nothing_now = {nvml.NVML_ERROR_NOT_FOUND, nvml.NVML_ERROR_TIMEOUT}
        self._unsupported: set[tuple[str, Hashable]] = set()
        self.errors: Counter[str] = Counter()

    def __call__(self, key: Hashable, function: str, *args: Any) -> Any | None:
        """Call ``nvml.<function>(*args)``; ``key`` names what is asked of which device, for memory."""
        if (function, key) in self._unsupported or (function, None) in self._unsupported:
            return None
        call = getattr(self._nvml, function, None)
        if call is None:
            self._unsupported.add((function, None))
            log.debug("nvml binding lacks function", function=function)
            return None
        try:
            return call(*args)
        except self._nvml.NVMLError as exc:
            if exc.value in self._permanent:
                self._unsupported.add((function, key))
                log.debug("nvml reading unavailable", function=function, key=str(key), error=str(exc))
            elif exc.value not in self._nothing_now:
                self.errors[type(exc).__name__] += 1
            return None

    def is_unsupported(self, key: Hashable, function: str) -> bool:
        return (function, key) in self._unsupported or (function, None) in self._unsupported

"""Per-node scrape sequence numbers that survive daemon restarts (kept beside the spool)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)


class NodeSequences:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._last: dict[str, int] = {str(k): int(v) for k, v in json.loads(path.read_text()).items()}
        except (FileNotFoundError, ValueError):
            self._last = {}

    def next(self, node: str) -> int:
        self._last[node] = self._last.get(node, 0) + 1
        return self._last[node]

    def save(self) -> None:
        """Keep the numbers for the next run; a full disk only loses that (they go on in memory)."""
        temporary = self.path.with_suffix(".tmp")
        try:
            temporary.write_text(json.dumps(self._last))
            os.replace(temporary, self.path)
        except OSError as exc:
            log.warning("sequence numbers not saved", path=str(self.path), error=str(exc))
            temporary.unlink(missing_ok=True)

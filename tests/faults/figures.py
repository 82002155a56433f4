"""Figures the fault scenarios report, printed at the end of the test run (docs/reliability.md quotes them)."""

from __future__ import annotations

import os
from collections import Counter, defaultdict

FIGURES: dict[str, Counter[str]] = defaultdict(Counter)


def record(**amounts: int) -> None:
    """Add ``amounts`` (samples compared, kills, messages fuzzed, ...) to the running test's figures."""
    test = os.environ.get("PYTEST_CURRENT_TEST", "unknown").split(" ")[0].rpartition("::")[2]
    FIGURES[test].update(amounts)

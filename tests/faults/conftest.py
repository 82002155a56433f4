"""Print what the fault scenarios did: samples compared, kills survived, messages fuzzed, samples lost."""

from __future__ import annotations

from collections import Counter

import pytest

from tests.faults.figures import FIGURES


def _line(amounts: Counter[str]) -> str:
    return ", ".join(f"{name} {value}" for name, value in sorted(amounts.items()))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FIGURES:
        return
    terminalreporter.section("fault scenarios")
    total: Counter[str] = Counter()
    for test, amounts in sorted(FIGURES.items()):
        terminalreporter.write_line(f"{test}: {_line(amounts)}")
        total.update(amounts)
    terminalreporter.write_line(f"total: {_line(total)}")

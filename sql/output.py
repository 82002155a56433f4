"""A query's result written the way its reader wants it: a table for a person, CSV, JSON or Parquet for a
program."""

from __future__ import annotations

import contextlib
import json
import re
import sys
from collections.abc import Iterator
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, BinaryIO

import polars as pl
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text


class Format(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"
    parquet = "parquet"


def is_ratio(column: str) -> bool:
    """Columns that hold a share in 0..1 (shown as a percentage to people, kept as a ratio for programs)."""
    return column in ("utilization", "expected_utilization", "sm_active", "tensor_active", "mem_bw_active") \
        or column.endswith(("_fraction", "_share", "_coverage")) or column.startswith("compute_")


def cell(value: Any, column: str = "") -> str:
    """A value as a person reads it in a table: thousands separated, a few significant decimals."""
    if value is None:
        return ""
    if isinstance(value, float) and is_ratio(column):
        return f"{value:.1%}"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) >= 1 or value == 0 else f"{value:.3g}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


#: C0 and C1 control characters and DEL: in a terminal they are escape sequences (colours, links, a cleared
#: screen), so text from the warehouse shows them as ``\x1b``.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def visible(text: str) -> str:
    """Text from outside (names, query results, paths) with its control characters made visible."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def as_markup(text: str) -> str:
    """Text from outside, to put inside a rich markup string: shown as it is, never read as markup."""
    return escape(visible(text))


def console() -> Console:
    """stdout as rich sees it; wide when piped, so that columns are not squeezed to 80 characters."""
    return Console(width=None if sys.stdout.isatty() else 240, soft_wrap=False)


def rich_table(result: pa.Table, limit: int | None = None, title: str | None = None) -> Table:
    """A table for a person; every header and cell is text, never rich markup or a terminal escape sequence."""
    table = Table(title=title, title_justify="left", header_style="bold")
    for field in result.schema:
        numeric = pa.types.is_integer(field.type) or pa.types.is_floating(field.type) or pa.types.is_decimal(field.type)
        table.add_column(Text(visible(field.name)), justify="right" if numeric else "left")
    for row in result.slice(0, limit).to_pylist():
        table.add_row(*(Text(visible(cell(value, column))) for column, value in row.items()))
    return table


def _flat(result: pa.Table) -> pa.Table:
    """Nested columns (lists, maps, structs) as JSON text: CSV has no nesting."""
    columns = []
    for column, field in zip(result.columns, result.schema, strict=True):
        if pa.types.is_nested(field.type):
            column = pa.array([None if v is None else json.dumps(v, default=str) for v in column.to_pylist()],
                              pa.string())
        columns.append(column)
    return pa.Table.from_arrays(columns, names=result.column_names)


def write(result: pa.Table, fmt: Format, output: Path | None, limit: int) -> None:
    """Write ``result`` to ``output`` (or stdout; Parquet needs a file)."""
    if fmt is Format.table:
        console().print(rich_table(result, limit))
        if result.num_rows > limit:
            console().print(f"({result.num_rows - limit:,} more rows: raise --limit, or use --format csv)")
        return
    if fmt is Format.parquet:
        if output is None:
            raise ValueError("--format parquet needs --output FILE")
        pq.write_table(result, output, compression="zstd")
        return
    with _sink(output) as sink:
        if fmt is Format.csv:
            pacsv.write_csv(_flat(result), sink)
        else:
            sink.write(pl.DataFrame(result).write_json().encode() + b"\n")


@contextlib.contextmanager
def _sink(output: Path | None) -> Iterator[BinaryIO]:
    """A binary stream for ``output``, or stdout's (flushed, not closed)."""
    if output is None:
        yield sys.stdout.buffer
        sys.stdout.buffer.flush()
        return
    with output.open("wb") as stream:
        yield stream

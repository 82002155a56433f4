"""CSV and Parquet files of schema-v1 rows, read as the batches an import stores.

Columns are matched by name, or as the configuration's ``file`` section maps them (a file column per schema
column, a value for every row, a factor, the unit of epoch-number times), so that exports of other systems
and public traces load without rewriting them first. A nullable column the file lacks is null, a required
one it lacks is an error naming it; values are cast to the schema's types (CSV holds flat columns only:
lists, maps and structs come in Parquet). A file's identity for resuming is the hash of its content, the
batch size and the mapping.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from pydantic import Field, field_validator

from fleetmeter.common.settings import Section
from fleetmeter.pipeline.importing.runner import Batch
from fleetmeter.schemas.sample_v1 import SAMPLE_SCHEMA
from fleetmeter.schemas.sample_v1_columns import COLUMNS

_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


class FileColumns(Section):
    """How a file's columns become schema-v1 columns (keys are schema columns)."""

    columns: dict[str, str] = Field(default={}, description="The file's column for a schema column.")
    values: dict[str, str | int | float] = Field(default={}, description="One value for every row.")
    scale: dict[str, float] = Field(default={}, description="A factor to the schema's unit (percent: 0.01).")
    ts_unit: Literal["s", "ms", "us", "ns"] = Field(default="ms", description="Of ts given as an epoch number.")

    @field_validator("columns", "values", "scale")
    @classmethod
    def _schema_columns(cls, mapping: dict[str, object]) -> dict[str, object]:
        unknown = sorted(set(mapping) - set(COLUMNS))
        if unknown:
            raise ValueError(f"not schema-v1 columns: {unknown}")
        return mapping


class UnreadableFile(Exception):
    """The file is not a CSV or Parquet file of schema-v1 rows; the message says what is wrong."""


class FileSource:
    """A file's rows in schema v1, ``batch_rows`` at most per batch, cut the same way on every run."""

    def __init__(self, path: Path, batch_rows: int, mapping: FileColumns | None = None) -> None:
        self.path = path
        self.batch_rows = batch_rows
        self.mapping = mapping or FileColumns()

    @property
    def identity(self) -> str:
        digest = hashlib.sha256()
        with self.path.open("rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(json.dumps(self.mapping.model_dump(), sort_keys=True).encode())
        return f"file-{digest.hexdigest()[:24]}-{self.batch_rows}"

    def batches(self, first: int) -> Iterator[Batch]:
        file_format = "parquet" if self.path.suffix.lower() in (".parquet", ".pq") else "csv"
        try:
            dataset = ds.dataset(self.path, format=file_format)
            for number, batch in enumerate(dataset.to_batches(batch_size=self.batch_rows)):
                if number >= first:
                    yield Batch(_conform(batch, self.mapping))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OSError) as exc:
            raise UnreadableFile(f"{self.path}: {str(exc).splitlines()[0]}") from exc


def _conform(batch: pa.RecordBatch, mapping: FileColumns) -> pa.RecordBatch:
    columns = []
    for target in SAMPLE_SCHEMA:
        source = mapping.columns.get(target.name, target.name)
        if target.name in mapping.values:
            column: pa.Array = pa.array([mapping.values[target.name]] * batch.num_rows)
        elif source in batch.schema.names:
            column = batch.column(source)
        elif not target.nullable:
            raise UnreadableFile(f"the required column {target.name!r} is missing"
                                 + (f" (mapped to {source!r})" if source != target.name else ""))
        else:
            columns.append(pa.nulls(batch.num_rows, target.type))
            continue
        try:
            columns.append(_cast(column, target, mapping))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise UnreadableFile(f"column {target.name!r}: cannot read {column.type} as {target.type}") from exc
    return pa.RecordBatch.from_arrays(columns, schema=SAMPLE_SCHEMA)


def _cast(column: pa.Array, target: pa.Field, mapping: FileColumns) -> pa.Array:
    if target.name in mapping.scale:
        column = pc.multiply(column.cast(pa.float64()), mapping.scale[target.name])
        if pa.types.is_integer(target.type):
            column = pc.round(column)
    if pa.types.is_timestamp(target.type) and (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
        to_ms = 1000 / _PER_SECOND[mapping.ts_unit]
        column = pc.round(pc.multiply(column.cast(pa.float64()), to_ms)).cast(pa.int64()).cast(target.type)
    if pa.types.is_timestamp(target.type) and pa.types.is_timestamp(column.type) and column.type.tz is None:
        column = column.cast(pa.timestamp(column.type.unit, tz="UTC"))  # a time without a zone is UTC
    return column.cast(target.type)

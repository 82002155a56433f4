"""CSV and Parquet files of schema-v1 rows, read as the batches an import stores.

Columns are matched by name; a nullable column the file lacks is null, a required one it lacks is an error
naming it; values are cast to the schema's types (CSV holds flat columns only: lists, maps and structs come
in Parquet). A file's identity for resuming is the hash of its content and the batch size.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds

from fleetmeter.pipeline.importing.runner import Batch
from fleetmeter.schemas.sample_v1 import SAMPLE_SCHEMA


class UnreadableFile(Exception):
    """The file is not a CSV or Parquet file of schema-v1 rows; the message says what is wrong."""


class FileSource:
    """A file's rows in schema v1, ``batch_rows`` at most per batch, cut the same way on every run."""

    def __init__(self, path: Path, batch_rows: int) -> None:
        self.path = path
        self.batch_rows = batch_rows

    @property
    def identity(self) -> str:
        digest = hashlib.sha256()
        with self.path.open("rb") as stream:
            for chunk in iter(lambda: stream.read(1 << 20), b""):
                digest.update(chunk)
        return f"file-{digest.hexdigest()[:24]}-{self.batch_rows}"

    def batches(self, first: int) -> Iterator[Batch]:
        file_format = "parquet" if self.path.suffix.lower() in (".parquet", ".pq") else "csv"
        try:
            dataset = ds.dataset(self.path, format=file_format)
            for number, batch in enumerate(dataset.to_batches(batch_size=self.batch_rows)):
                if number >= first:
                    yield Batch(_conform(batch))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, OSError) as exc:
            raise UnreadableFile(f"{self.path}: {str(exc).splitlines()[0]}") from exc


def _conform(batch: pa.RecordBatch) -> pa.RecordBatch:
    columns = []
    for target in SAMPLE_SCHEMA:
        if target.name not in batch.schema.names:
            if not target.nullable:
                raise UnreadableFile(f"the required column {target.name!r} is missing")
            columns.append(pa.nulls(batch.num_rows, target.type))
            continue
        column = batch.column(target.name)
        if pa.types.is_timestamp(target.type) and pa.types.is_timestamp(column.type) and column.type.tz is None:
            column = column.cast(pa.timestamp(column.type.unit, tz="UTC"))  # a time without a zone is UTC
        try:
            columns.append(column.cast(target.type))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise UnreadableFile(f"column {target.name!r}: cannot read {column.type} as {target.type}") from exc
    return pa.RecordBatch.from_arrays(columns, schema=SAMPLE_SCHEMA)

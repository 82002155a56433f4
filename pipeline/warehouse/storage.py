"""One code path for every filesystem the warehouse can live on: a local directory or an object-store URI.

pyarrow resolves the URI (``/data/wh``, ``file:///data/wh``, ``s3://bucket/wh?endpoint_override=...``);
polars does the transforms and pyarrow reads and writes the Parquet. Every file is written under a
temporary name and moved into place, so no reader ever opens half a file.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

#: zstd level 3: the default's speed with most of the size gain of higher levels on sample rows.
COMPRESSION = "zstd"
COMPRESSION_LEVEL = 3
TEMPORARY_SUFFIX = ".tmp"  # a file being written, hidden (``.name.<random>.tmp``) until it is moved into place
_STRINGS = (pa.types.is_string, pa.types.is_large_string, pa.types.is_string_view)


class Storage:
    """A warehouse root; all paths given to its methods are relative to it, with ``/`` separators."""

    def __init__(self, uri: str, create: bool = True) -> None:
        """``create``: make the root directory if missing (writers); readers leave a wrong path alone."""
        self.uri = uri
        self.fs, root = pafs.FileSystem.from_uri(uri) if "://" in uri else (pafs.LocalFileSystem(), uri)
        self.is_local = isinstance(self.fs, pafs.LocalFileSystem)
        self.root = str(Path(root).resolve()) if self.is_local else root.rstrip("/")
        if create:
            self.fs.create_dir(self.root, recursive=True)

    def full_path(self, path: str) -> str:
        """``path`` as the filesystem names it (an absolute local path, or ``bucket/key`` on object stores)."""
        return f"{self.root}/{path}"

    def write_parquet(self, path: str, frame: pl.DataFrame, metadata: dict[str, str] | None = None) -> int:
        """Write ``frame`` as zstd Parquet at ``path`` atomically; return the bytes written."""
        table = frame.to_arrow(compat_level=pl.CompatLevel.newest())  # string views: no copy of every string
        if metadata:
            table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink, compression=COMPRESSION, compression_level=COMPRESSION_LEVEL,
                       **_encodings(table.schema))
        data = sink.getvalue()
        self.write_bytes(path, data)
        return int(data.size)

    def write_bytes(self, path: str, data: bytes | pa.Buffer) -> None:
        """Write to a hidden temporary name beside ``path``, then move it into place."""
        full = self.full_path(path)
        directory, _, name = full.rpartition("/")
        self.fs.create_dir(directory, recursive=True)
        temporary = f"{directory}/.{name}.{uuid.uuid4().hex[:8]}{TEMPORARY_SUFFIX}"
        try:
            with self.fs.open_output_stream(temporary) as stream:
                stream.write(data)
            self.fs.move(temporary, full)
        except OSError:  # a full disk, say: leave nothing half-written behind
            with contextlib.suppress(OSError):
                self.fs.delete_file(temporary)
            raise

    def write_json(self, path: str, document: dict[str, Any]) -> None:
        self.write_bytes(path, json.dumps(document, indent=1, sort_keys=True).encode())

    def read_json(self, path: str) -> dict[str, Any] | None:
        """The document at ``path``, or None when there is none."""
        try:
            with self.fs.open_input_stream(self.full_path(path)) as stream:
                document: dict[str, Any] = json.loads(stream.read())
                return document
        except FileNotFoundError:
            return None

    def read_parquet(self, paths: list[str], columns: list[str] | None = None) -> pl.DataFrame:
        """The rows of ``paths`` together (an empty list gives an empty frame)."""
        if not paths:
            return pl.DataFrame()
        frames = [pl.from_arrow(pq.read_table(self.full_path(path), columns=columns, filesystem=self.fs))
                  for path in paths]
        # polars, not Arrow, puts them together: older files hold large strings where newer hold string views
        return pl.concat([frame for frame in frames if isinstance(frame, pl.DataFrame)], how="diagonal_relaxed")

    def list_files(self, directory: str, temporaries: bool = False) -> list[str]:
        """Every file under ``directory`` (recursively), relative to the root; hidden files left out, but
        with ``temporaries`` the half-written ones that a killed writer left."""
        selector = pafs.FileSelector(self.full_path(directory), recursive=True, allow_not_found=True)
        prefix = len(self.root) + 1
        return sorted(
            info.path[prefix:]
            for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.File
            and (not info.base_name.startswith(".") or (temporaries and info.base_name.endswith(TEMPORARY_SUFFIX)))
        )

    def size(self, path: str) -> int:
        """Bytes of the file at ``path``."""
        return int(self.fs.get_file_info(self.full_path(path)).size)

    def delete(self, path: str) -> None:
        """Remove ``path``; a file that is already gone is not an error (deletes are retried after crashes)."""
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_file(self.full_path(path))


def _encodings(schema: pa.Schema) -> dict[str, Any]:
    """Dictionaries for string columns only, byte-stream-split floats.

    Dictionary encoding of every column (the default) spends its time on float readings that never repeat
    and then falls back; with dictionaries for strings only and floats split by byte, a sample file
    is written about 1.3 times faster and a third smaller (bench/, docs/benchmarks.md).
    """
    strings = [field.name for field in schema if any(is_string(field.type) for is_string in _STRINGS)]
    floats = {field.name: "BYTE_STREAM_SPLIT" for field in schema if pa.types.is_floating(field.type)}
    return {"use_dictionary": strings, "column_encoding": floats} if floats else {"use_dictionary": strings}

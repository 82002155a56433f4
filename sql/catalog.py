"""A DuckDB session in which the warehouse's tables and the views of ``views.sql`` answer by name.

The stored tables (schema ``stored``) are read from the committed file list of each table
(:func:`fleetmeter.pipeline.warehouse.manifest.live_files`), never by glob, so a query never counts the files of an
unfinished commit or those a compaction replaced. The list is taken when the session opens: a session
sees the warehouse as it was then. A local warehouse is read by DuckDB's own Parquet reader, through a
plain SQL script that the ``duckdb`` CLI can run as well (``fleetmeter sql``); an object-store warehouse
through pyarrow datasets registered in the connection (DuckDB's httpfs extension is not needed).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as ds

from fleetmeter.pipeline import tables
from fleetmeter.pipeline.warehouse import layout
from fleetmeter.pipeline.warehouse.manifest import committed_states, live_tables
from fleetmeter.pipeline.warehouse.storage import Storage
from fleetmeter.sql.settings import AnalysisSettings

SQL_DIR = Path(__file__).parent
VIEWS = SQL_DIR / "views.sql"
QUERIES = SQL_DIR / "queries"

#: The Hive partition columns in each table's paths (see layout.bucket), with their DuckDB types.
HIVE_COLUMNS: dict[str, dict[str, str]] = {
    layout.SAMPLES: {"date": "DATE", "hour": "INTEGER"},
    layout.UTIL_1M: {"date": "DATE", "hour": "INTEGER"},
    layout.UTIL_1H: {"date": "DATE"},
    layout.UTIL_1D: {"month": "VARCHAR"},
    layout.JOB_DEVICES: {},
    layout.JOBS: {},
    layout.QUARANTINE: {"date": "DATE"},
}
_ARROW_TYPES = {"DATE": pa.date32(), "INTEGER": pa.int32(), "VARCHAR": pa.string()}


class WarehouseEmpty(Exception):
    """The location holds no committed data: a wrong path, or no worker has committed yet."""


def canned_queries() -> dict[str, Path]:
    """The canned queries of ``sql/queries/``, by name (the file name without ``.sql``)."""
    return {path.stem: path for path in sorted(QUERIES.glob("*.sql"))}


def literal(value: object) -> str:
    """A DuckDB literal for a configuration value (None, a number, a string or a datetime)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool | int | float):
        return repr(value)
    if isinstance(value, datetime):
        return f"TIMESTAMPTZ '{value.isoformat()}'"
    return "'" + str(value).replace("'", "''") + "'"


@dataclass(frozen=True)
class Catalog:
    """The warehouse's committed files, listed once, and the settings the views read."""

    settings: AnalysisSettings
    since: datetime
    storage: Storage
    files: dict[str, list[str]]

    @classmethod
    def open(cls, settings: AnalysisSettings, since: datetime) -> Catalog:
        storage = Storage(settings.warehouse, create=False)
        states = committed_states(storage)
        if not states:
            raise WarehouseEmpty(f"{settings.warehouse} holds no committed data (no _state records): "
                                 "is it a pipeline's warehouse, and has a worker committed to it yet?")
        return cls(settings, since, storage, live_tables(storage, layout.TABLES, states))

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A fresh in-memory DuckDB connection with the stored tables, prices, variables and views."""
        connection = duckdb.connect()
        connection.execute("CREATE SCHEMA stored")
        for table in layout.TABLES:
            if self.storage.is_local or not self.files[table]:
                connection.execute(self._stored_table(table))
            else:
                name = f"arrow_{table}"
                connection.register(name, self._dataset(table))
                connection.execute(f"CREATE VIEW stored.{table} AS SELECT * FROM {name}")
        connection.execute(self._settings_sql())
        connection.execute(VIEWS.read_text())
        return connection

    def script(self) -> str:
        """The same session as one SQL script, for the ``duckdb`` CLI (local warehouses only)."""
        if not self.storage.is_local:
            raise ValueError("a DuckDB CLI script reads local paths; query an object-store warehouse with "
                             "`fleetmeter query`")
        stored = ";\n".join(self._stored_table(table) for table in layout.TABLES)
        return f"CREATE SCHEMA stored;\n{stored};\n{self._settings_sql()}\n{VIEWS.read_text()}"

    def _stored_table(self, table: str) -> str:
        hive = HIVE_COLUMNS[table]
        files = self.files[table]
        if not files:  # a typed empty table, so that the views still bind
            columns = duckdb.from_arrow(tables.empty(table).to_arrow())
            typed = [f'"{name}" {kind}' for name, kind in zip(columns.columns, columns.types, strict=True)]
            typed += [f'"{name}" {kind}' for name, kind in hive.items()]
            return f"CREATE TABLE stored.{table} ({', '.join(typed)})"
        paths = ", ".join(literal(self.storage.full_path(path)) for path in files)
        options = "union_by_name = true"
        if hive:
            types = ", ".join(f"{literal(name)}: {kind}" for name, kind in hive.items())
            options += f", hive_partitioning = true, hive_types = {{{types}}}"
        return f"CREATE VIEW stored.{table} AS SELECT * FROM read_parquet([{paths}], {options})"

    def _dataset(self, table: str) -> ds.Dataset:
        hive = HIVE_COLUMNS[table]
        partitioning = ds.partitioning(pa.schema([(name, _ARROW_TYPES[kind]) for name, kind in hive.items()]),
                                       flavor="hive") if hive else None
        return ds.dataset([self.storage.full_path(path) for path in self.files[table]], format="parquet",
                          filesystem=self.storage.fs, partitioning=partitioning,
                          partition_base_dir=self.storage.full_path(table))

    def _settings_sql(self) -> str:
        prices = ", ".join(f"({literal(p.model)}, {literal(p.per_device_hour)}, {literal(p.per_kwh)})"
                           for p in self.settings.prices)
        return "\n".join([
            "CREATE TABLE prices (model_pattern VARCHAR, per_device_hour DOUBLE, per_kwh DOUBLE);",
            f"INSERT INTO prices VALUES {prices};" if prices else "",
            f"SET VARIABLE idle_threshold = {literal(self.settings.idle_threshold)};",
            f"SET VARIABLE since = {literal(self.since)};",
            f"SET VARIABLE currency = {literal(self.settings.currency)};",
        ])

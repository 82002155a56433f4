"""A DuckDB session in which the warehouse's tables and the views of ``views.sql`` answer by name.

Each stored table (schema ``stored``) is one Delta table's snapshot: its current version, or the version
of a given moment (``as_of``), as delta-rs lists its files. The snapshot is taken when the session opens,
so a query never sees an unfinished commit or files a compaction replaced. A local warehouse is read by
DuckDB's own Parquet reader over that file list, through a plain SQL script that the ``duckdb`` CLI can run
as well (``fleetmeter sql``); an object-store warehouse through delta-rs's pyarrow datasets (DuckDB's httpfs
extension is not needed). The tables and their partition columns come from ``schemas/warehouse.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote

import duckdb
import pyarrow as pa
from deltalake import DeltaTable
from deltalake.exceptions import TableNotFoundError

from fleetmeter.schemas.warehouse import DERIVED, PARTITION_COLUMNS, SAMPLES, TABLES, table_uri
from fleetmeter.sql.settings import AnalysisSettings

SQL_DIR = Path(__file__).parent
VIEWS = SQL_DIR / "views.sql"
QUERIES = SQL_DIR / "queries"

ECONOMICS_COLUMNS = ("model", "purchase_price", "depreciation_years", "hosting_per_year", "support_per_year",
                     "on_demand_per_hour", "reserved_per_hour", "committed_per_hour", "throughput")
_DUCKDB_TYPES = {pa.date32(): "DATE", pa.int32(): "INTEGER", pa.string(): "VARCHAR"}
#: The pipeline's tables and those computed from them (forecasts, the capacity plan).
READABLE = TABLES | DERIVED
#: A version of the warehouse: a ``samples`` table version (every table as of that commit), or a moment.
AsOf = int | datetime | None


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
    """The warehouse's tables at one snapshot, and the settings the views read."""

    settings: AnalysisSettings
    since: datetime
    tables: dict[str, DeltaTable | None]  # None: the table does not exist (yet) at that snapshot

    @classmethod
    def open(cls, settings: AnalysisSettings, since: datetime, as_of: AsOf = None) -> Catalog:
        if isinstance(as_of, int):
            as_of = _commit_time(settings, as_of)
        tables = {name: _load(settings, name, as_of) for name in READABLE}
        if all(tables[name] is None for name in TABLES):
            moment = "" if as_of is None else f" as of {as_of.isoformat()}"
            raise WarehouseEmpty(f"{settings.warehouse} holds no fleetmeter Delta tables{moment}: is it a pipeline's "
                                 "warehouse, and has a worker committed to it yet?")
        return cls(settings, since, tables)

    @property
    def local_root(self) -> str | None:
        """The warehouse's directory, when it is one (the SQL endpoint's sandbox allows reading only there)."""
        return None if "://" in self.settings.warehouse else str(Path(self.settings.warehouse).resolve())

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A fresh in-memory DuckDB connection with the stored tables, prices, variables and views."""
        connection = duckdb.connect()
        connection.execute("CREATE SCHEMA stored")
        for name, table in self.tables.items():
            if self.local_root is not None or table is None or not table.file_uris():
                connection.execute(self._stored_table(name))
            else:
                connection.register(f"arrow_{name}", table.to_pyarrow_dataset())
                connection.execute(self._arrow_table(name))
        connection.execute(self._settings_sql())
        connection.execute(VIEWS.read_text())
        return connection

    def script(self) -> str:
        """The same session as one SQL script, for the ``duckdb`` CLI (local warehouses only)."""
        if self.local_root is None:
            raise ValueError("a DuckDB CLI script reads local paths; query an object-store warehouse with "
                             "`fleetmeter query`")
        stored = ";\n".join(self._stored_table(name) for name in self.tables)
        return f"CREATE SCHEMA stored;\n{stored};\n{self._settings_sql()}\n{VIEWS.read_text()}"

    def _stored_table(self, name: str) -> str:
        table = self.tables[name]
        # delta-rs gives local paths percent-encoded (a space as %20); DuckDB opens them as plain paths
        files = [unquote(uri) for uri in table.file_uris()] if table is not None else []
        partitioned = READABLE[name].partition_by
        if not files:  # a typed empty table, so that the views still bind
            return f"CREATE TABLE stored.{name} ({_typed_columns(name)})"
        paths = ", ".join(literal(path) for path in files)
        types = ", ".join(f"{literal(column)}: {_DUCKDB_TYPES[PARTITION_COLUMNS[column]]}" for column in partitioned)
        hive = f"hive_partitioning = true, hive_types = {{{types}}}" if partitioned else "hive_partitioning = false"
        return (f"CREATE VIEW stored.{name} AS {_every_column(name)} UNION ALL BY NAME "
                f"SELECT * FROM read_parquet([{paths}], union_by_name = true, {hive})")

    def _arrow_table(self, name: str) -> str:
        return f"CREATE VIEW stored.{name} AS {_every_column(name)} UNION ALL BY NAME SELECT * FROM arrow_{name}"

    def _settings_sql(self) -> str:
        """The configuration's tables (prices, economics, the MIG catalogue) and its variables."""
        prices = ", ".join(f"({literal(p.model)}, {literal(p.per_device_hour)}, {literal(p.per_kwh)})"
                           for p in self.settings.prices)
        economics = ", ".join("(" + ", ".join(literal(getattr(e, column)) for column in ECONOMICS_COLUMNS) + ")"
                              for e in self.settings.economics)
        profiles = ", ".join(f"({literal(board.model)}, {literal(profile.name)}, {literal(profile.memory_share)}, "
                             f"{literal(profile.compute_share)})"
                             for board in self.settings.rightsizing.mig_boards for profile in board.profiles)
        return "\n".join([
            "CREATE TABLE prices (model_pattern VARCHAR, per_device_hour DOUBLE, per_kwh DOUBLE);",
            f"INSERT INTO prices VALUES {prices};" if prices else "",
            "CREATE TABLE economics (model_pattern VARCHAR, purchase_price DOUBLE, depreciation_years DOUBLE, "
            "hosting_per_year DOUBLE, support_per_year DOUBLE, on_demand_per_hour DOUBLE, reserved_per_hour DOUBLE, "
            "committed_per_hour DOUBLE, throughput DOUBLE);",
            f"INSERT INTO economics VALUES {economics};" if economics else "",
            "CREATE TABLE mig_profiles (model_pattern VARCHAR, profile VARCHAR, memory_share DOUBLE, "
            "compute_share DOUBLE);",
            f"INSERT INTO mig_profiles VALUES {profiles};" if profiles else "",
            self.variables_sql(self.since),
        ])

    def variables_sql(self, since: datetime) -> str:
        """The variables the views read. DuckDB keeps them per connection: a cursor of a connection needs them
        set again (the web API's requests do, each with its own ``since``)."""
        rightsizing = self.settings.rightsizing
        return "\n".join([
            f"SET VARIABLE pue = {literal(self.settings.pue)};",
            f"SET VARIABLE per_kwh = CAST({literal(self.settings.per_kwh)} AS DOUBLE);",
            f"SET VARIABLE idle_threshold = {literal(self.settings.idle_threshold)};",
            f"SET VARIABLE sm_idle_threshold = {literal(self.settings.busy_idle_threshold)}::DOUBLE;",
            *(f"SET VARIABLE rightsizing_{name} = {literal(getattr(rightsizing, name))}::DOUBLE;"
              for name in ("headroom", "percentile", "min_hours", "min_coverage")),
            f"SET VARIABLE since = {literal(since)};",
            f"SET VARIABLE currency = {literal(self.settings.currency)};",
        ])


def _typed_columns(name: str) -> str:
    """The table's catalogued columns with their DuckDB types: ``"column" TYPE, ...``."""
    columns = duckdb.from_arrow(READABLE[name].schema.empty_table())
    return ", ".join(f'"{column}" {kind}' for column, kind in zip(columns.columns, columns.types, strict=True))


def _every_column(name: str) -> str:
    """No rows, but every catalogued column: a table's files written before a measure existed lack its column, and
    a union by name with this gives them one, null (the views then bind, and count those rows as not known)."""
    columns = duckdb.from_arrow(READABLE[name].schema.empty_table())
    nulls = ", ".join(f'CAST(NULL AS {kind}) AS "{column}"'
                      for column, kind in zip(columns.columns, columns.types, strict=True))
    return f"SELECT {nulls} WHERE false"


def _load(settings: AnalysisSettings, name: str, as_of: datetime | None) -> DeltaTable | None:
    try:
        table = DeltaTable(table_uri(settings.warehouse, name), storage_options=settings.storage_options or None)
        if as_of is not None:
            table.load_as_version(as_of)
    except TableNotFoundError:
        return None
    return table  # as of a moment before its first commit: its (empty) first version


def _commit_time(settings: AnalysisSettings, version: int) -> datetime:
    """When version ``version`` of the ``samples`` table was committed: the warehouse as of that commit.

    Read from the current table's history: delta-rs 1.6 numbers the history of a table opened at an older
    version from that version down, wrongly."""
    samples = DeltaTable(table_uri(settings.warehouse, SAMPLES.name), storage_options=settings.storage_options or None)
    commits = [commit for commit in samples.history() if commit["version"] == version]
    if not commits:
        raise ValueError(f"--as-of {version}: the samples table has versions 0 to {samples.version()} "
                         "(older ones may have been cleaned up)")
    return datetime.fromtimestamp(commits[0]["timestamp"] / 1000, tz=UTC)

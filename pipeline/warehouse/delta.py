"""The warehouse's tables as Delta Lake tables (delta-rs): created with the catalogue's schemas, owned by one
consumer group, appended to with each Kafka partition's offsets as the commit's application transaction,
compacted one partition at a time, vacuumed after a retention period.

Fencing a worker the group has replaced takes two checks: the partition writer's (the table must still
record its own last version of the transaction) and Delta's optimistic concurrency (a commit that races
another of the same application id fails with ``CommitFailedError``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from datetime import date

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import structlog
from deltalake import (
    CommitProperties,
    DeltaTable,
    Field,
    Transaction,
    WriterProperties,
    write_deltalake,
)
from deltalake.exceptions import DeltaError

from fleetmeter.schemas.warehouse import OWNER_PROPERTY, TABLES, Table, table_uri

log = structlog.get_logger(__name__)

#: One partition of a table: its partition columns' values, as Delta writes them in paths and predicates.
PartitionValues = tuple[tuple[str, str], ...]


class WarehouseRefused(Exception):
    """The warehouse cannot be kept by this worker as it is; the message says why and what to do."""


class OwnedByAnotherGroup(WarehouseRefused):
    """The warehouse records the offsets of another consumer group: two groups would both store everything."""


#: zstd level 3, delta-rs's default encodings (dictionaries, plain where a dictionary does not pay): none that
#: common readers reject (Spark 4's vectorized reader refuses BYTE_STREAM_SPLIT). Dictionaries for strings only,
#: as the old layout wrote, made delta-rs's sample files 1.15x slower to write and 1.6x larger.
WRITER_PROPERTIES = WriterProperties(compression="ZSTD", compression_level=3)


def _columns(delta: DeltaTable) -> set[str]:
    return set(pa.schema(delta.schema().to_arrow()).names)


def partition_columns(table: Table) -> list[pl.Expr]:
    """The table's partition columns, derived from its time column (schemas/warehouse.py)."""
    moment = pl.col(table.time_column)
    derived = {"date": moment.dt.date(), "hour": moment.dt.hour().cast(pl.Int32),
               "month": moment.dt.strftime("%Y-%m")}
    return [derived[name].alias(name) for name in table.partition_by]


def partitions_of(table: Table, rows: pa.Table) -> list[PartitionValues]:
    """The partitions that ``rows`` (with their partition columns) fall into."""
    columns = list(table.partition_by)
    values = rows.select(columns).group_by(columns).aggregate([]).to_pylist()
    return [tuple((name, _text(value[name])) for name in columns) for value in values]


def _filters(partition: PartitionValues) -> list[tuple[str, str, str]]:
    return [(name, "=", value) for name, value in partition]


def _quoted(value: str) -> str:
    """A SQL string literal for a predicate (partition values are dates, hours and months, but still)."""
    return "'" + value.replace("'", "''") + "'"


def _text(value: object) -> str:
    return value.isoformat() if isinstance(value, date) else str(value)


class DeltaWarehouse:
    """Every table of the warehouse at ``uri``, opened once (or created) for one consumer group's worker."""

    def __init__(self, uri: str, storage_options: Mapping[str, str], group: str) -> None:
        self.uri = uri
        self.storage_options = dict(storage_options)
        self.group = group
        self.tables = {name: self._open(table) for name, table in TABLES.items()}
        #: appends to each Delta partition since it was last compacted (by this process)
        self.appends: Counter[tuple[str, PartitionValues]] = Counter()

    def _open(self, table: Table) -> DeltaTable:
        uri = table_uri(self.uri, table.name)
        delta = DeltaTable.create(uri, table.schema, mode="ignore", partition_by=list(table.partition_by),
                                  configuration={OWNER_PROPERTY: self.group}, storage_options=self.storage_options,
                                  raise_if_key_not_exists=False)
        stored, expected = _columns(delta), set(table.schema.names)
        added = [field for field in table.schema if field.name not in stored and field.name in table.measure_names]
        if added and stored | {field.name for field in added} == expected:
            # measures a newer version catalogues: their columns are added; rows stored before hold null in them
            try:
                delta.alter.add_columns([Field.from_arrow(field) for field in added])
            except DeltaError:  # another worker added them first
                delta.update_incremental()
            stored = _columns(delta)
            log.info("measures added", table=table.name, columns=[field.name for field in added])
        if stored != expected:
            raise WarehouseRefused(
                f"the table {uri} has the columns of another fleetmeter version (missing: {sorted(expected - stored)}"
                f", unknown: {sorted(stored - expected)}): point the workers at a new warehouse location "
                "(docs/operations.md)")
        owner = delta.metadata().configuration.get(OWNER_PROPERTY)
        if owner != self.group:
            raise OwnedByAnotherGroup(
                f"the warehouse {self.uri} records the offsets of consumer group {owner!r}, and this worker is in "
                f"group {self.group!r}: run the workers in group {owner!r}, or hand the warehouse over with "
                f"`fleetmeter pipeline hand-over --to-group {self.group}` (docs/warehouse.md)")
        return delta

    def refresh(self) -> None:
        """Read the tables' latest versions (what other workers committed since)."""
        for delta in self.tables.values():
            delta.update_incremental()

    def version_of(self, table: str, app_id: str) -> int | None:
        """The version of ``app_id``'s last transaction in ``table``: the next Kafka offset it has stored."""
        return self.tables[table].transaction_version(app_id)

    def append(self, table: str, frame: pl.DataFrame, app_id: str, version: int) -> None:
        """One commit adding ``frame``'s rows (none: only the transaction) to ``table``, recording ``version``."""
        rows = self._arrow(TABLES[table], frame)
        write_deltalake(self.tables[table], rows, mode="append", partition_by=list(TABLES[table].partition_by),
                        writer_properties=WRITER_PROPERTIES,
                        commit_properties=CommitProperties(app_transactions=[Transaction(app_id, version)]))
        if rows.num_rows:
            self.appends.update((table, partition) for partition in partitions_of(TABLES[table], rows))

    def read(self, table: str, partition: PartitionValues, columns: list[str] | None = None,
             where: pc.Expression | None = None) -> pl.DataFrame:
        """The rows of one partition of ``table`` at the latest version this worker has read (those ``where``
        holds: files and row groups whose statistics rule it out are not read)."""
        dataset = self.tables[table].to_pyarrow_dataset(file_pruning_predicate=_filters(partition))
        frame = pl.from_arrow(dataset.to_table(columns=columns, filter=where))
        assert isinstance(frame, pl.DataFrame)
        return frame

    def files_in(self, table: str, partition: PartitionValues) -> int:
        return len(self.tables[table].file_uris(file_pruning_predicate=_filters(partition)))

    def replace(self, table: str, partition: PartitionValues, frame: pl.DataFrame) -> None:
        """Replace one partition's rows with ``frame`` in one commit; fails with ``CommitFailedError`` if another
        commit added rows to the partition meanwhile."""
        predicate = " AND ".join(f"{name} = {_quoted(value)}" for name, value in partition)
        write_deltalake(self.tables[table], self._arrow(TABLES[table], frame), mode="overwrite",
                        predicate=predicate, partition_by=list(TABLES[table].partition_by),
                        writer_properties=WRITER_PROPERTIES)

    def vacuum(self, retention_hours: float) -> int:
        """Delete the files no version younger than ``retention_hours`` reads; how many."""
        deleted = 0
        for delta in self.tables.values():
            deleted += len(delta.vacuum(retention_hours=math.ceil(retention_hours), dry_run=False,
                                        enforce_retention_duration=False))
        return deleted

    @staticmethod
    def _arrow(table: Table, frame: pl.DataFrame) -> pa.Table:
        """``frame`` with the table's partition columns, cast to its schema (a missing column fails here)."""
        with_partitions = frame.with_columns(partition_columns(table))
        return with_partitions.to_arrow().select(table.schema.names).cast(table.schema)


def hand_over(uri: str, storage_options: Mapping[str, str], group: str) -> list[str]:
    """Make consumer group ``group`` the owner of every existing table of the warehouse; the tables changed."""
    changed = []
    for name in TABLES:
        delta = DeltaTable(table_uri(uri, name), storage_options=dict(storage_options))
        delta.alter.set_table_properties({OWNER_PROPERTY: group}, raise_if_not_exists=False)
        changed.append(name)
    return changed


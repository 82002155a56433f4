"""The warehouse as the API and the pages read it: one DuckDB session over a snapshot of the tables, shared by
every request and taken anew once it is ``http.snapshot_s`` old, so that a request costs its query and nothing
else (opening the Delta tables and defining the views takes longer than most answers)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from time import monotonic

import duckdb

from fleetmeter.sql.catalog import Catalog
from fleetmeter.sql.serve import sandboxed
from fleetmeter.sql.settings import AnalysisSettings
from fleetmeter.sql.since import EVERYTHING


@dataclass(frozen=True)
class Snapshot:
    catalog: Catalog
    connection: duckdb.DuckDBPyConnection
    version: str  # the tables' versions: what an ETag of an answer from it depends on
    taken_at: float


class Snapshots:
    def __init__(self, settings: AnalysisSettings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._current: Snapshot | None = None

    def current(self) -> Snapshot:
        snapshot = self._current
        if snapshot is None or monotonic() - snapshot.taken_at > self._settings.http.snapshot_s:
            with self._lock:
                snapshot = self._current
                if snapshot is None or monotonic() - snapshot.taken_at > self._settings.http.snapshot_s:
                    snapshot = self._take()
                    self._current = snapshot
        return snapshot

    @contextmanager
    def cursor(self, since: datetime = EVERYTHING) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection of its own for one request (DuckDB connections are not shared across threads), with the
        views' variables (``since`` among them) set on it, interrupted after ``http.timeout_s``."""
        snapshot = self.current()
        cursor = snapshot.connection.cursor()
        deadline = threading.Timer(self._settings.http.timeout_s, cursor.interrupt)  # InterruptException: a 503
        deadline.start()
        try:
            cursor.execute(snapshot.catalog.variables_sql(since))
            yield cursor
        finally:
            deadline.cancel()
            cursor.close()

    def _take(self) -> Snapshot:
        catalog = Catalog.open(self._settings, EVERYTHING)
        version = ",".join(f"{name}={table.version() if table is not None else '-'}"
                           for name, table in sorted(catalog.tables.items()))
        return Snapshot(catalog, sandboxed(catalog, self._settings.http), version, monotonic())

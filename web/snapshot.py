"""The warehouse as the API and the pages read it: one DuckDB session over a snapshot of the tables, shared by
every request, so that a request costs its query and nothing else.

A snapshot keeps in memory what the answers read most and what is dearest to merge and plan at every request:
the daily and hourly rollups merged and priced (the hourly ones without their histograms: no answer reads
them), the daily costs, the job-device rows merged, and each model's price. The minute rollups stay live. Once
a snapshot is ``http.snapshot_s`` old, the next request starts taking a new one in the background and is
answered from the current one meanwhile: no request waits for a snapshot but the first.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from time import monotonic

import duckdb
import structlog

from fleetmeter.sql.catalog import Catalog, literal
from fleetmeter.sql.serve import Busy, sandboxed
from fleetmeter.sql.settings import AnalysisSettings
from fleetmeter.sql.since import EVERYTHING
from fleetmeter.web import queries
from fleetmeter.web.queries import default_since

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Snapshot:
    catalog: Catalog
    connection: duckdb.DuckDBPyConnection
    version: str  # the tables' versions: what an ETag of an answer from it depends on
    taken_at: float


class Snapshots:
    def __init__(self, settings: AnalysisSettings) -> None:
        self._settings = settings
        self._slots = threading.BoundedSemaphore(settings.http.api_concurrent)
        self._lock = threading.Lock()
        self._current: Snapshot | None = None
        self._refreshing = False

    def current(self) -> Snapshot:
        snapshot = self._current
        if snapshot is None:
            with self._lock:
                if self._current is None:
                    self._current = self._take()
                return self._current
        if monotonic() - snapshot.taken_at > self._settings.http.snapshot_s and not self._refreshing:
            with self._lock:
                if not self._refreshing:
                    self._refreshing = True
                    threading.Thread(target=self._refresh, name="snapshot", daemon=True).start()
        return snapshot

    def _refresh(self) -> None:
        try:
            self._current = self._take()
        except Exception as exc:  # the one before keeps answering; the next request tries again
            log.error("a new snapshot of the warehouse failed; answering from the one before", error=str(exc))
        finally:
            self._refreshing = False

    @contextmanager
    def cursor(self, since: datetime = EVERYTHING) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection of its own for one request (DuckDB connections are not shared across threads), with the
        views' variables (``since`` among them) set on it, interrupted after ``http.timeout_s``."""
        http = self._settings.http
        if not self._slots.acquire(timeout=http.queue_timeout_s):
            raise Busy(f"{http.api_concurrent} answers are being computed; try again shortly")
        try:
            snapshot = self.current()
            cursor = snapshot.connection.cursor()
            deadline = threading.Timer(http.timeout_s, cursor.interrupt)  # InterruptException: a 503
            deadline.start()
            try:
                cursor.execute(snapshot.catalog.variables_sql(since))
                yield cursor
            finally:
                deadline.cancel()
                cursor.close()
        finally:
            self._slots.release()

    def _take(self) -> Snapshot:
        catalog = Catalog.open(self._settings, EVERYTHING)
        version = ",".join(f"{name}={table.version() if table is not None else '-'}"
                           for name, table in sorted(catalog.tables.items()))
        http = self._settings.http
        connection = sandboxed(catalog, http, memory_limit=http.api_memory_limit, threads=1)
        _keep_in_memory(connection, self._settings.idle_threshold)
        return Snapshot(catalog, connection, version, monotonic())


#: The histograms an hourly rollup row carries, which no answer of the API or the pages reads.
_HOURLY_HISTOGRAMS = ("util_hist_seconds", "sm_hist_seconds", "util_hist_sm_known_seconds")


def _keep_in_memory(connection: duckdb.DuckDBPyConnection, idle_threshold: float) -> None:
    """Replace some views of the session by tables of their rows (the other views read them by name). The minute
    rollups stay live, merged from their partials at each request (a window of at most two days)."""
    # rollup_partials' minute branch alone: binding the union would read every stored file's footer per request
    connection.execute("CREATE VIEW minute_partials AS SELECT '1m' AS width, * EXCLUDE (date, hour) "
                       "FROM stored.util_1m")
    _copy_view(connection, "rollups", "rollups_merged")
    _copy_view(connection, "rollups", "minute_rollups", reading=("rollup_partials", "minute_partials"))
    connection.execute("CREATE TABLE rollups_1d AS SELECT * FROM rollups_merged WHERE width = '1d'")
    connection.execute(f"CREATE TABLE rollups_1h AS SELECT * EXCLUDE ({', '.join(_HOURLY_HISTOGRAMS)}) "
                       "FROM rollups_merged WHERE width = '1h'")
    # each branch says its width, so that a query for one width reads one table
    connection.execute("CREATE OR REPLACE VIEW rollups AS SELECT * FROM rollups_1d WHERE width = '1d' "
                       "UNION ALL BY NAME SELECT * FROM rollups_1h WHERE width = '1h' "
                       "UNION ALL BY NAME SELECT * FROM minute_rollups")
    for view in ("job_devices", "model_prices"):
        _copy_view(connection, view, f"{view}_merged")
        connection.execute(f"CREATE TABLE {view}_kept AS SELECT * FROM {view}_merged")
        connection.execute(f"CREATE OR REPLACE VIEW {view} AS SELECT * FROM {view}_kept")
    # the priced rows the answers read most, as tables: planning a query over the views alone takes 10-30 ms
    _copy_view(connection, "priced_rollups", "priced_minutes", reading=("rollups", "minute_rollups"))
    connection.execute("CREATE TABLE priced_kept AS SELECT * FROM priced_rollups WHERE width IN ('1h', '1d')")
    connection.execute("CREATE OR REPLACE VIEW priced_rollups AS SELECT * FROM priced_kept "
                       "UNION ALL BY NAME SELECT * FROM priced_minutes")
    connection.execute("CREATE TABLE costs_kept AS SELECT * FROM costs")
    connection.execute("CREATE OR REPLACE VIEW costs AS SELECT * FROM costs_kept")
    # right-sizing over the default window (queries.DEFAULT_DAYS), the dearest answer (seconds at scale)
    connection.execute(f"SET VARIABLE since = {literal(default_since())}")
    connection.execute(f"CREATE TABLE {queries.RIGHTSIZING_DEFAULT} AS SELECT * FROM rightsizing")


def _copy_view(connection: duckdb.DuckDBPyConnection, view: str, name: str,
               reading: tuple[str, str] | None = None) -> None:
    """A copy of ``view`` under ``name``, defined by the same SQL (it reads what the view read, not the view), with
    ``reading``'s first relation replaced by its second."""
    (definition,) = connection.execute("SELECT sql FROM duckdb_views() WHERE view_name = $view AND NOT internal",
                                       {"view": view}).fetchone() or (None,)
    if definition is None or not definition.startswith(f"CREATE VIEW {view} AS "):
        raise RuntimeError(f"the view {view} is not defined as expected: {definition!r}")
    copied = definition.replace(f"CREATE VIEW {view} AS ", f"CREATE VIEW {name} AS ", 1)
    if reading is not None:
        relation = re.compile(rf"\bFROM \(?{reading[0]}\b")  # DuckDB writes a join back as FROM (a JOIN b)
        if not relation.search(copied):
            raise RuntimeError(f"the view {view} does not read {reading[0]}")
        copied = relation.sub(lambda match: match.group().replace(reading[0], reading[1]), copied)
    connection.execute(copied)

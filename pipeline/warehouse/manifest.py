"""The commit record of each Kafka partition, and the committed view of the warehouse built from them.

Each partition has one small JSON document, ``_state/{topic}/partition={n}.json``, rewritten atomically
by the worker that owns the partition at every commit. It holds the partition's generation (a counter
bumped by every commit), the next Kafka offset to read, and the files that commits replaced but that
are kept for a grace period so that readers holding an older file list can finish.

A file is committed when its name's generation is at most its partition's generation and it is not
among the replaced files. Files from a commit that never happened (a crash between writing data and
writing the record) carry a higher generation: readers skip them and the next owner deletes them.
Because one document write is the commit, a flush that touches many files lands all at once or not at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from fleetmeter.pipeline.warehouse.layout import FileName, state_path
from fleetmeter.pipeline.warehouse.storage import Storage


@dataclass(frozen=True)
class PartitionState:
    topic: str
    partition: int
    generation: int = 0
    next_offset: int | None = None  # None: nothing from this partition is stored yet
    topic_id: str | None = None  # the Kafka topic's id when next_offset was read: offsets mean nothing in another
    replaced: dict[str, int] = field(default_factory=dict)  # path -> when it was replaced (epoch ms)

    def is_live(self, path: str) -> bool:
        name = FileName.parse(path)
        return name is not None and name.generation <= self.generation and path not in self.replaced

    def expired(self, now_ms: int, grace_ms: float) -> list[str]:
        """Replaced files that readers have had ``grace_ms`` to finish with."""
        return [path for path, since in self.replaced.items() if now_ms - since >= grace_ms]

    def committed(self, next_offset: int | None, replaced: list[str], deleted: list[str], now_ms: int,
                  ) -> PartitionState:
        """The state after one more commit that replaces ``replaced`` and forgets the ``deleted`` files."""
        kept = {path: since for path, since in self.replaced.items() if path not in deleted}
        return replace(self, generation=self.generation + 1, next_offset=next_offset,
                       replaced=kept | dict.fromkeys(replaced, now_ms))

    def reading(self, topic_id: str | None, next_offset: int | None) -> PartitionState:
        """The state of a partition read from ``next_offset`` of the topic ``topic_id`` on (recorded at the
        next commit): after the topic was created anew, the old offsets are meaningless."""
        return replace(self, topic_id=topic_id, next_offset=next_offset)

    def to_json(self) -> dict[str, Any]:
        return {"topic": self.topic, "partition": self.partition, "generation": self.generation,
                "next_offset": self.next_offset, "topic_id": self.topic_id, "replaced": self.replaced}


def load_state(storage: Storage, topic: str, partition: int) -> PartitionState:
    document = storage.read_json(state_path(topic, partition))
    return PartitionState(topic, partition) if document is None else _from_json(document)


def _from_json(document: dict[str, Any]) -> PartitionState:
    return PartitionState(str(document["topic"]), int(document["partition"]), int(document["generation"]),
                          document["next_offset"], document.get("topic_id"),  # absent from older records
                          {str(path): int(ms) for path, ms in document["replaced"].items()})


def save_state(storage: Storage, state: PartitionState) -> None:
    storage.write_json(state_path(state.topic, state.partition), state.to_json())


def committed_states(storage: Storage) -> dict[tuple[str, int], PartitionState]:
    """Every partition's commit record, keyed by (topic, partition)."""
    states = {}
    for path in storage.list_files("_state"):
        document = storage.read_json(path)
        if document is not None:
            state = _from_json(document)
            states[(state.topic, state.partition)] = state
    return states


def live_files(storage: Storage, table: str) -> list[str]:
    """The committed files of ``table``: a consistent snapshot to hand to DuckDB, polars or Spark.

    The commit records are read before the directory is listed, so a commit landing meanwhile can only
    add files of a newer generation (left out) or replace files (still there for the grace period).
    Readers that glob the directories instead may see files of an unfinished commit, or files that a
    compaction replaced during their grace period; this list never does.
    """
    return live_tables(storage, (table,))[table]


def live_tables(storage: Storage, tables: tuple[str, ...],
                states: dict[tuple[str, int], PartitionState] | None = None) -> dict[str, list[str]]:
    """:func:`live_files` of several tables, against one reading of the commit records (``states``, when
    the caller has already read them)."""
    states = committed_states(storage) if states is None else states
    live: dict[str, list[str]] = {}
    for table in tables:
        live[table] = []
        for path in storage.list_files(table):
            name = FileName.parse(path)
            state = None if name is None else states.get((name.topic, name.partition))
            if state is not None and state.is_live(path):
                live[table].append(path)
    return live

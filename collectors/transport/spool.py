"""A bounded, crash-safe, first-in-first-out queue of Kafka messages in a directory.

Every message is written here before it is sent and deleted once Kafka acknowledges it, so a daemon
killed at any moment loses nothing that reached the spool. One file per message, named by a rising
number, written to a temporary name and renamed into place (a reader never sees half a file). Each
file carries a CRC; a damaged file is moved to ``corrupt/`` and counted, never sent. When the spool
holds more than ``max_bytes``, the oldest messages are deleted and counted; messages being sent are
not (they may yet be delivered, and a message counted as dropped must never arrive), so the spool can
exceed ``max_bytes`` by one send window. A filesystem that is full (or refuses writes) is treated the same
way: the oldest messages make room, or the new one is dropped, counted, and the collector runs on.
"""

from __future__ import annotations

import fcntl
import json
import os
import struct
import threading
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

_MAGIC = b"FMSPOOL1"
_HEADER = struct.Struct(">8sII")  # magic, crc32 of the rest, length of the JSON metadata
_SUFFIX = ".msg"


@dataclass(frozen=True, slots=True)
class SpooledMessage:
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    rows: int


@dataclass(frozen=True, slots=True)
class Entry:
    number: int
    size: int
    rows: int


class SpoolCorrupt(ValueError):
    pass


class SpoolLocked(RuntimeError):
    """Another collector already uses this spool directory (two would send each message twice)."""


def encode(message: SpooledMessage) -> bytes:
    meta = json.dumps({
        "key": message.key.decode("latin-1"),
        "headers": [[name, value.decode("latin-1")] for name, value in message.headers],
        "rows": message.rows,
    }).encode()
    body = meta + message.value
    return _HEADER.pack(_MAGIC, zlib.crc32(body), len(meta)) + body


def decode(data: bytes) -> SpooledMessage:
    if len(data) < _HEADER.size:
        raise SpoolCorrupt("truncated header")
    magic, crc, meta_length = _HEADER.unpack_from(data)
    body = data[_HEADER.size:]
    if magic != _MAGIC or zlib.crc32(body) != crc or meta_length > len(body):
        raise SpoolCorrupt("bad magic or checksum")
    meta = json.loads(body[:meta_length])
    return SpooledMessage(
        key=meta["key"].encode("latin-1"),
        value=body[meta_length:],
        headers=[(name, value.encode("latin-1")) for name, value in meta["headers"]],
        rows=int(meta["rows"]),
    )


class Spool:
    def __init__(self, directory: Path, max_bytes: int, fsync: bool = False) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.fsync = fsync
        self.dropped_messages = 0
        self.dropped_rows = 0
        self.corrupt_messages = 0
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._entries: deque[Entry] = deque()
        self._sending: set[int] = set()  # numbers of the messages handed to the sender and not yet removed
        self._bytes = 0
        directory.mkdir(parents=True, exist_ok=True)
        self._lock_file = open(directory / ".lock", "w")  # noqa: SIM115 - held for the spool's lifetime
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            self._lock_file.close()
            raise SpoolLocked(f"spool {directory} is in use by another collector") from exc
        self._recover()

    def _recover(self) -> None:
        """Index what a previous run left: finished files in order; half-written ones are discarded."""
        for leftover in self.directory.glob("*.tmp"):
            leftover.unlink()
        for path in sorted(self.directory.glob(f"*{_SUFFIX}")):
            try:
                message = decode(path.read_bytes())
            except SpoolCorrupt:
                self._quarantine(path)
                continue
            self._index(Entry(int(path.stem), path.stat().st_size, message.rows))
        self._next_number = self._entries[-1].number + 1 if self._entries else 0

    @property
    def messages(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._bytes

    def _path(self, number: int) -> Path:
        return self.directory / f"{number:020d}{_SUFFIX}"

    def _index(self, entry: Entry) -> None:
        self._entries.append(entry)
        self._bytes += entry.size

    def append(self, message: SpooledMessage) -> None:
        """Keep ``message`` until it is sent, dropping the oldest unsent ones for room: past ``max_bytes``, or
        when the filesystem is full (then this one too, if nothing older can go). Drops are counted."""
        data = encode(message)
        with self._lock:
            number = self._next_number
            self._next_number += 1
            while not _write(self.directory / f"{number:020d}.tmp", self._path(number), data, self.fsync):
                if not self._drop_oldest(number):
                    log.error("spool filesystem full and nothing older to drop; message dropped",
                              directory=str(self.directory), rows=message.rows)
                    self.dropped_messages += 1
                    self.dropped_rows += message.rows
                    return
            self._index(Entry(number, len(data), message.rows))
            while self._bytes > self.max_bytes and self._drop_oldest(number):
                pass
            self._not_empty.notify_all()

    def _drop_oldest(self, keep: int) -> bool:
        """Drop the oldest message that the sender does not hold (never ``keep``); False if there is none."""
        oldest = next((entry for entry in self._entries
                       if entry.number not in self._sending and entry.number != keep), None)
        if oldest is None:
            return False
        self._forget(oldest)
        self._path(oldest.number).unlink(missing_ok=True)
        self.dropped_messages += 1
        self.dropped_rows += oldest.rows
        return True

    def oldest(self, limit: int, wait_s: float = 0.0) -> list[tuple[Entry, SpooledMessage]]:
        """Up to ``limit`` messages, oldest first, waiting up to ``wait_s`` for one to arrive."""
        with self._lock:
            if not self._entries and wait_s > 0:
                self._not_empty.wait(wait_s)
            entries = list(self._entries)[:limit]
            self._sending.update(entry.number for entry in entries)
        found = []
        for entry in entries:
            try:
                found.append((entry, decode(self._path(entry.number).read_bytes())))
            except FileNotFoundError:
                continue  # dropped for space while we were reading
            except SpoolCorrupt:
                with self._lock:
                    self._forget(entry)
                self._quarantine(self._path(entry.number))
        return found

    def remove(self, entry: Entry) -> None:
        """Forget a message that Kafka acknowledged."""
        with self._lock:
            self._forget(entry)
            self._sending.discard(entry.number)
        self._path(entry.number).unlink(missing_ok=True)

    def unsent(self) -> None:
        """The sender gave up on the messages it held: they may be dropped for space again."""
        with self._lock:
            self._sending.clear()

    def close(self) -> None:
        """Release the directory for another collector (the files stay for it)."""
        self._lock_file.close()

    def wake(self) -> None:
        with self._lock:
            self._not_empty.notify_all()

    def _forget(self, entry: Entry) -> None:
        if entry in self._entries:
            self._entries.remove(entry)
            self._bytes -= entry.size

    def _quarantine(self, path: Path) -> None:
        self.corrupt_messages += 1
        corrupt = self.directory / "corrupt"
        corrupt.mkdir(exist_ok=True)
        path.replace(corrupt / path.name)


def _write(temporary: Path, path: Path, data: bytes, fsync: bool) -> bool:
    """Write one message file under a temporary name, then move it into place; False if the filesystem
    refused it (full, or read-only), with nothing left behind."""
    try:
        with open(temporary, "wb") as file:
            file.write(data)
            if fsync:
                file.flush()
                os.fsync(file.fileno())
        os.replace(temporary, path)
    except OSError as exc:
        log.warning("spool write failed", path=str(path), error=str(exc))
        temporary.unlink(missing_ok=True)
        return False
    return True

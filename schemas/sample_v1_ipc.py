"""Rows of sample schema v1 as an Arrow IPC stream, in plain Python: the collector's encoder.

The stream is what ``pa.ipc.new_stream`` writes for the same rows and any Arrow reader reads (the wire
contract, ``wire_v1.md``): the schema message, one record batch message, the end-of-stream marker. The schema
message is constant; it is kept as ``sample_v1_schema.ipc`` (``SAMPLE_SCHEMA.serialize()``; a test checks it
against the schema and rewrites it with FLEETMETER_UPDATE_GOLDEN=1). The record batch message is a small
FlatBuffer built here, and its body holds each column's buffers (validity bitmap, offsets, values) in the
order of the Arrow columnar format, each padded to 8 bytes.

Why not pyarrow: for a node's few rows per scrape (8 rows: 0.17 ms against pyarrow's 0.28), building Arrow
arrays from Python values costs more than writing the bytes, and loading pyarrow (with numpy and the pandas its
conversions import) costs the daemon about 70 MB. At 512 rows a message (``scrapes_per_message`` 64) it is
slower than pyarrow (4.1 ms against 1.3). A required column without a value is a ValueError, a value of the
wrong type a TypeError, an integer out of its column's range an OverflowError: what the daemon drops as an
encode error. It is stricter than pyarrow where pyarrow converts quietly (a fractional float in an integer
column, which pyarrow truncates; True as a number; bytes as a string; a datetime as ``ts``), and looser in
a few places no backend reaches (Decimal and Fraction as floats, any iterable as a list).
"""

from __future__ import annotations

import contextlib
import operator
import struct
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import resources
from itertools import repeat
from typing import Any

from fleetmeter.schemas.sample_v1_columns import COLUMN_KINDS, Kind

SCHEMA_MESSAGE = resources.files("fleetmeter.schemas").joinpath("sample_v1_schema.ipc").read_bytes()
_CONTINUATION = b"\xff\xff\xff\xff"
_END_OF_STREAM = _CONTINUATION + b"\x00\x00\x00\x00"
_METADATA_V5 = 4
_RECORD_BATCH = 3
_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
_FORMATS = {"float64": "d", "int32": "i", "int64": "q"}

#: One array of a column (a column, or a nested child): its length and null count (a FieldNode), and its buffers.
Node = tuple[int, int]


class _Body:
    """The record batch body being written: buffers padded to 8 bytes, and the (offset, length) of each."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.buffers: list[tuple[int, int]] = []
        self.nodes: list[Node] = []

    def buffer(self, content: bytes) -> None:
        self.buffers.append((len(self.data), len(content)))
        self.data += content
        self.data += bytes(-len(self.data) % 8)

    def validity(self, values: Sequence[object]) -> int:
        """The validity bitmap (omitted when nothing is null, as Arrow allows); returns the null count."""
        nulls = sum(map(operator.is_, values, repeat(None)))  # by identity (a value may claim to equal None)
        if not nulls:
            self.buffer(b"")
            return 0
        bits = bytearray((len(values) + 7) // 8)
        for i, value in enumerate(values):
            if value is not None:
                bits[i >> 3] |= 1 << (i & 7)
        self.buffer(bytes(bits))
        return nulls


def _integers(values: Iterable[Any], kind: str) -> list[int]:
    low, high = _INT_RANGES[kind]
    out = []
    for value in values:
        if value is None:
            out.append(0)
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, float) and value.is_integer():  # pyarrow takes 3.0 for an integer column
                value = int(value)
            else:
                raise TypeError(f"expected an integer, got {type(value).__name__} {value!r}")
        if not low <= value <= high:
            raise OverflowError(f"{value} does not fit {kind}")
        out.append(value)
    return out


def _floats(values: Iterable[Any]) -> list[float]:
    out = []
    for value in values:
        if value is None:
            out.append(0.0)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            out.append(float(value))
        else:
            raise TypeError(f"expected a number, got {type(value).__name__} {value!r}")
    return out


def _strings(values: Iterable[Any]) -> tuple[list[int], bytes]:
    offsets, data, end = [0], bytearray(), 0
    for value in values:
        if value is not None:
            if not isinstance(value, str):
                raise TypeError(f"expected a string, got {type(value).__name__} {value!r}")
            encoded = value.encode()
            data += encoded
            end += len(encoded)
        offsets.append(end)
    if end > 2**31 - 1:
        raise OverflowError("string data over 2 GiB")
    return offsets, bytes(data)


def _write_primitive(body: _Body, values: Sequence[Any], kind: str) -> None:
    nulls = body.validity(values)
    body.nodes.append((len(values), nulls))
    layout = f"<{len(values)}{_FORMATS[kind]}"
    if not nulls and not any(type(value) is bool for value in values):
        with contextlib.suppress(struct.error):  # the usual case; else the checks below say what is wrong
            body.buffer(struct.pack(layout, *values))
            return
    body.buffer(struct.pack(layout, *(_floats(values) if kind == "float64" else _integers(values, kind))))


def _write_string(body: _Body, values: Sequence[Any]) -> None:
    nulls = body.validity(values)
    body.nodes.append((len(values), nulls))
    offsets, data = _strings(values)
    body.buffer(struct.pack(f"<{len(offsets)}i", *offsets))
    body.buffer(data)


def _write_list(body: _Body, values: Sequence[Any], child: Callable[[_Body, list[Any]], None]) -> None:
    """A list column: validity, int32 offsets, then the child array of every list's items."""
    nulls = body.validity(values)
    body.nodes.append((len(values), nulls))
    offsets: list[int] = [0]
    items: list[Any] = []
    for value in values:
        if value is not None:
            if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
                raise TypeError(f"expected a list, got {type(value).__name__}")
            items.extend(value)
        offsets.append(len(items))
    if len(items) > 2**31 - 1:
        raise OverflowError("a list column over 2**31 items")
    body.buffer(struct.pack(f"<{len(offsets)}i", *offsets))
    child(body, items)


def _write_processes(body: _Body, processes: list[Any]) -> None:
    """struct<pid: int64, used_memory_bytes: int64>; a null process has null fields."""
    fields = []
    for process in processes:
        if process is not None and not isinstance(process, Mapping):
            raise TypeError(f"expected a process as a mapping, got {type(process).__name__}")
        fields.append((None, None) if process is None else (process.get("pid"), process.get("used_memory_bytes")))
    nulls = body.validity(processes)
    body.nodes.append((len(processes), nulls))
    for i in range(2):
        _write_primitive(body, [field[i] for field in fields], "int64")


def _write_entries(body: _Body, entries: list[Any]) -> None:
    """A map's entries: struct<key: string (never null), value: float64>."""
    pairs = []
    for entry in entries:
        if not isinstance(entry, Sequence) or isinstance(entry, str) or len(entry) != 2:
            raise TypeError(f"expected a (key, value) pair, got {entry!r}")
        if entry[0] is None:
            raise ValueError("a map key is null")
        pairs.append(entry)
    body.validity(entries)  # an entry is never null (checked above)
    body.nodes.append((len(entries), 0))
    _write_string(body, [key for key, _ in pairs])
    _write_primitive(body, [value for _, value in pairs], "float64")


def _map_values(values: Sequence[Any]) -> list[Any]:
    """A map column's values as lists of (key, value) pairs: a dict or a list of pairs each."""
    return [value if value is None else list(value.items()) if isinstance(value, Mapping) else value
            for value in values]


def _write_column(body: _Body, values: Sequence[Any], kind: Kind) -> None:
    if kind in ("float64", "int32", "int64"):
        _write_primitive(body, values, kind)
    elif kind == "timestamp_ms":
        _write_primitive(body, values, "int64")
    elif kind == "string":
        _write_string(body, values)
    elif kind == "list<string>":
        _write_list(body, values, _write_string)
    elif kind == "list<int32>":
        _write_list(body, values, lambda body, items: _write_primitive(body, items, "int32"))
    elif kind == "list<process>":
        _write_list(body, values, _write_processes)
    else:  # map<string,float64>: a list of entries
        _write_list(body, _map_values(values), _write_entries)


def _flatbuffer_message(rows: int, nodes: list[Node], buffers: list[tuple[int, int]], body_length: int) -> bytes:
    """The record batch's Message FlatBuffer (Arrow's Message.fbs): tables laid out after their vtables, every
    scalar aligned to its size, every offset pointing forward."""
    out = bytearray(struct.pack("<I", 0))  # the root offset, set below

    def align(to: int, then: int = 0) -> None:
        out.extend(bytes(-(len(out) + then) % to))

    # Message: vtable (version, header_type, header, bodyLength), then the table.
    align(2)
    message_vtable = len(out)
    out += struct.pack("<6H", 12, 20, 16, 18, 12, 4)
    align(8, then=4)
    message = len(out)
    out += struct.pack("<iqIhBx", message - message_vtable, body_length, 0, _METADATA_V5, _RECORD_BATCH)
    # RecordBatch: vtable (length, nodes, buffers), then the table.
    align(2)
    batch_vtable = len(out)
    out += struct.pack("<5H", 10, 20, 4, 12, 16)
    align(8, then=4)
    batch = len(out)
    out += struct.pack("<iqII", batch - batch_vtable, rows, 0, 0)
    vectors = []
    for items in (nodes, buffers):
        align(8, then=4)  # a vector of 16-byte structs: its elements 8-aligned after the length
        vectors.append(len(out))
        out += struct.pack("<I", len(items))
        for first, second in items:
            out += struct.pack("<qq", first, second)
    struct.pack_into("<I", out, 0, message)
    struct.pack_into("<I", out, message + 12, batch - (message + 12))
    struct.pack_into("<I", out, batch + 12, vectors[0] - (batch + 12))
    struct.pack_into("<I", out, batch + 16, vectors[1] - (batch + 16))
    align(8)
    return bytes(out)


def encode_rows(rows: Sequence[Mapping[str, Any]]) -> bytes:
    """One Arrow IPC stream holding ``rows`` (dicts keyed by column name, ``ts`` in epoch ms; a column a row lacks
    is null): the schema message, one record batch, the end of the stream."""
    body = _Body()
    for column in COLUMN_KINDS:
        values = [row.get(column.name) for row in rows]
        if not column.nullable and any(value is None for value in values):
            missing = sum(value is None for value in values)
            raise ValueError(f"column {column.name!r} is required but {missing} rows have no value")
        _write_column(body, values, column.kind)
    metadata = _flatbuffer_message(len(rows), body.nodes, body.buffers, len(body.data))
    prefix = _CONTINUATION + struct.pack("<i", len(metadata))
    return SCHEMA_MESSAGE + prefix + metadata + bytes(body.data) + _END_OF_STREAM

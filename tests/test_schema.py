import re
from pathlib import Path

import pyarrow as pa
import pytest

from fleetmeter.schemas import wire
from fleetmeter.schemas.sample_v1 import SAMPLE_SCHEMA, rows_to_batch
from fleetmeter.schemas.sample_v1_columns import COLUMNS, SCHEMA_VERSION_METADATA_KEY

DOCS = Path(__file__).parent.parent / "schemas" / "sample_v1.md"


def test_every_column_is_documented_and_every_documented_column_exists() -> None:
    columns_section = DOCS.read_text().split("\n## ")[0]  # the table before the first heading
    documented = re.findall(r"^\| `([a-z_0-9]+)` \|", columns_section, flags=re.MULTILINE)
    assert documented == list(COLUMNS)


def test_the_per_vendor_mappings_name_real_columns() -> None:
    for section in DOCS.read_text().split("\n## ")[1:]:
        if section.startswith("Per vendor"):
            rows = re.findall(r"^\| ([^|]+) \|", section, flags=re.MULTILINE)
            named = {name for row in rows for name in re.findall(r"`([a-z_0-9]+)`", row)}
            assert named and named <= set(COLUMNS), named - set(COLUMNS)


def test_required_columns_are_present_with_their_types() -> None:
    assert SAMPLE_SCHEMA.field("ts").type == pa.timestamp("ms", tz="UTC")
    for name in ("ts", "interval_s", "cluster", "node", "device_uuid", "device_index", "device_kind",
                 "vendor", "model", "tenant", "seq"):
        assert not SAMPLE_SCHEMA.field(name).nullable, name
    for name in ("util_compute", "util_mem_bw", "sm_active", "tensor_active", "power_w", "energy_j", "temp_c"):
        assert SAMPLE_SCHEMA.field(name).type == pa.float64(), name


def sample_row(**values: object) -> dict[str, object]:
    row: dict[str, object] = {
        "ts": 1_767_225_600_000, "interval_s": 10.0, "cluster": "c", "node": "n", "device_uuid": "GPU-1",
        "device_index": 0, "device_kind": "gpu", "vendor": "nvidia", "model": "H100", "tenant": "t", "seq": 1,
    }
    return row | values


def test_a_message_round_trips_through_the_wire_format() -> None:
    rows = [sample_row(util_compute=0.5, extras={"gpm.dram_active": 0.25}, xid_errors=[79],
                       processes=[{"pid": 7, "used_memory_bytes": 1024}]),
            sample_row(device_uuid="GPU-2", device_index=1)]
    table = wire.decode(wire.encode(rows_to_batch(rows)))
    assert table.schema.equals(SAMPLE_SCHEMA)
    decoded = table.to_pylist()
    assert decoded[0]["util_compute"] == 0.5 and decoded[0]["extras"] == [("gpm.dram_active", 0.25)]
    assert decoded[0]["xid_errors"] == [79] and decoded[0]["processes"] == [{"pid": 7, "used_memory_bytes": 1024}]
    assert decoded[1]["util_compute"] is None and decoded[1]["device_uuid"] == "GPU-2"


def test_a_missing_required_value_is_refused_at_encoding() -> None:
    with pytest.raises(ValueError):
        rows_to_batch([sample_row(tenant=None)])


def test_garbage_and_unknown_major_versions_are_rejected() -> None:
    with pytest.raises(wire.WireFormatError, match="not an Arrow IPC stream"):
        wire.decode(b"\x00garbage")
    future = SAMPLE_SCHEMA.with_metadata({SCHEMA_VERSION_METADATA_KEY: b"2.0"})
    batch = rows_to_batch([sample_row()]).cast(future)  # type: ignore[attr-defined]
    with pytest.raises(wire.WireFormatError, match=r"unsupported schema version '2\.0'"):
        wire.decode(wire.encode(batch))


def test_a_newer_minor_version_with_an_extra_column_is_still_read() -> None:
    batch = rows_to_batch([sample_row()])
    wider = batch.append_column("future_column", pa.array([1.5]))
    wider = wider.replace_schema_metadata({SCHEMA_VERSION_METADATA_KEY: b"1.7"})
    table = wire.decode(wire.encode(wider))
    assert table.select(list(COLUMNS)).num_rows == 1

"""Sick hardware where the planted fleet does not go: small clusters, a node of sick devices, nodes with two
models, a GPU in MIG mode. A day of hourly rows through the import path, then ``fleetmeter anomalies``."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from fleetmeter.cli import app
from fleetmeter.pipeline.importing.runner import run_import
from fleetmeter.pipeline.settings import PipelineSettings
from fleetmeter.schemas.sample_v1 import rows_to_batch
from tests.importing.sources import Rows

YESTERDAY = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
#: (node, index) -> what differs from a healthy device at 0.8 load and 60-62 C
Device = tuple[int, int]


def day_of(nodes: int, per_node: int, model: Callable[[Device], str], odd: Callable[[Device], dict[str, Any]],
           ) -> list[dict[str, Any]]:
    rows = []
    for node in range(nodes):
        for index in range(per_node):
            for hour in range(24):
                rows.append({
                    "ts": int((YESTERDAY + timedelta(hours=hour)).timestamp() * 1000), "interval_s": 3600.0,
                    "cluster": "c", "node": f"n{node}", "device_uuid": f"GPU-{node}-{index}", "device_index": index,
                    "device_kind": "gpu", "vendor": "nvidia", "model": model((node, index)), "tenant": "unallocated",
                    "seq": hour, "util_compute": 0.8, "temp_c": 60.0 + (node + index) % 3, "throttle_reasons": []}
                    | odd((node, index)))
    return rows


def sick(tmp_path: Path, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    run_import(Rows("day", [rows_to_batch(rows)]), PipelineSettings(warehouse={"uri": str(tmp_path / "w")}))  # type: ignore[arg-type]
    result = CliRunner().invoke(app, ["anomalies", "--warehouse", str(tmp_path / "w"), "--kind", "sick_hardware",
                                      "--since", "3d", "--format", "json"])
    assert result.exit_code == 0, result.output
    return list(json.loads(result.stdout))


def h100(device: Device) -> str:
    return "H100"


def test_a_node_of_sick_devices_in_a_small_cluster_does_not_hide_them(tmp_path: Path) -> None:
    """Two nodes: too few to judge a node, and five hot GPUs on one must not pass for a warm rack."""
    hot = {(0, index) for index in range(5)}
    found = sick(tmp_path, day_of(2, 8, h100, lambda device: {"temp_c": 85.0} if device in hot else {}))
    assert {row["device_uuid"] for row in found} == {f"GPU-{node}-{index}" for node, index in hot}


def test_a_hot_node_is_one_finding_per_model_and_not_one_per_device(tmp_path: Path) -> None:
    """Six nodes of four H100s and four A100s; node n0 runs 30 C hot: the node is found, once for each model."""
    found = sick(tmp_path, day_of(6, 8, lambda device: "H100" if device[1] < 4 else "A100",
                                  lambda device: {"temp_c": 90.0} if device[0] == 0 else {}))
    assert sorted((row["node"], row["device_uuid"], row["model"]) for row in found) == [
        ("n0", None, "A100"), ("n0", None, "H100")]
    assert all(json.loads(row["evidence"])["devices"] == 4 for row in found)


def test_two_sick_devices_on_a_node_are_theirs_not_the_nodes(tmp_path: Path) -> None:
    """Six nodes of four; two of n0's run 30 C hot: two devices are found, not the node as well."""
    found = sick(tmp_path, day_of(6, 4, h100, lambda device: {"temp_c": 90.0} if device in {(0, 0), (0, 1)} else {}))
    assert sorted(row["device_uuid"] for row in found) == ["GPU-0-0", "GPU-0-1"]


def test_a_gpu_in_mig_mode_held_down_all_day_is_found_by_its_board_readings(tmp_path: Path) -> None:
    """A MIG-mode board counts no device-seconds (its instances do), yet its temperature and throttling are
    its own: held down (hw_thermal) all day among healthy peers."""
    found = sick(tmp_path, day_of(1, 8, h100, lambda device: {
        "throttle_reasons": ["hw_thermal"], "extras": [("mig.enabled", 1.0)], "util_compute": None}
        if device == (0, 3) else {}))
    assert [(row["device_uuid"], json.loads(row["evidence"])["throttled_share"]) for row in found] == [
        ("GPU-0-3", 1.0)]

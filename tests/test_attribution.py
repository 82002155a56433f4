import json
import os
from pathlib import Path

from collectors.attribution import UNALLOCATED, Attribution, BackendHint
from collectors.attribution.static import OwnerRule, SchedulerFile, StaticRules
from collectors.readings import Device, DeviceReading, Owner


def reading(node: str = "gpu-01", uuid: str = "GPU-a", index: int = 0, owner: Owner | None = None) -> DeviceReading:
    return DeviceReading(device=Device(node, uuid, index, "gpu", "nvidia", "H100"), owner=owner)


def test_static_rules_match_node_globs_devices_by_uuid_or_index_first_rule_wins() -> None:
    rules = StaticRules([
        OwnerRule(node="gpu-0*", devices=["GPU-special"], tenant="vip", job_id="j1"),
        OwnerRule(node="gpu-0*", devices=["3"], tenant="team-3"),
        OwnerRule(node="gpu-*", tenant="shared"),
    ])
    assert rules.owner_of(reading(uuid="GPU-special")) == Owner("vip", "j1")
    assert rules.owner_of(reading(index=3)) == Owner("team-3")
    assert rules.owner_of(reading(node="gpu-11")) == Owner("shared")
    assert rules.owner_of(reading(node="cpu-01")) is None


def test_scheduler_file_beats_static_rules_beats_backend_hint(tmp_path: Path) -> None:
    path = tmp_path / "owners.json"
    attribution = Attribution([SchedulerFile(path), StaticRules([OwnerRule(node="gpu-01", tenant="static")]),
                               BackendHint()])
    attribution.refresh()
    assert attribution.owner_of(reading()) == Owner("static")
    assert attribution.owner_of(reading(node="gpu-02", owner=Owner("sim"))) == Owner("sim")
    assert attribution.owner_of(reading(node="gpu-02")) == UNALLOCATED
    path.write_text(json.dumps({"rules": [{"node": "gpu-01", "devices": ["0"], "tenant": "slurm", "job_id": "42"}]}))
    attribution.refresh()
    assert attribution.owner_of(reading()) == Owner("slurm", "42")


def test_scheduler_file_is_reread_when_it_changes_and_a_bad_file_keeps_the_old_rules(tmp_path: Path) -> None:
    path = tmp_path / "owners.yaml"
    source = SchedulerFile(path)
    path.write_text("rules:\n  - {node: '*', tenant: first}\n")
    source.refresh()
    assert source.owner_of(reading()) == Owner("first")
    path.write_text("rules: [{node: '*', tenant: 7, bogus: true}]\n")
    os.utime(path, ns=(1, 1))
    source.refresh()
    assert source.errors == 1 and source.owner_of(reading()) == Owner("first")
    path.write_text("rules:\n  - {node: '*', tenant: second}\n")
    os.utime(path, ns=(2, 2))
    source.refresh()
    assert source.owner_of(reading()) == Owner("second")
    path.unlink()
    source.refresh()
    assert source.owner_of(reading()) is None

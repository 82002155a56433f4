import json
import os
from pathlib import Path

from fleetmeter.collectors.attribution import UNALLOCATED, Attribution, AttributionSource, BackendHint
from fleetmeter.collectors.attribution.sharing import Share
from fleetmeter.collectors.attribution.static import OwnerRule, SchedulerFile, StaticRules
from fleetmeter.collectors.readings import Device, DeviceReading, Owner


def reading(node: str = "gpu-01", uuid: str = "GPU-a", index: int = 0, owner: Owner | None = None) -> DeviceReading:
    return DeviceReading(device=Device(node, uuid, index, "gpu", "nvidia", "H100"),
                         owners=() if owner is None else (owner,))


def found(source: AttributionSource, device: DeviceReading) -> Owner | None:
    """The one owner ``source`` claims the device for, or None."""
    claims = source.claims(device)
    assert len(claims) <= 1
    return claims[0].owner if claims else None


def whole(attribution: Attribution, device: DeviceReading) -> Owner:
    [share] = attribution.shares_of(device)
    assert share == Share(share.owner)  # the whole device
    return share.owner


def test_static_rules_match_node_globs_devices_by_uuid_or_index_first_rule_wins() -> None:
    rules = StaticRules([
        OwnerRule(node="gpu-0*", devices=["GPU-special"], tenant="vip", job_id="j1"),
        OwnerRule(node="gpu-0*", devices=["3"], tenant="team-3"),
        OwnerRule(node="gpu-*", tenant="shared"),
    ])
    assert found(rules, reading(uuid="GPU-special")) == Owner("vip", "j1")
    assert found(rules, reading(index=3)) == Owner("team-3")
    assert found(rules, reading(node="gpu-11")) == Owner("shared")
    assert found(rules, reading(node="cpu-01")) is None


def test_scheduler_file_beats_static_rules_beats_backend_hint(tmp_path: Path) -> None:
    path = tmp_path / "owners.json"
    attribution = Attribution([SchedulerFile(path), StaticRules([OwnerRule(node="gpu-01", tenant="static")]),
                               BackendHint()])
    attribution.refresh()
    assert whole(attribution, reading()) == Owner("static")
    assert whole(attribution, reading(node="gpu-02", owner=Owner("sim"))) == Owner("sim")
    assert whole(attribution, reading(node="gpu-02")) == UNALLOCATED
    path.write_text(json.dumps({"rules": [{"node": "gpu-01", "devices": ["0"], "tenant": "slurm", "job_id": "42"}]}))
    attribution.refresh()
    assert whole(attribution, reading()) == Owner("slurm", "42")


def test_scheduler_file_is_reread_when_it_changes_and_a_bad_file_keeps_the_old_rules(tmp_path: Path) -> None:
    path = tmp_path / "owners.yaml"
    source = SchedulerFile(path)
    path.write_text("rules:\n  - {node: '*', tenant: first}\n")
    source.refresh()
    assert found(source, reading()) == Owner("first")
    path.write_text("rules: [{node: '*', tenant: 7, bogus: true}]\n")
    os.utime(path, ns=(1, 1))
    source.refresh()
    assert source.errors == 1 and found(source, reading()) == Owner("first")
    path.write_text("rules:\n  - {node: '*', tenant: second}\n")
    os.utime(path, ns=(2, 2))
    source.refresh()
    assert found(source, reading()) == Owner("second")
    path.unlink()
    source.refresh()
    assert found(source, reading()) is None


def test_a_failing_source_fails_alone() -> None:
    class Broken:
        name = "broken"
        errors = 0

        def refresh(self) -> None:
            raise RuntimeError("bug")

        def claims(self, reading: DeviceReading) -> list:  # type: ignore[type-arg]
            raise RuntimeError("bug")

    attribution = Attribution([Broken(), StaticRules([OwnerRule(tenant="fallback")])])
    attribution.refresh()
    assert whole(attribution, reading()) == Owner("fallback")
    assert attribution.errors() == {"broken": 2, "static": 0}

"""Slurm attribution from recorded /proc trees (cgroup v1 and v2 layouts, environment) and squeue."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from fleetmeter.collectors.attribution.procfs import Procfs
from fleetmeter.collectors.attribution.slurm import SlurmJobs, SlurmSettings, Squeue, job_of
from fleetmeter.collectors.readings import Device, DeviceReading, Owner, ProcessUsage

FIXTURES = Path(__file__).parent / "fixtures"
PROC = Procfs(FIXTURES / "proc")
FAKE_SQUEUE = [sys.executable, str(FIXTURES / "fake_squeue.py")]


def on_device(*pids: int, util: float | None = None) -> DeviceReading:
    return DeviceReading(device=Device("n", "GPU-1", 0, "gpu", "nvidia", "H100"),
                         processes=tuple(ProcessUsage(pid, 1, util) for pid in pids))


@pytest.mark.parametrize(("pid", "job"), [(1001, "4242"), (1002, "5151"), (1006, "5151"), (1003, "6161"),
                                          (1004, None), (1007, None), (999999, None)])
def test_the_job_comes_from_the_cgroup_path_else_the_environment(pid: int, job: str | None) -> None:
    assert job_of(PROC, pid) == job


def test_tenants_are_slurm_accounts_asked_once_per_job_and_cached(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    calls = tmp_path / "calls"
    monkeypatch.setenv("FAKE_SQUEUE_CALLS", str(calls))
    settings = SlurmSettings(enabled=True, squeue=FAKE_SQUEUE, tenant_by_user={"root": "ops"})
    source = SlurmJobs(settings, PROC)
    for _ in range(3):  # three scrapes
        source.refresh()
        assert [c.owner for c in source.claims(on_device(1001))] == [Owner("research", "4242")]
        assert [c.owner for c in source.claims(on_device(1002, 1006))] == [Owner("vision", "5151")]
        # a finished job squeue no longer lists: the user's configured tenant
        assert [c.owner for c in source.claims(on_device(1003))] == [Owner("ops", "6161")]
        assert source.claims(on_device(1007)) == []  # not a Slurm process: another source may know
    assert calls.read_text().splitlines() == ["4242", "5151", "6161"]  # one lookup per job, then the cache


def test_two_jobs_on_one_device_are_two_claims_with_their_processes() -> None:
    source = SlurmJobs(SlurmSettings(enabled=True, squeue=FAKE_SQUEUE), PROC)
    source.refresh()
    claims = source.claims(on_device(1001, 1002, 1006))
    assert {(c.owner, c.pids) for c in claims} == {(Owner("research", "4242"), frozenset({1001})),
                                                   (Owner("vision", "5151"), frozenset({1002, 1006}))}


def test_without_squeue_the_tenant_is_the_users_and_lookups_fail_softly(tmp_path: Path) -> None:
    source = SlurmJobs(SlurmSettings(enabled=True, squeue=[str(tmp_path / "no-such-squeue")]), PROC)
    source.refresh()
    assert [c.owner for c in source.claims(on_device(1001))] == [Owner("root", "4242")]
    assert source.squeue.errors == 1
    now = [0.0]
    cached = Squeue(SlurmSettings(squeue=[str(tmp_path / "no-such-squeue")], lookup_ttl_s=60), lambda: now[0])
    cached.accounts({"1"}), cached.accounts({"1"})
    assert cached.calls == 1  # a failure is remembered for the TTL too: the cost stays bounded
    now[0] = 61.0
    cached.accounts({"1"})
    assert cached.calls == 2

"""Slurm: a device belongs to the jobs of the processes running on it.

The job id comes from the process's cgroup path, which Slurm's ``task/cgroup`` plugin names
``.../job_<id>/step_<step>/...`` under cgroup v1 (``/slurm/uid_<uid>/job_<id>/...`` in each hierarchy) and
v2 (``/system.slice/slurmstepd.scope/job_<id>/...``), else from ``SLURM_JOB_ID`` in its environment. The
tenant is the job's Slurm account, asked of ``squeue`` once per job and cached (``lookup_ttl_s``), or,
where Slurm cannot be asked, the configured tenant of the job's user, else the user's name.
"""

from __future__ import annotations

import pwd
import re
import subprocess
import time
from collections.abc import Callable

import structlog
from pydantic import Field

from fleetmeter.collectors.attribution.procfs import Procfs
from fleetmeter.collectors.attribution.sharing import Claim
from fleetmeter.collectors.readings import DeviceReading, Owner
from fleetmeter.common.settings import Section

log = structlog.get_logger(__name__)

_JOB_IN_CGROUP = re.compile(r"/job_(\d+)(?:/|$)")


class SlurmSettings(Section):
    enabled: bool = False
    squeue: list[str] | None = Field(
        default=["squeue"], description="Command that lists jobs (account, user); null: never ask Slurm.")
    lookup_ttl_s: float = Field(default=300.0, gt=0, description="How long a job's account is remembered.")
    lookup_timeout_s: float = Field(default=5.0, gt=0)
    tenant_by_user: dict[str, str] = Field(default_factory=dict, description="Tenant of a user's jobs "
                                           "when Slurm cannot be asked for the account.")


def job_of(procfs: Procfs, pid: int) -> str | None:
    """The Slurm job id of ``pid``: from its cgroup path, else its environment."""
    for path in procfs.cgroups(pid):
        match = _JOB_IN_CGROUP.search(path)
        if match:
            return match.group(1)
    return procfs.environ(pid).get("SLURM_JOB_ID")


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid-{uid}"


class Squeue:
    """Accounts of jobs, asked of ``squeue`` in one call per scrape for the jobs not yet known."""

    def __init__(self, settings: SlurmSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.calls = 0
        self.errors = 0
        self._known: dict[str, tuple[float, str | None]] = {}  # job -> (asked at, account)

    def accounts(self, jobs: set[str]) -> dict[str, str | None]:
        now = self.clock()
        stale = sorted(job for job in jobs
                       if job not in self._known or now - self._known[job][0] >= self.settings.lookup_ttl_s)
        if stale and self.settings.squeue:
            self._ask(stale, now)
        return {job: self._known.get(job, (now, None))[1] for job in jobs}

    def _ask(self, jobs: list[str], now: float) -> None:
        assert self.settings.squeue is not None
        command = [*self.settings.squeue, "--noheader", "--format=%A|%a|%u", f"--jobs={','.join(jobs)}"]
        self.calls += 1
        try:
            result = subprocess.run(command, capture_output=True, text=True, check=True,
                                    timeout=self.settings.lookup_timeout_s)
        except (OSError, subprocess.SubprocessError) as exc:
            self.errors += 1
            log.warning("squeue failed; tenants fall back to users", error=str(exc))
            for job in jobs:  # do not ask again before the TTL: the cost stays bounded
                self._known[job] = (now, None)
            return
        found = {}
        for line in result.stdout.splitlines():
            parts = line.strip().split("|")
            if len(parts) == 3 and parts[1]:
                found[parts[0]] = parts[1]
        for job in jobs:
            self._known[job] = (now, found.get(job))


class SlurmJobs:
    name = "slurm"

    def __init__(self, settings: SlurmSettings, procfs: Procfs, squeue: Squeue | None = None) -> None:
        self.settings = settings
        self.procfs = procfs
        self.squeue = squeue or Squeue(settings)
        self._jobs: dict[int, tuple[str, str]] = {}  # pid -> (job, user), for this scrape
        self._accounts: dict[str, str | None] = {}

    @property
    def errors(self) -> int:
        return self.squeue.errors

    def refresh(self) -> None:
        self._jobs = {}
        self._accounts = {}

    def claims(self, reading: DeviceReading) -> list[Claim]:
        by_job: dict[tuple[str, str], set[int]] = {}
        for process in reading.processes or ():
            found = self._job(process.pid)
            if found is not None:
                by_job.setdefault(found, set()).add(process.pid)
        if not by_job:
            return []
        unknown = {job for job, _ in by_job if job not in self._accounts}
        if unknown:
            self._accounts |= self.squeue.accounts(unknown)
        return [Claim(Owner(self._tenant(job, user), job), frozenset(pids)) for (job, user), pids in by_job.items()]

    def _job(self, pid: int) -> tuple[str, str] | None:
        if pid not in self._jobs:
            job = job_of(self.procfs, pid)
            if job is None:
                return None
            uid = self.procfs.uid(pid)
            self._jobs[pid] = (job, "unknown" if uid is None else user_name(uid))
        return self._jobs[pid]

    def _tenant(self, job: str, user: str) -> str:
        return self._accounts.get(job) or self.settings.tenant_by_user.get(user) or user

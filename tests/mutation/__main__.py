"""``./dev mutate [TARGET ...]``: mutation testing (cosmic-ray) of the modules where a wrong number is a wrong bill.

Each target is one module and the tests that must catch a change to it. cosmic-ray rewrites the module on disk
once per mutant, so every target runs in its own copy of the tree (never in the working tree, where a test
run or a commit could meet a mutated file), two targets at a time. The copy's ``fleetmeter`` shadows the
editable install because pytest puts the copy's root first on ``sys.path``. Hypothesis runs with the
``mutation`` profile (no shrinking, no example database). Prints each target's score and writes the survivors'
diffs to ``var/mutation/<target>.survivors.diff``; docs/mutation.md records the scores and why each survivor
lives on.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).parents[2]
OUT = ROOT / "var" / "mutation"
COPY_NOISE = shutil.ignore_patterns(".venv", ".git", "var", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
                                    ".hypothesis", "fleetmeter-demo")


@dataclass(frozen=True)
class Target:
    module: str  # path of the module to mutate
    tests: tuple[str, ...]  # the tests that must kill its mutants


TARGETS = {
    "counters": Target("collectors/counters.py", ("tests/test_counters.py",)),
    "cadence": Target("collectors/cadence.py", ("tests/test_cadence.py",)),
    "intervals": Target("collectors/intervals.py", ("tests/test_intervals.py",)),
    "sharing": Target("collectors/attribution/sharing.py", ("tests/test_sharing.py",)),
    "validate": Target("pipeline/validate.py", ("tests/pipeline/test_validate.py",)),
    "rollups": Target("pipeline/rollups.py", ("tests/pipeline/test_rollups.py",)),
}


@dataclass(frozen=True)
class Score:
    name: str
    killed: int
    survived: list[str]  # the survivors' diffs

    @property
    def total(self) -> int:
        return self.killed + len(self.survived)

    def line(self) -> str:
        percent = 100 * self.killed / self.total if self.total else 100.0
        return (f"{self.name:<10} {self.killed:>4} of {self.total:>4} killed ({percent:5.1f} %), "
                f"{len(self.survived)} survive")


def run(name: str, target: Target, timeout_s: float) -> Score:
    with tempfile.TemporaryDirectory(prefix=f"fleetmeter-mutate-{name}-") as scratch:
        tree = Path(scratch) / "tree"
        shutil.copytree(ROOT, tree, symlinks=True, ignore=COPY_NOISE)
        tests = " ".join(target.tests)
        config = Path(scratch) / "cosmic-ray.toml"
        config.write_text(f"""[cosmic-ray]
module-path = "{target.module}"
timeout = {timeout_s}
excluded-modules = []
test-command = "{sys.executable} -m pytest -x -q -p no:cacheprovider --hypothesis-profile=mutation {tests}"

[cosmic-ray.distributor]
name = "local"
""")
        session = Path(scratch) / "session.sqlite"
        cosmic_ray = [sys.executable, "-m", "cosmic_ray.cli"]
        subprocess.run([*cosmic_ray, "init", str(config), str(session)], cwd=tree, check=True)
        subprocess.run([*cosmic_ray, "exec", str(config), str(session)], cwd=tree, check=True)
        dump = subprocess.run([*cosmic_ray, "dump", str(session)], cwd=tree, check=True, capture_output=True,
                              text=True).stdout
    killed, survived = 0, []
    for line in dump.splitlines():
        _, result = json.loads(line)
        if result is not None and result["test_outcome"] == "survived":
            survived.append(result["diff"])
        else:
            killed += 1  # killed, or incompetent (the mutant could not even run): either way the tests noticed
    return Score(name, killed, survived)


def main() -> None:
    parser = argparse.ArgumentParser(prog="./dev mutate", description=__doc__.split("\n\n")[0])
    parser.add_argument("targets", nargs="*", help=f"modules to mutate, of {', '.join(TARGETS)} (default: all)")
    parser.add_argument("--jobs", type=int, default=2, help="targets run at once")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds one mutant's tests may take")
    arguments = parser.parse_args()
    unknown = set(arguments.targets) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    targets = arguments.targets or list(TARGETS)
    OUT.mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(arguments.jobs) as pool:
        scores = list(pool.map(lambda name: run(name, TARGETS[name], arguments.timeout), targets))
    for score in scores:
        (OUT / f"{score.name}.survivors.diff").write_text("\n".join(score.survived))
        print(score.line())


if __name__ == "__main__":
    main()

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
import ast
import json
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cosmic_ray.work_db import WorkDB, use_db
from cosmic_ray.work_item import TestOutcome, WorkerOutcome, WorkResult

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
    "intervals": Target("collectors/intervals.py", ("tests/test_intervals.py", "tests/test_sharing.py")),
    "sharing": Target("collectors/attribution/sharing.py", ("tests/test_sharing.py",)),
    "validate": Target("pipeline/validate.py", ("tests/pipeline/test_validate.py",)),
    "rollups": Target("pipeline/rollups.py", ("tests/pipeline/test_rollups.py",)),
}


@dataclass(frozen=True)
class Score:
    name: str
    killed: int
    survived: list[str]  # the survivors' diffs
    annotations: int  # mutants inside type annotations: never evaluated (postponed annotations), so not run

    @property
    def total(self) -> int:
        return self.killed + len(self.survived)

    def line(self) -> str:
        percent = 100 * self.killed / self.total if self.total else 100.0
        return (f"{self.name:<10} {self.killed:>4} of {self.total:>4} killed ({percent:5.1f} %), "
                f"{len(self.survived)} survive; {self.annotations} in annotations not run")


def annotation_spans(source: str) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(start, end) of every type annotation, as (line, column): with ``from __future__ import annotations``
    Python never evaluates them, so a mutant there is equivalent by construction."""
    spans = []
    for node in ast.walk(ast.parse(source)):
        annotations: list[ast.expr | None] = []
        if isinstance(node, ast.arg | ast.AnnAssign):
            annotations.append(node.annotation)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            annotations.append(node.returns)
        spans += [((a.lineno, a.col_offset), (a.end_lineno or a.lineno, a.end_col_offset or 0))
                  for a in annotations if a is not None]
    return spans


def skip_annotation_mutants(session: Path, module: Path) -> int:
    """Mark the session's mutants that fall inside an annotation as skipped; how many there were."""
    spans = annotation_spans(module.read_text())
    skipped = 0
    with use_db(str(session), WorkDB.Mode.open) as db:
        for item in list(db.pending_work_items):
            if all(any(start <= mutation.start_pos < end for start, end in spans) for mutation in item.mutations):
                db.set_result(item.job_id, WorkResult(worker_outcome=WorkerOutcome.SKIPPED))
                skipped += 1
    return skipped


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
        annotations = skip_annotation_mutants(session, tree / target.module)
        subprocess.run([*cosmic_ray, "exec", str(config), str(session)], cwd=tree, check=True)
        dump = subprocess.run([*cosmic_ray, "dump", str(session)], cwd=tree, check=True, capture_output=True,
                              text=True).stdout
    killed, survived = 0, []
    for line in dump.splitlines():
        _, result = json.loads(line)
        if result["worker_outcome"] == WorkerOutcome.SKIPPED:
            continue
        if result["test_outcome"] == TestOutcome.SURVIVED:
            survived.append(result["diff"])
        else:
            killed += 1  # killed, or incompetent (the mutant could not even run): either way the tests noticed
    return Score(name, killed, survived, annotations)


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

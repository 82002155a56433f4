"""The wheel a user installs: one import name, every file read at run time, and a working command from it.

The wheel is built from a copy of the source tree (sdist first, then the wheel from the sdist, as a
package index would) and installed, not editable, into a fresh virtual environment. That environment
borrows the test environment's third-party packages through a ``.pth`` line (nothing is downloaded), so
``pip check`` there proves the wheel's declared dependencies are met, and every command runs from a
directory outside the source tree.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

from fleetmeter.demo.broker import free_port

ROOT = Path(__file__).parents[1]
PARTS = ["collectors", "pipeline", "schemas", "sql", "reports", "planning", "anomalies"]
#: Files a part's folder holds that are for developers only, not read at run time.
DEVELOPER_ONLY = {".proto", ".sh"}
SOURCE_NOISE = shutil.ignore_patterns(".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache",
                                      ".hypothesis", "fleetmeter-demo", "tests", "bench", "deploy", "docs")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("wheel")
    source = base / "source"
    shutil.copytree(ROOT, source, symlinks=True, ignore=SOURCE_NOISE)
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(base / "dist"), str(source)],
                   check=True, capture_output=True, timeout=300)
    (built,) = (base / "dist").glob("fleetmeter-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with the wheel installed; returns its ``bin`` folder."""
    environment = tmp_path_factory.mktemp("venv")
    venv.create(environment, with_pip=False)
    python = environment / "bin" / "python"
    site_packages = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                   check=True, capture_output=True, text=True).stdout.strip()
    (Path(site_packages) / "borrowed_dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    pip = [sys.executable, "-m", "pip", "--python", str(python)]
    subprocess.run([*pip, "install", "--quiet", "--no-deps", str(wheel)], check=True, capture_output=True,
                   timeout=300)
    check = subprocess.run([*pip, "check"], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    return environment / "bin"


def test_the_wheel_installs_one_import_name_with_every_runtime_file(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        (top_level,) = [name for name in names if name.endswith(".dist-info/top_level.txt")]
        assert archive.read(top_level).decode().split() == ["fleetmeter"]
    assert {name.split("/")[0] for name in names} == {"fleetmeter", top_level.split("/")[0]}

    expected = {f"fleetmeter/{path.relative_to(ROOT)}" for part in PARTS for path in (ROOT / part).rglob("*")
                if path.is_file() and "__pycache__" not in path.parts and path.suffix not in DEVELOPER_ONLY}
    expected |= {f"fleetmeter/{path.relative_to(ROOT / 'fleetmeter')}" for path in (ROOT / "fleetmeter").rglob("*")
                 if path.is_file() and "__pycache__" not in path.parts and not path.is_symlink()}
    assert expected - names == set()
    assert "fleetmeter/sql/views.sql" in expected and "fleetmeter/reports/templates/report.html.j2" in expected


def test_the_installed_command_runs_outside_the_source_tree(installed: Path, tmp_path: Path) -> None:
    def fleetmeter(*arguments: str, timeout: float = 60) -> str:
        run = subprocess.run([installed / "fleetmeter", *arguments], cwd=tmp_path, capture_output=True, text=True,
                             timeout=timeout)
        assert run.returncode == 0, run.stdout + run.stderr
        return run.stdout

    where = subprocess.run(
        [installed / "python", "-c", "import fleetmeter.sql, importlib.util; print(fleetmeter.sql.__file__); "
                                     "print([importlib.util.find_spec(p) for p in ('collectors', 'sql', 'schemas')])"],
        cwd=tmp_path, check=True, capture_output=True, text=True).stdout.splitlines()
    assert where[0].startswith(str(installed.parent / "lib")) and where[1] == "[None, None, None]"

    assert "--devices-per-node" in fleetmeter("demo", "--help")
    directory = tmp_path / "demo"
    fleetmeter("demo", "--nodes", "2", "--devices-per-node", "1", "--hours", "0.25", "--seconds", "3",
               "--partitions", "1", "--directory", str(directory), "--metrics-port", str(free_port()),
               "--pipeline-metrics-port", str(free_port()), "--no-history", "--no-serve", timeout=120)
    assert (directory / "report.html").read_text().count("<svg") == 4

    config = str(directory / "analysis.yaml")
    listed = fleetmeter("query", "--config", config, "--list")
    canned = sorted(path.stem for path in (ROOT / "sql" / "queries").glob("*.sql"))
    assert canned and all(name in listed for name in canned)
    devices = fleetmeter("query", "--config", config, "--format", "csv",
                         "SELECT count(DISTINCT device_uuid) AS devices FROM samples")
    assert devices.split() == ['"devices"', "2"]

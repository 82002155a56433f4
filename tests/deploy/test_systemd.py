"""deploy/systemd: systemd-analyze verifies each unit without a warning, and each keeps its hardening."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = sorted((Path(__file__).parents[2] / "deploy" / "systemd").glob("*.service"))
HARDENING = ("NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
             "DynamicUser=yes", "Restart=always")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_systemd_analyze_verifies_the_unit(unit: Path, tmp_path: Path) -> None:
    # verify insists that ExecStart exists: point it at this environment's fleetmeter
    installed = str(Path(sys.executable).parent / "fleetmeter")
    copy = tmp_path / unit.name
    copy.write_text(unit.read_text().replace("/opt/fleetmeter/bin/fleetmeter", installed))
    result = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, check=False)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result.stdout + result.stderr


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_the_unit_is_hardened_and_restarts(unit: Path) -> None:
    lines = set(unit.read_text().splitlines())
    assert set(HARDENING) <= lines

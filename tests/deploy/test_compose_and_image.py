"""deploy/compose and the Dockerfile: the Compose file is valid against the Compose specification, every
fleetmeter command in it is one the CLI accepts, the files it mounts exist, and the image is built in
stages and runs as a user other than root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from dockerfile_parse import DockerfileParser

ROOT = Path(__file__).parents[2]
COMPOSE = ROOT / "deploy" / "compose" / "docker-compose.yml"
BIN = Path(sys.executable).parent


def services() -> dict[str, dict[str, Any]]:
    return yaml.safe_load(COMPOSE.read_text())["services"]  # type: ignore[no-any-return]


def test_compose_file_is_valid_against_the_compose_specification() -> None:
    result = subprocess.run([BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", COMPOSE],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("service", ["collector", "pipeline", "sql", "anomalies"])
def test_fleetmeter_commands_in_compose_are_accepted_by_the_cli(service: str) -> None:
    spec = services()[service]
    assert spec["image"] == "fleetmeter:trial"
    result = subprocess.run([BIN / "fleetmeter", *spec["command"], "--help"], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_what_compose_mounts_from_the_repository_exists() -> None:
    for spec in services().values():
        for volume in spec.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), source
    prometheus = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {target for job in prometheus["scrape_configs"] for config in job["static_configs"]
               for target in config["targets"]}
    # the Compose services and their metrics ports
    assert targets == {"collector:9410", "pipeline:9411", "anomalies:9413"}


def test_the_image_is_built_in_stages_and_runs_as_a_user() -> None:
    dockerfile = DockerfileParser(path=str(ROOT / "Dockerfile"))
    instructions = dockerfile.structure
    stages = [i for i in instructions if i["instruction"] == "FROM"]
    assert len(stages) >= 2
    final = instructions[instructions.index(stages[-1]):]
    users = [i["value"] for i in final if i["instruction"] == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert not any(i["instruction"] == "ADD" for i in instructions)
    assert any(i["instruction"] == "ENTRYPOINT" and "fleetmeter" in i["value"] for i in final)
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored

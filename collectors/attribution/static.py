"""Static attribution: rules from the configuration, and rules from a file a scheduler hook rewrites.

A rule names a node (glob), optionally devices on it (UUIDs or indices), and the owner. The first rule
that matches wins. The file holds ``{"rules": [...]}`` in the same shape (JSON or YAML); it is re-read
when its modification time changes, and a bad file keeps the previous rules (and is counted).
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path

import structlog
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fleetmeter.collectors.attribution.sharing import Claim
from fleetmeter.collectors.readings import DeviceReading, Owner

log = structlog.get_logger(__name__)


class OwnerRule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    node: str = Field(default="*", description="Node name or glob.")
    devices: list[str] = Field(default=[], description="Device UUIDs or indices; empty: every device.")
    tenant: str = Field(min_length=1)
    job_id: str | None = None

    def matches(self, reading: DeviceReading) -> bool:
        device = reading.device
        if not fnmatch.fnmatchcase(device.node, self.node):
            return False
        return not self.devices or device.uuid in self.devices or str(device.index) in self.devices


class RuleFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[OwnerRule]


def first_match(rules: list[OwnerRule], reading: DeviceReading) -> list[Claim]:
    for rule in rules:
        if rule.matches(reading):
            return [Claim(Owner(rule.tenant, rule.job_id))]
    return []


class StaticRules:
    name = "static"
    errors = 0

    def __init__(self, rules: list[OwnerRule]) -> None:
        self.rules = rules

    def refresh(self) -> None:
        pass

    def claims(self, reading: DeviceReading) -> list[Claim]:
        return first_match(self.rules, reading)


class SchedulerFile:
    name = "scheduler_file"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rules: list[OwnerRule] = []
        self.errors = 0
        self._mtime_ns: int | None = None

    def refresh(self) -> None:
        try:
            mtime_ns = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            if self._mtime_ns is not None:
                log.info("scheduler file removed; its rules no longer apply", path=str(self.path))
            self.rules, self._mtime_ns = [], None
            return
        if mtime_ns == self._mtime_ns:
            return
        self._mtime_ns = mtime_ns
        try:
            self.rules = RuleFile.model_validate(yaml.safe_load(self.path.read_text()) or {"rules": []}).rules
        except (OSError, yaml.YAMLError, ValidationError) as exc:
            self.errors += 1
            log.error("scheduler file unreadable; keeping previous rules", path=str(self.path), error=str(exc))

    def claims(self, reading: DeviceReading) -> list[Claim]:
        return first_match(self.rules, reading)

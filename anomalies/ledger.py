"""The anomalies table across runs. A finding continues a stored anomaly of the same kind and entity whose span
(start to the end of the data it was last seen in) overlaps or adjoins its own, open or resolved, and updates
it; otherwise it is a new anomaly. A stored open anomaly that no finding continues is resolved where it was last
seen. Each stored anomaly is continued by one finding at most: a job idle, busy, then idle again is two."""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timedelta
from typing import Any

import polars as pl
import pyarrow as pa

from fleetmeter.anomalies.detectors import Finding, evidence_text
from fleetmeter.schemas.warehouse import ANOMALIES

OPEN, RESOLVED = "open", "resolved"
#: Spans this close count as adjoining (the hour a run's window starts or ends in).
_ADJOINING = timedelta(hours=1)


def merge(stored: pl.DataFrame, findings: list[Finding], now: datetime) -> pl.DataFrame:
    """The anomalies table after this run (every column of ``ANOMALIES``)."""
    rows: dict[str, dict[str, Any]] = {row["id"]: row for row in stored.to_dicts()} if not stored.is_empty() else {}
    continued: set[str] = set()
    for finding in sorted(findings, key=lambda f: f.start):
        match = next((anomaly_id for anomaly_id, row in rows.items()
                      if anomaly_id not in continued and key_of(row) == finding.key
                      and row["start"] - _ADJOINING <= finding.end and finding.start <= row["seen_until"] + _ADJOINING),
                     None)
        if match is None:
            match = hashlib.sha256(json.dumps([*finding.key, finding.start.isoformat()]).encode()).hexdigest()[:16]
            rows[match] = {"id": match, "first_detected": now, "start": finding.start}
        row = rows[match]
        continued.add(match)
        rows[match] = row | {
            "kind": finding.kind, "status": OPEN if finding.ongoing else RESOLVED, "cluster": finding.cluster,
            "tenant": finding.tenant, "job_id": finding.job_id, "node": finding.node,
            "device_uuid": finding.device_uuid, "model": finding.model, "start": min(row["start"], finding.start),
            "end": None if finding.ongoing else finding.end, "seen_until": finding.end, "severity": finding.severity,
            "evidence": evidence_text(finding), "cost_impact": finding.cost_impact,
            "cost_per_day": finding.cost_per_day if finding.ongoing else None, "last_detected": now}
    for anomaly_id, row in rows.items():
        if row["status"] == OPEN and anomaly_id not in continued:
            rows[anomaly_id] = row | {"status": RESOLVED, "end": row["seen_until"], "cost_per_day": None}
    return pl.DataFrame(pl.from_arrow(pa.Table.from_pylist(list(rows.values()), schema=ANOMALIES.schema)))


def key_of(row: dict[str, Any]) -> tuple[str, ...]:
    """A stored row's entity, as ``Finding.key`` names it."""
    return Finding(row["kind"], row["cluster"] or "", row["tenant"] or "", row["job_id"] or "", row["model"] or "",
                   row["start"], row["start"], False, 0.0, {}, None, None, row["node"], row["device_uuid"]).key

"""The anomalies table across runs: a finding that continues an anomaly already stored (same kind and entity,
its span overlapping or adjoining the stored one's) updates it; a new one is added; a stored open anomaly that
no finding continues is resolved, its end where it was last seen. Resolved anomalies stay as they were."""

from __future__ import annotations

import hashlib
from datetime import datetime

import polars as pl
import pyarrow as pa

from fleetmeter.anomalies.detectors import Finding, evidence_text
from fleetmeter.schemas.warehouse import ANOMALIES

OPEN, RESOLVED = "open", "resolved"
_ENTITY = ("kind", "cluster", "tenant", "job_id", "node", "device_uuid")


def merge(stored: pl.DataFrame, findings: list[Finding], now: datetime) -> pl.DataFrame:
    """The anomalies table after this run (every column of ``ANOMALIES``)."""
    rows = {row["id"]: row for row in stored.to_dicts()} if not stored.is_empty() else {}
    open_by_key = {_key(row): row["id"] for row in rows.values() if row["status"] == OPEN}
    continued = set()
    for finding in findings:
        anomaly_id = open_by_key.get(finding.key)
        if anomaly_id is not None and rows[anomaly_id]["start"] <= finding.end:
            row = rows[anomaly_id]
            continued.add(anomaly_id)
            start = min(row["start"], finding.start)
        else:
            anomaly_id = hashlib.sha256("/".join([*finding.key, finding.start.isoformat()]).encode()).hexdigest()[:16]
            row = rows.get(anomaly_id, {"id": anomaly_id, "first_detected": now})
            continued.add(anomaly_id)
            start = finding.start
        rows[anomaly_id] = row | {
            "kind": finding.kind, "status": OPEN if finding.ongoing else RESOLVED, "cluster": finding.cluster,
            "tenant": finding.tenant, "job_id": finding.job_id, "node": finding.node,
            "device_uuid": finding.device_uuid, "model": finding.model, "start": start,
            "end": None if finding.ongoing else finding.end, "severity": finding.severity,
            "evidence": evidence_text(finding), "cost_impact": finding.cost_impact,
            "cost_per_day": finding.cost_per_day if finding.ongoing else None, "last_detected": now}
    for anomaly_id, row in rows.items():
        if row["status"] == OPEN and anomaly_id not in continued:
            rows[anomaly_id] = row | {"status": RESOLVED, "end": row["last_detected"], "cost_per_day": None}
    table = pa.Table.from_pylist(list(rows.values()), schema=ANOMALIES.schema)
    return pl.DataFrame(pl.from_arrow(table))


def _key(row: dict[str, object]) -> tuple[str, ...]:
    return tuple("" if row[name] is None else str(row[name]) for name in _ENTITY)

"""New and resolved anomalies sent to an Alertmanager-compatible webhook (its v4 payload: ``status``,
``alerts`` with ``labels``, ``annotations``, ``startsAt``, ``endsAt``), each event once: a row's ``notified``
column holds the last status the webhook accepted, so an event refused (the receiver down) is sent again at
the next round and one accepted is never sent again, across restarts too."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import httpx
import polars as pl

_TIMEOUT_S = 10.0


class WebhookFailed(Exception):
    """The receiver did not accept the events (they are sent again at the next round)."""


def pending(anomalies: pl.DataFrame) -> pl.DataFrame:
    """The rows whose status the webhook has not accepted yet (a resolved one never announced is not sent)."""
    if anomalies.is_empty():
        return anomalies
    return anomalies.filter((pl.col("notified").is_null() & (pl.col("status") == "open"))
                            | ((pl.col("notified") == "open") & (pl.col("status") == "resolved")))


def send(url: str, events: pl.DataFrame, currency: str) -> None:
    if events.is_empty():
        return
    alerts = [_alert(row, currency) for row in events.iter_rows(named=True)]
    status = "firing" if any(alert["status"] == "firing" for alert in alerts) else "resolved"
    payload = {"version": "4", "groupKey": "fleetmeter-anomalies", "receiver": "fleetmeter", "status": status,
               "groupLabels": {"alertname": "FleetmeterAnomaly"}, "commonLabels": {"alertname": "FleetmeterAnomaly"},
               "commonAnnotations": {}, "externalURL": "", "truncatedAlerts": 0, "alerts": alerts}
    try:
        answer = httpx.post(url, content=json.dumps(payload, default=str), timeout=_TIMEOUT_S,
                            headers={"Content-Type": "application/json"})
    except (httpx.HTTPError, httpx.InvalidURL) as exc:  # a URL from the command line: refused, not a traceback
        raise WebhookFailed(f"{url}: {exc}") from exc
    if answer.status_code >= 300:
        raise WebhookFailed(f"{url}: HTTP {answer.status_code}")


def _alert(row: dict[str, Any], currency: str) -> dict[str, Any]:
    labels = {"alertname": "FleetmeterAnomaly", "kind": row["kind"], "anomaly_id": row["id"]}
    labels |= {name: str(row[name]) for name in ("cluster", "tenant", "job_id", "node", "device_uuid", "model")
               if row[name]}
    cost = "unknown" if row["cost_impact"] is None else f"{row['cost_impact']:,.2f} {currency}"
    return {"status": "firing" if row["status"] == "open" else "resolved", "labels": labels,
            "fingerprint": row["id"],
            "annotations": {"summary": f"{row['kind']} of {row['tenant']}/{row['job_id'] or '-'}, cost so far {cost}",
                            "evidence": row["evidence"] or ""},
            "startsAt": _iso(row["start"]), "endsAt": _iso(row["end"]) if row["end"] else "0001-01-01T00:00:00Z",
            "generatorURL": ""}


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")

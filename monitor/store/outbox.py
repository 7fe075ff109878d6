"""The alert outbox: alerts written in the same transaction as their drift event, delivered later.

It owns the alert payload (JSON of the event and whether it opened or resolved) and the outbox's life:
which alerts are pending, marking one sent or failed.
It must not send anything (alert.py does) nor decide what deserves an alert (compare.py does).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import select, update

from monitor.compare import DriftEvent
from monitor.models import to_jsonable
from monitor.store.database import StoreBase
from monitor.store.encoding import _dt, _int_id, _iso
from monitor.store.schema import AlertRow


@dataclass(frozen=True, slots=True)
class Alert:
    id: str
    created_at: str
    payload: str  # JSON
    attempts: int = 0
    last_error: str | None = None
    sent_at: str | None = None


class Outbox(StoreBase):
    """The outbox rows: pending alerts, marked sent or failed by the sender."""

    def pending_alerts(self, limit: int = 50) -> list[Alert]:
        with self._guard("read alerts"), self._tx() as s:
            rows = s.scalars(select(AlertRow).where(AlertRow.sent_at.is_(None)).order_by(AlertRow.id).limit(limit))
            return [_alert(r) for r in rows]

    def mark_alert_sent(self, alert_id: str, now: str) -> None:
        with self._guard("update alert"), self._tx(write=True) as s:
            s.execute(update(AlertRow).where(AlertRow.id == _int_id(alert_id, "alert"))
                      .values(sent_at=_dt(now), attempts=AlertRow.attempts + 1, last_error=None))

    def mark_alert_failed(self, alert_id: str, error: str) -> None:
        with self._guard("update alert"), self._tx(write=True) as s:
            s.execute(update(AlertRow).where(AlertRow.id == _int_id(alert_id, "alert"))
                      .values(attempts=AlertRow.attempts + 1, last_error=error[:2000]))


def _alert(r: AlertRow) -> Alert:
    return Alert(str(r.id), _iso(r.created_at), r.payload, r.attempts, r.last_error, _iso(r.sent_at))


def _alert_payload(change: str, e: DriftEvent) -> str:
    body = {"change": change, **to_jsonable(e)}
    return json.dumps(body, sort_keys=True, separators=(",", ":"))

"""The alert outbox: alerts written in the same transaction as their drift event, delivered later.

It owns the alert payload (JSON of the event and whether it opened or resolved, `alert_event` reads it
back) and the outbox's life: which alerts are due (`due_alerts`: oldest first, an event's alerts in order),
marking one sent (with the Slack channel and message ts) or failed (attempts counted, next attempt time
kept). A failed alert stays queued until it is sent: nothing here gives up on one.
It must not send anything (alert.py does), choose the retry schedule (the sender passes `next_attempt_at`),
nor decide what deserves an alert (compare.py does).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import select, update

from monitor.compare import DriftEvent
from monitor.errors import InputError, StoreError
from monitor.models import to_jsonable
from monitor.snapshot import from_jsonable
from monitor.store.database import StoreBase
from monitor.store.encoding import _dt, _int_id, _iso
from monitor.store.schema import AlertRow


@dataclass(frozen=True, slots=True)
class Alert:
    """One outbox row. `attempts` counts tries so far (failed ones, plus the successful one once sent)."""

    id: str
    created_at: str
    payload: str  # JSON: {"change": "opened" | "resolved", **the drift event}
    attempts: int = 0
    last_error: str | None = None
    sent_at: str | None = None
    next_attempt_at: str | None = None  # None: due now
    slack_channel: str | None = None  # where it was posted, once sent
    slack_ts: str | None = None  # Slack's id of the posted message, to thread or update it later


class Outbox(StoreBase):
    """The outbox rows: due alerts, marked sent or failed by the sender."""

    def pending_alerts(self, limit: int = 50) -> list[Alert]:
        with self._guard("read alerts"), self._tx() as s:
            rows = s.scalars(select(AlertRow).where(AlertRow.sent_at.is_(None)).order_by(AlertRow.id).limit(limit))
            return [_alert(r) for r in rows]

    def due_alerts(self, now: str, limit: int = 50) -> list[Alert]:
        """Unsent alerts whose next attempt time has come, oldest first. An alert waits while an earlier
        alert of the same drift event is unsent, so that "resolved" never reaches Slack before "opened"."""
        at = _dt(now)
        due: list[Alert] = []
        waiting: set[str] = set()  # events with an earlier unsent alert
        with self._guard("read alerts"), self._tx() as s:
            for row in s.scalars(select(AlertRow).where(AlertRow.sent_at.is_(None)).order_by(AlertRow.id)):
                event_id = _event_id(row.payload)
                blocked = event_id is not None and event_id in waiting
                if event_id is not None:
                    waiting.add(event_id)
                if blocked or (row.next_attempt_at is not None and row.next_attempt_at > at):
                    continue
                due.append(_alert(row))
                if len(due) >= limit:
                    break
        return due

    def mark_alert_sent(self, alert_id: str, now: str, *, channel: str | None = None,
                        ts: str | None = None) -> Alert:
        """Records delivery (where, and Slack's message ts); returns the updated alert."""
        with self._guard("update alert"), self._tx(write=True) as s:
            row = _alert_row(s, alert_id)
            s.execute(update(AlertRow).where(AlertRow.id == row.id)
                      .values(sent_at=_dt(now), attempts=AlertRow.attempts + 1, last_error=None,
                              next_attempt_at=None, slack_channel=channel, slack_ts=ts))
            s.refresh(row)
            return _alert(row)

    def mark_alert_failed(self, alert_id: str, error: str, *, next_attempt_at: str | None = None) -> Alert:
        """Counts a failed attempt and keeps the alert queued; `due_alerts` skips it until next_attempt_at
        (None: due again at once). Returns the updated alert (its `attempts` drives the sender's backoff)."""
        with self._guard("update alert"), self._tx(write=True) as s:
            row = _alert_row(s, alert_id)
            s.execute(update(AlertRow).where(AlertRow.id == row.id)
                      .values(attempts=AlertRow.attempts + 1, last_error=error[:2000],
                              next_attempt_at=_dt(next_attempt_at)))
            s.refresh(row)
            return _alert(row)


def alert_event(alert: Alert) -> tuple[str, DriftEvent]:
    """What an alert says: "opened" or "resolved", and the drift event as it was when the alert was queued."""
    try:
        body = json.loads(alert.payload)
        change = body.pop("change")
    except (ValueError, TypeError, AttributeError, KeyError) as e:
        raise StoreError(f"alert {alert.id} has a damaged payload") from e
    try:
        return change, from_jsonable(DriftEvent, body, "payload")
    except InputError as e:
        raise StoreError(f"alert {alert.id} has a damaged payload: {e}") from e


def _alert_row(s, alert_id: str) -> AlertRow:
    row = s.get(AlertRow, _int_id(alert_id, "alert"))
    if row is None:
        raise InputError(f"unknown alert {alert_id}")
    return row


def _event_id(payload: str) -> str | None:
    try:
        value = json.loads(payload).get("id")
    except (ValueError, AttributeError):
        return None
    return str(value) if value is not None else None


def _alert(r: AlertRow) -> Alert:
    return Alert(str(r.id), _iso(r.created_at), r.payload, r.attempts, r.last_error, _iso(r.sent_at),
                 _iso(r.next_attempt_at), r.slack_channel, r.slack_ts)


def _alert_payload(change: str, e: DriftEvent) -> str:
    body = {"change": change, **to_jsonable(e)}
    return json.dumps(body, sort_keys=True, separators=(",", ":"))

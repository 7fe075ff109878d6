"""The alert outbox: alerts written in the same transaction as their drift event, delivered later.

It owns the alert payload (JSON of the event and whether it opened or resolved, `alert_event` reads it
back) and the outbox's life: which alerts are due (`due_alerts`: oldest first, an event's alerts in order),
marking one sent (with the Slack channel and message ts) or failed (attempts counted, next attempt time
kept). A failed alert stays queued until it is sent: nothing here gives up on one.
For the sender's incidents (one message for the alerts of one run and cause) it keeps where each message
went and what it said (`save_incident`, `incident_of_event`), closes alerts in bulk (`close_alerts`: sent in
an incident, or closed with a note when no message is due) and answers the flapping questions (`flow_times`,
`count_runs`, `flapping_notice`).
It must not send anything (alert.py does), choose the retry schedule (the sender passes `next_attempt_at`),
nor decide what deserves an alert (compare.py does).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import exists, func, select, update

from monitor.compare import DriftEvent
from monitor.errors import InputError, StoreError
from monitor.models import to_jsonable
from monitor.snapshot import from_jsonable
from monitor.store.database import StoreBase
from monitor.store.encoding import _dt, _int_id, _iso
from monitor.store.schema import AlertIncidentRow, AlertRow, ClusterRow, DriftEventRow, RunRow


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


@dataclass(frozen=True, slots=True)
class IncidentRecord:
    """One alert message: where it went (channel and ts with a bot token) and the sender's JSON of it."""

    id: str
    content: str
    channel: str | None = None
    ts: str | None = None
    ended_at: str | None = None  # flapping notices: when the flow was stable again


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


    def mark_alerts_sending(self, alert_ids: Sequence[str], note: str) -> None:
        """Notes, before a message goes out, that these alerts are being sent (not an attempt yet: nothing is
        counted). If the process dies before the answer, the note survives: the next sender looks the message
        up in Slack before posting it again (a post whose answer never came may have arrived)."""
        ids = [_int_id(a, "alert") for a in alert_ids]
        with self._guard("update alert"), self._tx(write=True) as s:
            s.execute(update(AlertRow).where(AlertRow.id.in_(ids), AlertRow.sent_at.is_(None))
                      .values(last_error=note[:2000]))

    # ------------------------------------------------------------------------- incidents (alert.py)
    def close_alerts(self, alert_ids: Sequence[str], now: str, *, incident_id: str | None = None,
                     channel: str | None = None, ts: str | None = None, note: str | None = None) -> None:
        """Closes alerts in one transaction: sent in that incident's message, or (with a note and no incident)
        deliberately not sent. Either way they leave the queue."""
        ids = [_int_id(a, "alert") for a in alert_ids]
        with self._guard("update alert"), self._tx(write=True) as s:
            s.execute(update(AlertRow).where(AlertRow.id.in_(ids)).values(
                sent_at=_dt(now), attempts=AlertRow.attempts + (0 if note else 1), last_error=None,
                next_attempt_at=None, slack_channel=channel, slack_ts=ts, note=note,
                incident_id=_int_id(incident_id, "incident") if incident_id else None))

    def alert_queue(self) -> tuple[int, str | None]:
        """Unsent alerts: how many, and when the oldest of them was queued."""
        with self._guard("read alerts"), self._tx() as s:
            n, oldest = s.execute(select(func.count(), func.min(AlertRow.created_at))
                                  .where(AlertRow.sent_at.is_(None))).one()
        return n, _iso(oldest)

    def save_incident(self, cluster: str, content: str, *, now: str, channel: str | None, ts: str | None,
                      flow_key: str | None = None, details_due: bool = False) -> str:
        """A message that went out (flow_key: a flapping notice for that flow; details_due: its thread details
        are still to be posted); returns its id."""
        with self._guard("save incident"), self._tx(write=True) as s:
            row = AlertIncidentRow(cluster=cluster, kind="flapping" if flow_key else "incident", flow_key=flow_key,
                                   channel=channel, ts=ts, content=content, created_at=_dt(now), updated_at=_dt(now),
                                   details_due=details_due)
            s.add(row)
            s.flush()
            return str(row.id)

    def update_incident(self, incident_id: str, content: str, *, now: str) -> None:
        with self._guard("update incident"), self._tx(write=True) as s:
            s.execute(update(AlertIncidentRow).where(AlertIncidentRow.id == _int_id(incident_id, "incident"))
                      .values(content=content, updated_at=_dt(now)))

    def details_due(self, limit: int = 20) -> list[IncidentRecord]:
        """Incidents whose thread details have not been posted yet, oldest first."""
        with self._guard("read incident"), self._tx() as s:
            rows = s.scalars(select(AlertIncidentRow).where(AlertIncidentRow.details_due.is_(True))
                             .order_by(AlertIncidentRow.id).limit(limit))
            return [_incident(r) for r in rows]

    def details_posted(self, incident_id: str, now: str) -> None:
        with self._guard("update incident"), self._tx(write=True) as s:
            s.execute(update(AlertIncidentRow).where(AlertIncidentRow.id == _int_id(incident_id, "incident"))
                      .values(details_due=False, updated_at=_dt(now)))

    def end_flapping(self, incident_id: str, now: str) -> None:
        with self._guard("update incident"), self._tx(write=True) as s:
            s.execute(update(AlertIncidentRow).where(AlertIncidentRow.id == _int_id(incident_id, "incident"))
                      .values(ended_at=_dt(now), updated_at=_dt(now)))

    def incident_of_event(self, event_id: str) -> IncidentRecord | None:
        """The message that announced this drift event's opening (its first alert); None: none did."""
        with self._guard("read incident"), self._tx() as s:
            row = s.scalars(select(AlertIncidentRow).join(AlertRow, AlertRow.incident_id == AlertIncidentRow.id)
                            .where(AlertRow.event_id == _int_id(event_id, "drift event"))
                            .order_by(AlertRow.id).limit(1)).first()
            return _incident(row) if row is not None else None

    def flapping_notice(self, cluster: str, flow_key: str) -> IncidentRecord | None:
        """The newest flapping message of this flow (in force while its ended_at is None)."""
        with self._guard("read incident"), self._tx() as s:
            row = s.scalars(select(AlertIncidentRow).where(
                AlertIncidentRow.cluster == cluster, AlertIncidentRow.kind == "flapping",
                AlertIncidentRow.flow_key == flow_key).order_by(AlertIncidentRow.id.desc()).limit(1)).first()
            return _incident(row) if row is not None else None

    def flow_times(self, cluster: str, flow_key: str, limit: int = 200,
                   unless_note: str | None = None) -> list[tuple[str, str | None]]:
        """(opened_at, resolved_at) of this flow's newest drift events of any kind: what flapping is judged on.
        `unless_note`: leave out events whose alert was closed with a note starting so (never alerted)."""
        with self._guard("read events"), self._tx() as s:
            q = (select(DriftEventRow.opened_at, DriftEventRow.resolved_at)
                 .join(ClusterRow, ClusterRow.id == DriftEventRow.cluster_id)
                 .where(ClusterRow.name == cluster, DriftEventRow.flow_key == flow_key))
            if unless_note:
                q = q.where(~exists().where(AlertRow.event_id == DriftEventRow.id,
                                            AlertRow.note.startswith(unless_note, autoescape=True)))
            q = q.order_by(DriftEventRow.opened_at.desc()).limit(limit)
            return [(_iso(o), _iso(r)) for o, r in s.execute(q)]

    def count_runs(self, cluster: str, after: str, until: str) -> int:
        """Runs of the cluster that started after `after` and no later than `until`."""
        with self._guard("count runs"), self._tx() as s:
            return s.scalar(select(func.count(RunRow.id)).join(ClusterRow, ClusterRow.id == RunRow.cluster_id)
                            .where(ClusterRow.name == cluster, RunRow.started_at > _dt(after),
                                   RunRow.started_at <= _dt(until)))


def _incident(row: AlertIncidentRow) -> IncidentRecord:
    return IncidentRecord(str(row.id), row.content, row.channel, row.ts, _iso(row.ended_at))


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

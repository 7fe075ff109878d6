"""Runs, baselines and drift events: writing a run with everything it brings, and reading runs back.

It owns `save_run` (the run, its snapshot and suite version stored once per digest, its result set
deduplicated, its drift events opened or resolved and their outbox rows: one transaction), the known-good
baseline (`known_good`, `accept`, `set_known_good`), drift events, and turning rows into Run, RunSummary
and DriftEvent.
It must not decide drift or known-good (compare.py does) nor read the clock (`now` comes in).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import case, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from monitor.compare import Cause, DriftEvent, Transitions
from monitor.cycles import no_cycle_collection
from monitor.errors import InputError
from monitor.grid import grid
from monitor.models import FlowResult, Outcome, Run, Snapshot, to_jsonable
from monitor.snapshot import from_jsonable, snapshot_digest, snapshot_to_json
from monitor.store.database import StoreBase
from monitor.store.encoding import (
    _apply_volatile,
    _decode_ids,
    _dt,
    _encode_grid,
    _encode_ids,
    _encode_volatile,
    _fields_from_row,
    _int_id,
    _iso,
    _result_digest,
    _set_digest,
    _stable_text,
)
from monitor.store.outbox import _alert_payload
from monitor.store.schema import (
    RUNS_NEWEST_FIRST,
    TRIGGER_DETAIL_LENGTH,
    AlertRow,
    ClusterRow,
    DriftEventRow,
    FlowResultRow,
    ResultSetRow,
    RunHourRow,
    RunRow,
    SnapshotRow,
    SuiteRow,
)

WORST_SPAN = 10**9  # run ids stay below this: worst-run key = (violations + skipped) * WORST_SPAN + id fits 64 bits


def _hour_values(row: RunRow) -> tuple[int, int, int, int | None]:
    """(hour, worst-run key, gaps, duration in ms) of one run, as run_hours aggregates them."""
    started = row.started_at.replace(tzinfo=UTC)
    ms = None if row.finished_at is None else \
        round((row.finished_at.replace(tzinfo=UTC) - started).total_seconds() * 1000)
    return (int(started.timestamp()) // 3600, (row.n_violations + row.n_skipped) * WORST_SPAN + row.id,
            row.n_gaps, ms)


@dataclass(frozen=True, slots=True)
class RunSummary:
    """A run without its results: what `history` lists."""

    id: str
    cluster: str
    started_at: str
    finished_at: str | None
    trigger: str
    status: str
    known_good: bool
    accepted_by: str | None
    snapshot_digest: str
    suite_digest: str
    results: int
    violations: int
    gaps: int
    skipped: int
    result_set: str  # digest: equal digests, equal results
    trigger_detail: str | None = None


# Plain columns rather than ORM entities: `show` and `compare` read 500 of them per run.
_RESULT_COLUMNS = (FlowResultRow.id, FlowResultRow.case, FlowResultRow.source, FlowResultRow.destination,
                   FlowResultRow.port, FlowResultRow.protocol, FlowResultRow.expected, FlowResultRow.intent,
                   FlowResultRow.outcome, FlowResultRow.verdict, FlowResultRow.explanation, FlowResultRow.reason,
                   FlowResultRow.node)


class Runs(StoreBase):
    """Writing runs with their events and alerts; baselines; drift events; rows to dataclasses."""

    def save_run(self, run: Run, *, now: str, snapshot: Snapshot | None = None, suite_text: str | None = None,
                 known_good: bool = False, transitions: Transitions | None = None) -> str:
        """Stores the run (and its snapshot, events and alerts) in one transaction; returns the run id.

        Saving a run that is already stored (same cluster, trigger, start and end, snapshot, suite and results:
        a retry after a COMMIT whose answer the database connection lost) returns the stored run's id and
        writes nothing, so its drift events and alerts never exist twice."""
        with self._guard("save run"), self._tx(write=True) as s:
            stored = self._same_run(s, run)
            if stored is not None:
                return str(stored)
            return str(self._save(s, run, now=_dt(now), snapshot=snapshot, suite_text=suite_text,
                                  known_good=known_good, transitions=transitions or Transitions()))

    def _same_run(self, s: Session, run: Run) -> int | None:
        return s.scalar(
            select(RunRow.id).join(ClusterRow, ClusterRow.id == RunRow.cluster_id)
            .join(SuiteRow, SuiteRow.id == RunRow.suite_id).join(SnapshotRow, SnapshotRow.id == RunRow.snapshot_id)
            .join(ResultSetRow, ResultSetRow.id == RunRow.result_set_id)
            .where(ClusterRow.name == run.cluster, RunRow.started_at == _dt(run.started_at),
                   RunRow.finished_at == _dt(run.finished_at), RunRow.trigger == run.trigger,
                   SuiteRow.digest == run.suite_digest, SnapshotRow.digest == run.snapshot_digest,
                   ResultSetRow.digest == _set_digest([_stable_text(r) for r in run.results]))
            .limit(1))

    def _save(self, s: Session, run: Run, *, now: datetime, snapshot: Snapshot | None, suite_text: str | None,
              known_good: bool, transitions: Transitions, accepted_by: str | None = None) -> int:
        cluster_id = self._get_or_create(s, ClusterRow.name, run.cluster, lambda: {"created_at": now})
        suite_id = self._get_or_create(s, SuiteRow.digest, run.suite_digest, lambda: {
            "created_at": now, "data": zlib.compress(suite_text.encode(), 9) if suite_text else None})
        if snapshot is not None:
            text = snapshot_to_json(snapshot)
            digest = snapshot_digest(snapshot)
            if digest != run.snapshot_digest:
                raise InputError(f"run {run.id or ''} says snapshot {run.snapshot_digest} but was given "
                                 f"{digest}".replace("run  ", "run "))
            snapshot_id = self._get_or_create(s, SnapshotRow.digest, digest, lambda: {
                "created_at": now, "size": len(text.encode()), "data": zlib.compress(text.encode(), 9)})
        else:
            snapshot_id = s.scalar(select(SnapshotRow.id).where(SnapshotRow.digest == run.snapshot_digest))
            if snapshot_id is None:
                raise InputError(f"snapshot {run.snapshot_digest} is not stored; pass it with the run")
        set_id = self._result_set_id(s, run.results, now)
        row = RunRow(cluster_id=cluster_id, suite_id=suite_id, snapshot_id=snapshot_id, result_set_id=set_id,
                     trigger=run.trigger, trigger_detail=(run.trigger_detail or "")[:TRIGGER_DETAIL_LENGTH] or None,
                     status=run.status, error=run.error, started_at=_dt(run.started_at),
                     finished_at=_dt(run.finished_at), known_good=known_good, accepted_by=accepted_by,
                     accepted_at=now if accepted_by else None, n_results=len(run.results),
                     n_violations=sum(r.violation for r in run.results),
                     n_gaps=sum(r.enforcement_gap for r in run.results),
                     n_skipped=sum(r.outcome == Outcome.SKIPPED for r in run.results),
                     volatile=_encode_volatile(run.results))
        s.add(row)
        s.flush()
        _count_in_hour(s, row)
        self._apply_transitions(s, cluster_id, run.cluster, row.id, transitions, now)
        return row.id


    def _get_or_create(self, s: Session, column: Any, key: str, values: Callable[[], dict]) -> int:
        """The id of the row whose unique `column` is `key`, inserted with values() when missing."""
        model = column.class_
        found = s.scalar(select(model.id).where(column == key))
        if found is not None:
            return found
        try:
            with s.begin_nested():
                row = model(**{column.key: key}, **values())
                s.add(row)
            return row.id
        except IntegrityError:  # another writer created it between our select and insert
            return s.scalar(select(model.id).where(column == key))

    def _result_set_id(self, s: Session, results: Sequence[FlowResult], now: datetime) -> int:
        texts = [_stable_text(r) for r in results]
        set_digest = _set_digest(texts)
        found = s.scalar(select(ResultSetRow.id).where(ResultSetRow.digest == set_digest))
        if found is not None:
            return found  # the common case: nothing changed since some earlier run
        digests = [_result_digest(t) for t in texts]
        ids: dict[str, int] = {}
        unique = sorted(set(digests))
        for i in range(0, len(unique), 500):
            chunk = unique[i:i + 500]
            ids.update(s.execute(select(FlowResultRow.digest, FlowResultRow.id)
                                 .where(FlowResultRow.digest.in_(chunk))).all())
        by_digest = dict(zip(digests, results, strict=True))
        missing = [d for d in unique if d not in ids]
        for d in missing:
            r = by_digest[d]
            try:
                with s.begin_nested():
                    row = FlowResultRow(digest=d, flow_key=r.key, case=r.case, source=r.source,
                                        destination=r.destination, port=r.port, protocol=r.protocol,
                                        expected=str(r.expected), intent=str(r.intent), outcome=str(r.outcome),
                                        verdict=str(r.verdict), explanation=r.explanation, reason=r.reason,
                                        node=r.node)
                    s.add(row)
                ids[d] = row.id
            except IntegrityError:
                ids[d] = s.scalar(select(FlowResultRow.id).where(FlowResultRow.digest == d))
        return self._get_or_create(s, ResultSetRow.digest, set_digest, lambda: {
            "created_at": now, "size": len(digests), "members": _encode_ids([ids[d] for d in digests]),
            "grid": _encode_grid(grid(results))})

    def _apply_transitions(self, s: Session, cluster_id: int, cluster: str, run_id: int, t: Transitions,
                           now: datetime) -> None:
        for e in t.opened:
            row = DriftEventRow(cluster_id=cluster_id, flow_key=e.flow_key, kind=e.kind, detail=e.detail,
                                cause=json.dumps(to_jsonable(e.cause), sort_keys=True) if e.cause else None,
                                opened_at=_dt(e.opened_at), opened_run_id=run_id)
            s.add(row)
            s.flush()
            opened = replace(e, id=str(row.id), opened_run=str(run_id))
            s.add(AlertRow(created_at=now, payload=_alert_payload("opened", opened), attempts=0, event_id=row.id))
        for r in t.resolved:
            row = s.get(DriftEventRow, _int_id(r.event_id, "drift event"))
            if row is None or row.cluster_id != cluster_id:
                raise InputError(f"unknown drift event {r.event_id} of cluster {cluster}")
            if row.resolved_at is not None:
                continue  # already resolved: a second message would be a duplicate alert
            row.resolved_at, row.resolved_run_id, row.resolution = _dt(r.resolved_at), run_id, r.resolution
            s.flush()
            s.add(AlertRow(created_at=now, payload=_alert_payload("resolved", self._event(row, cluster)),
                           attempts=0, event_id=row.id))

    def accept(self, run_id: str, *, by: str, now: str) -> RunSummary:
        """A person declares this run the known-good baseline of its cluster and suite."""
        with self._guard("accept run"), self._tx(write=True) as s:
            row = self._run_row(s, run_id)
            row.known_good, row.accepted_by, row.accepted_at = True, by, _dt(now)
            s.flush()
            return self._summaries(s, [row.id])[0]

    def set_known_good(self, run_id: str, known_good: bool = True) -> None:
        with self._guard("mark run"), self._tx(write=True) as s:
            self._run_row(s, run_id).known_good = known_good
    def known_good(self, cluster: str, suite_digest: str) -> Run | None:
        """The baseline drift is judged against: the newest known-good run of this cluster and suite."""
        with self._guard("read baseline"), self._tx() as s:
            row = s.scalars(select(RunRow).join(ClusterRow, ClusterRow.id == RunRow.cluster_id)
                            .join(SuiteRow, SuiteRow.id == RunRow.suite_id)
                            .where(ClusterRow.name == cluster, SuiteRow.digest == suite_digest,
                                   RunRow.known_good.is_(True))
                            .order_by(*RUNS_NEWEST_FIRST).limit(1)).first()
            return self._run(s, row) if row is not None else None

    def events(self, cluster: str | None = None, *, open_only: bool = False, limit: int = 1000) -> list[DriftEvent]:
        with self._guard("read events"), self._tx() as s:
            q = select(DriftEventRow, ClusterRow.name).join(ClusterRow, ClusterRow.id == DriftEventRow.cluster_id)
            if cluster is not None:
                q = q.where(ClusterRow.name == cluster)
            if open_only:
                q = q.where(DriftEventRow.resolved_at.is_(None))
            q = q.order_by(DriftEventRow.opened_at.desc(), DriftEventRow.id.desc()).limit(limit)
            return [self._event(row, name) for row, name in s.execute(q)]

    def open_events(self, cluster: str) -> list[DriftEvent]:
        return self.events(cluster, open_only=True)
    # -------------------------------------------------------------------------------------- internals
    def _run_row(self, s: Session, run_id: str) -> RunRow:
        row = s.get(RunRow, _int_id(run_id, "run"))
        if row is None:
            raise InputError(f"unknown run {run_id} (see netpol-drift history)")
        return row

    def _results(self, s: Session, set_id: int) -> tuple[tuple, ...]:
        """The stable fields of a result set's members, in order (cached: sets never change)."""
        cached = self._sets.get(set_id)
        if cached is not None:
            self._sets.move_to_end(set_id)
            return cached
        blob = s.scalar(select(ResultSetRow.members).where(ResultSetRow.id == set_id))
        ids = _decode_ids(blob)
        rows: dict[int, Any] = {}
        unique = sorted(set(ids))
        for i in range(0, len(unique), 900):
            chunk = unique[i:i + 900]
            for row in s.execute(select(*_RESULT_COLUMNS).where(FlowResultRow.id.in_(chunk))):
                rows[row.id] = _fields_from_row(row)
        results = tuple(rows[i] for i in ids)
        self._sets[set_id] = results
        if len(self._sets) > 64:
            self._sets.popitem(last=False)
        return results

    def _run(self, s: Session, row: RunRow) -> Run:
        # One round trip for the three names (three scalar subqueries, no join to explain to the planner).
        cluster, snap, suite = s.execute(select(
            select(ClusterRow.name).where(ClusterRow.id == row.cluster_id).scalar_subquery(),
            select(SnapshotRow.digest).where(SnapshotRow.id == row.snapshot_id).scalar_subquery(),
            select(SuiteRow.digest).where(SuiteRow.id == row.suite_id).scalar_subquery())).one()
        with no_cycle_collection():  # tens of thousands of tuples and FlowResults, none of them in a cycle
            results = _apply_volatile(self._results(s, row.result_set_id), row.volatile)
        return Run(cluster, _iso(row.started_at), _iso(row.finished_at), row.trigger, snap, suite,
                   tuple(results), row.status, row.error, str(row.id), row.trigger_detail)

    def _summaries(self, s: Session, ids: list[int]) -> list[RunSummary]:
        if not ids:
            return []
        q = (select(RunRow, ClusterRow.name, SnapshotRow.digest, SuiteRow.digest, ResultSetRow.digest)
             .join(ClusterRow, ClusterRow.id == RunRow.cluster_id)
             .join(SnapshotRow, SnapshotRow.id == RunRow.snapshot_id)
             .join(SuiteRow, SuiteRow.id == RunRow.suite_id)
             .join(ResultSetRow, ResultSetRow.id == RunRow.result_set_id)
             .where(RunRow.id.in_(ids)))
        by_id = {}
        for row, cluster, snap, suite, rset in s.execute(q):
            by_id[row.id] = RunSummary(str(row.id), cluster, _iso(row.started_at), _iso(row.finished_at),
                                       row.trigger, row.status, row.known_good, row.accepted_by, snap, suite,
                                       row.n_results, row.n_violations, row.n_gaps, row.n_skipped, rset,
                                       row.trigger_detail)
        return [by_id[i] for i in ids if i in by_id]

    def _event(self, row: DriftEventRow, cluster: str) -> DriftEvent:
        cause = from_jsonable(Cause, json.loads(row.cause), "cause") if row.cause else None
        return DriftEvent(cluster, row.flow_key, row.kind, _iso(row.opened_at), row.detail, cause,
                          str(row.opened_run_id) if row.opened_run_id else None, _iso(row.resolved_at),
                          str(row.resolved_run_id) if row.resolved_run_id else None, row.resolution, str(row.id))


def _count_in_hour(s: Session, row: RunRow) -> None:
    """Adds the run to its hour's run_hours row: one atomic UPDATE (two writers of one cluster, a
    CronJob run beside serve, add up), or the INSERT of the hour's first run."""
    hour, worst, gaps, ms = _hour_values(row)
    table = RunHourRow.__table__
    changed = s.execute(
        update(table).where(table.c.cluster_id == row.cluster_id, table.c.hour == hour).values(
            runs=table.c.runs + 1,
            worst=case((table.c.worst < worst, worst), else_=table.c.worst),
            gaps=case((table.c.gaps < gaps, gaps), else_=table.c.gaps),
            longest_ms=table.c.longest_ms if ms is None else case(
                ((table.c.longest_ms.is_(None)) | (table.c.longest_ms < ms), ms), else_=table.c.longest_ms))
    ).rowcount
    if changed:
        return
    try:
        with s.begin_nested():
            s.execute(insert(table).values(cluster_id=row.cluster_id, hour=hour, runs=1, worst=worst,
                                           gaps=gaps, longest_ms=ms))
    except IntegrityError:  # another writer inserted the hour between our update and insert
        _count_in_hour(s, row)

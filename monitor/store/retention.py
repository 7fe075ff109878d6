"""Retention: deleting what is older than store.retention_days, and everything only it referenced.

It owns `prune`: old runs go except accepted runs and each current baseline; then snapshots, suites,
result sets and results no run needs, old resolved events and old sent alerts. One transaction.
It must not choose the retention (settings do) nor read the clock (`now` comes in).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from monitor.store.database import StoreBase
from monitor.store.encoding import _decode_ids, _dt
from monitor.store.runs import _count_in_hour, _hour_values
from monitor.store.schema import (
    RUNS_NEWEST_FIRST,
    AlertRow,
    DriftEventRow,
    FlowResultRow,
    ResultSetRow,
    RunHourRow,
    RunRow,
    SnapshotRow,
    SuiteRow,
)


@dataclass(frozen=True, slots=True)
class PruneReport:
    runs: int = 0
    snapshots: int = 0
    suites: int = 0
    result_sets: int = 0
    flow_results: int = 0
    events: int = 0
    alerts: int = 0


class Retention(StoreBase):
    """Pruning by age, keeping accepted runs and baselines."""

    def prune(self, now: str, retention_days: int) -> PruneReport:
        """Deletes runs older than the retention, except accepted runs and each current baseline; then
        everything only they referenced (snapshots, suites, result sets, results), old resolved events and
        old sent alerts. One transaction."""
        cutoff = _dt(now) - timedelta(days=retention_days)
        with self._guard("prune"), self._tx(write=True) as s:
            rank = func.row_number().over(partition_by=(RunRow.cluster_id, RunRow.suite_id),
                                          order_by=RUNS_NEWEST_FIRST).label("rank")
            ranked = select(RunRow.id, rank).where(RunRow.known_good.is_(True)).subquery()
            baselines = set(s.scalars(select(ranked.c.id).where(ranked.c.rank == 1)))
            doomed = [row for row in s.execute(select(RunRow.id, RunRow.cluster_id, RunRow.started_at)
                                               .where(RunRow.started_at < cutoff, RunRow.accepted_by.is_(None)))
                      if row.id not in baselines]
            hours = {(r.cluster_id, int(r.started_at.replace(tzinfo=UTC).timestamp()) // 3600) for r in doomed}
            doomed = [r.id for r in doomed]
            for i in range(0, len(doomed), 500):
                chunk = doomed[i:i + 500]
                s.execute(update(DriftEventRow).where(DriftEventRow.opened_run_id.in_(chunk))
                          .values(opened_run_id=None))
                s.execute(update(DriftEventRow).where(DriftEventRow.resolved_run_id.in_(chunk))
                          .values(resolved_run_id=None))
                s.execute(delete(RunRow).where(RunRow.id.in_(chunk)))
            self._recount_hours(s, hours)
            n_snap = s.execute(delete(SnapshotRow).where(SnapshotRow.id.not_in(select(RunRow.snapshot_id))
                                                         )).rowcount
            n_suite = s.execute(delete(SuiteRow).where(SuiteRow.id.not_in(select(RunRow.suite_id)))).rowcount
            n_sets = s.execute(delete(ResultSetRow).where(
                ResultSetRow.id.not_in(select(RunRow.result_set_id)))).rowcount
            live: set[int] = set()
            for blob in s.scalars(select(ResultSetRow.members)):
                live.update(_decode_ids(blob))
            dead = [i for i in s.scalars(select(FlowResultRow.id)) if i not in live]
            for i in range(0, len(dead), 500):
                s.execute(delete(FlowResultRow).where(FlowResultRow.id.in_(dead[i:i + 500])))
            n_events = s.execute(delete(DriftEventRow).where(DriftEventRow.resolved_at < cutoff)).rowcount
            n_alerts = s.execute(delete(AlertRow).where(AlertRow.sent_at < cutoff)).rowcount
        self._sets.clear()
        return PruneReport(len(doomed), n_snap, n_suite, n_sets, len(dead), n_events, n_alerts)

    def _recount_hours(self, s: Session, hours: set[tuple[int, int]]) -> None:
        """run_hours of the hours that lost runs, counted again from the runs left (accepted runs, baselines,
        the newer part of the cutoff's hour): all of them start before the end of the latest such hour."""
        if not hours:
            return
        for cluster_id in {c for c, _ in hours}:
            gone = sorted(h for c, h in hours if c == cluster_id)
            for i in range(0, len(gone), 500):
                s.execute(delete(RunHourRow).where(RunHourRow.cluster_id == cluster_id,
                                                   RunHourRow.hour.in_(gone[i:i + 500])))
        until = datetime.fromtimestamp((max(h for _, h in hours) + 1) * 3600, UTC).replace(tzinfo=None)
        for row in s.scalars(select(RunRow).where(RunRow.started_at < until)):
            hour = _hour_values(row)[0]
            if (row.cluster_id, hour) in hours:
                _count_in_hour(s, row)

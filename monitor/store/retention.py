"""Retention: deleting what is older than store.retention_days, and everything only it referenced.

It owns `prune`: old runs go except accepted runs and each current baseline; then snapshots, suites,
result sets and results no run needs, old resolved events and old sent alerts. One transaction.
It must not choose the retention (settings do) nor read the clock (`now` comes in).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, select, update

from monitor.store.database import StoreBase
from monitor.store.encoding import _decode_ids, _dt
from monitor.store.schema import (
    RUNS_NEWEST_FIRST,
    AlertRow,
    DriftEventRow,
    FlowResultRow,
    ResultSetRow,
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
            doomed = [i for i in s.scalars(select(RunRow.id).where(RunRow.started_at < cutoff,
                                                                   RunRow.accepted_by.is_(None)))
                      if i not in baselines]
            for i in range(0, len(doomed), 500):
                chunk = doomed[i:i + 500]
                s.execute(update(DriftEventRow).where(DriftEventRow.opened_run_id.in_(chunk))
                          .values(opened_run_id=None))
                s.execute(update(DriftEventRow).where(DriftEventRow.resolved_run_id.in_(chunk))
                          .values(resolved_run_id=None))
                s.execute(delete(RunRow).where(RunRow.id.in_(chunk)))
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

"""History queries: what `history`, `show`, `compare` and the dashboard read, newest first.

It owns listing runs (by cluster, before a time), one run in detail with the events it opened or resolved,
the latest run of a cluster, stored snapshots and suite texts, clusters and row counts.
It must not write (runs.py does) nor compare runs (compare.py does).
"""

from __future__ import annotations

import zlib

from sqlalchemy import func, select

from monitor.compare import DriftEvent
from monitor.models import Run, Snapshot
from monitor.snapshot import snapshot_from_json
from monitor.store.encoding import _dt, _iso
from monitor.store.runs import Runs, RunSummary
from monitor.store.schema import ClusterRow, DriftEventRow, RunRow, SnapshotRow, SuiteRow, metadata


class History(Runs):
    """Read-only queries over stored runs, snapshots and suites."""

    def get_run(self, run_id: str) -> Run:
        with self._guard("read run"), self._tx() as s:
            row = self._run_row(s, run_id)
            return self._run(s, row)

    def run_detail(self, run_id: str) -> tuple[RunSummary, Run, list[DriftEvent]]:
        """What `show` needs, in one transaction: the summary, the results, the events the run opened or
        resolved."""
        with self._guard("read run"), self._tx() as s:
            row = self._run_row(s, run_id)
            summary = self._summaries(s, [row.id])[0]
            q = (select(DriftEventRow).where((DriftEventRow.opened_run_id == row.id)
                                             | (DriftEventRow.resolved_run_id == row.id))
                 .order_by(DriftEventRow.id))
            events = [self._event(e, summary.cluster) for e in s.scalars(q)]
            return summary, self._run(s, row), events

    def summary(self, run_id: str) -> RunSummary:
        with self._guard("read run"), self._tx() as s:
            return self._summaries(s, [self._run_row(s, run_id).id])[0]

    def history(self, cluster: str | None = None, limit: int = 100, before: str | None = None) -> list[RunSummary]:
        """Newest first."""
        with self._guard("read history"), self._tx() as s:
            q = select(RunRow.id).order_by(RunRow.started_at.desc(), RunRow.id.desc()).limit(limit)
            if cluster is not None:
                cid = s.scalar(select(ClusterRow.id).where(ClusterRow.name == cluster))
                if cid is None:
                    return []
                q = q.where(RunRow.cluster_id == cid)
            if before is not None:
                q = q.where(RunRow.started_at <= _dt(before))
            return self._summaries(s, list(s.scalars(q)))

    def run_points(self, cluster: str, since: str | None = None) -> list[tuple]:
        """The dashboard's history chart: every run of a cluster since a time, oldest first, as light tuples
        (id, started_at, duration_s, results, violations, gaps, skipped, status, known_good): a year of
        5-minute runs is 105,000 of them, so no RunSummary objects and no joins."""
        with self._guard("read history"), self._tx() as s:
            cid = s.scalar(select(ClusterRow.id).where(ClusterRow.name == cluster))
            if cid is None:
                return []
            q = (select(RunRow.id, RunRow.started_at, RunRow.finished_at, RunRow.n_results, RunRow.n_violations,
                        RunRow.n_gaps, RunRow.n_skipped, RunRow.status, RunRow.known_good)
                 .where(RunRow.cluster_id == cid).order_by(RunRow.started_at, RunRow.id))
            if since is not None:
                q = q.where(RunRow.started_at >= _dt(since))
            return [(str(i), _iso(start), (end - start).total_seconds() if end else None, n, v, g, sk, st, kg)
                    for i, start, end, n, v, g, sk, st, kg in s.execute(q)]

    def latest_run(self, cluster: str, at: str | None = None) -> Run | None:
        runs = self.history(cluster, limit=1, before=at)
        return self.get_run(runs[0].id) if runs else None
    def table_counts(self) -> dict[str, int]:
        """Rows per table: for tests, the benchmark and `db current`."""
        with self._guard("count rows"), self._tx() as s:
            return {t.name: s.scalar(select(func.count()).select_from(t)) for t in metadata.sorted_tables}

    def clusters(self) -> list[str]:
        with self._guard("read clusters"), self._tx() as s:
            return list(s.scalars(select(ClusterRow.name).order_by(ClusterRow.name)))

    def snapshot(self, digest: str) -> Snapshot | None:
        with self._guard("read snapshot"), self._tx() as s:
            data = s.scalar(select(SnapshotRow.data).where(SnapshotRow.digest == digest))
        return snapshot_from_json(zlib.decompress(data)) if data is not None else None

    def suite_text(self, digest: str) -> str | None:
        with self._guard("read suite"), self._tx() as s:
            data = s.scalar(select(SuiteRow.data).where(SuiteRow.digest == digest))
        return zlib.decompress(data).decode() if data else None

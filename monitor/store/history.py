"""History queries: what `history`, `show`, `compare` and the dashboard read, newest first.

It owns listing runs (by cluster, before a time), one run in detail with the events it opened or resolved,
the latest run of a cluster, stored snapshots and suite texts, clusters and row counts, and the dashboard's
history chart aggregated per time bucket.
It must not write (runs.py does) nor compare runs (compare.py does).
"""

from __future__ import annotations

import zlib
from datetime import UTC

from sqlalchemy import func, select

from monitor.compare import DriftEvent
from monitor.models import FlowResult, Run, Snapshot
from monitor.snapshot import snapshot_from_json
from monitor.store.encoding import _apply_volatile, _decode_grid, _decode_ids, _dt, _fields_from_row, _int_id
from monitor.store.runs import _RESULT_COLUMNS, WORST_SPAN, Runs, RunSummary
from monitor.store.schema import (
    RUNS_NEWEST_FIRST,
    ClusterRow,
    DriftEventRow,
    FlowResultRow,
    ResultSetRow,
    RunHourRow,
    RunRow,
    SnapshotRow,
    SuiteRow,
    metadata,
)


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
            summary, events = self._head(s, row)
            return summary, self._run(s, row), events

    def run_head(self, run_id: str) -> tuple[RunSummary, str | None, list[DriftEvent]]:
        """run_detail without the results (summary, error, events): the dashboard reads the results only
        when it has not built that result set's page before."""
        with self._guard("read run"), self._tx() as s:
            row = self._run_row(s, run_id)
            summary, events = self._head(s, row)
            return summary, row.error, events

    def run_grid(self, run_id: str) -> list[dict] | None:
        """The grid of the run's result set as written with it (monitor.grid.grid, without drift marks);
        None for a set written before schema 0005 (the caller builds it from the results)."""
        with self._guard("read run"), self._tx() as s:
            blob = s.scalar(select(ResultSetRow.grid).join(RunRow, RunRow.result_set_id == ResultSetRow.id)
                            .where(RunRow.id == _int_id(run_id, "run")))
        return _decode_grid(blob) if blob is not None else None

    def run_results(self, run_id: str, limit: int) -> tuple[FlowResult, ...]:
        """The run's first `limit` results, in order (a page's flows table): reads only those members."""
        with self._guard("read run"), self._tx() as s:
            row = self._run_row(s, run_id)
            if row.result_set_id in self._sets or limit >= row.n_results:
                return self._run(s, row).results[:limit]
            ids = _decode_ids(s.scalar(select(ResultSetRow.members).where(ResultSetRow.id == row.result_set_id)),
                              limit)
            unique, fields = sorted(set(ids)), {}
            for i in range(0, len(unique), 900):
                fields.update((r.id, _fields_from_row(r)) for r in s.execute(
                    select(*_RESULT_COLUMNS).where(FlowResultRow.id.in_(unique[i:i + 900]))))
            return tuple(_apply_volatile([fields[i] for i in ids], row.volatile, row.n_results))

    def _head(self, s, row) -> tuple[RunSummary, list[DriftEvent]]:
        summary = self._summaries(s, [row.id])[0]
        q = (select(DriftEventRow).where((DriftEventRow.opened_run_id == row.id)
                                         | (DriftEventRow.resolved_run_id == row.id))
             .order_by(DriftEventRow.id))
        return summary, [self._event(e, summary.cluster) for e in s.scalars(q)]

    def summary(self, run_id: str) -> RunSummary:
        with self._guard("read run"), self._tx() as s:
            return self._summaries(s, [self._run_row(s, run_id).id])[0]

    def history(self, cluster: str | None = None, limit: int = 100, before: str | None = None) -> list[RunSummary]:
        """Newest first."""
        with self._guard("read history"), self._tx() as s:
            q = select(RunRow.id).order_by(*RUNS_NEWEST_FIRST).limit(limit)
            if cluster is not None:
                cid = s.scalar(select(ClusterRow.id).where(ClusterRow.name == cluster))
                if cid is None:
                    return []
                q = q.where(RunRow.cluster_id == cid)
            if before is not None:
                q = q.where(RunRow.started_at <= _dt(before))
            return self._summaries(s, list(s.scalars(q)))

    def run_buckets(self, cluster: str, since: str, bucket_seconds: int) -> list[tuple]:
        """The dashboard's history chart, aggregated in the database: per time bucket since `since`, oldest
        first, (bucket index, runs, worst run id, its violations, max gaps, its skipped, its ok, longest
        duration in seconds). The worst run has the most violations plus skipped cases, the latest of equals.
        Buckets of whole hours from a whole hour (windows of ~15 days and more) add up run_hours rows (a
        year: ~8,800 rows instead of 105,000 runs); shorter ones group the runs themselves."""
        with self._guard("read history"), self._tx() as s:
            cid = s.scalar(select(ClusterRow.id).where(ClusterRow.name == cluster))
            if cid is None:
                return []
            start = _dt(since)
            origin = start.replace(tzinfo=UTC).timestamp()
            if bucket_seconds % 3600 == 0 and origin % 3600 == 0:
                h = RunHourRow
                bucket = func.floor((h.hour * 3600 - int(origin)) / bucket_seconds)
                rows = [(b, n, w, g, None if ms is None else ms / 1000) for b, n, w, g, ms in s.execute(
                    select(bucket.label("b"), func.sum(h.runs), func.max(h.worst), func.max(h.gaps),
                           func.max(h.longest_ms))
                    .where(h.cluster_id == cid, h.hour >= int(origin) // 3600).group_by("b").order_by("b"))]
            else:
                rows = self._run_buckets_from_runs(s, cid, start, origin, bucket_seconds)
            worst_ids = [int(w % WORST_SPAN) for _, _, w, _, _ in rows]
            counts = {i: (n, v, sk) for i, n, v, sk in s.execute(
                select(RunRow.id, RunRow.n_results, RunRow.n_violations, RunRow.n_skipped)
                .where(RunRow.id.in_(worst_ids)))} if rows else {}
            out = []
            for (b, n, _, gaps, duration), rid in zip(rows, worst_ids, strict=True):
                results, violations, skipped = counts[rid]
                out.append((int(b), int(n), str(rid), violations, gaps, skipped,
                            max(0, results - violations - skipped),
                            None if duration is None else round(float(duration), 3)))
            return out

    def _run_buckets_from_runs(self, s, cid: int, start, origin: float, bucket_seconds: int) -> list[tuple]:
        if self.engine.dialect.name == "sqlite":
            def epoch(col):
                return func.julianday(col) * 86400.0
            offset = 2440587.5 * 86400.0  # julianday() of the Unix epoch, in seconds
        else:
            def epoch(col):
                return func.extract("epoch", col)
            offset = 0.0
        # The origin is a constant, not one more date function call per row.
        bucket = func.floor((epoch(RunRow.started_at) - (origin + offset)) / bucket_seconds)
        worst_key = (RunRow.n_violations + RunRow.n_skipped) * WORST_SPAN + RunRow.id
        return s.execute(select(bucket.label("b"), func.count(), func.max(worst_key), func.max(RunRow.n_gaps),
                                func.max(epoch(RunRow.finished_at) - epoch(RunRow.started_at)))
                         .where(RunRow.cluster_id == cid, RunRow.started_at >= start)
                         .group_by("b").order_by("b")).all()

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

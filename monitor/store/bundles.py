"""Export and import bundles: runs with their snapshots as JSON, for clusters that do not share a database.

It owns the bundle format (versioned by BUNDLE_SCHEMA), validating a whole bundle before anything is
written, and importing it in one transaction (runs already present are skipped).
It must not read files or print (cli/history.py does) nor re-judge drift on import.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import select

from monitor.compare import Transitions
from monitor.errors import InputError
from monitor.models import Run, Snapshot, to_jsonable
from monitor.snapshot import from_jsonable, snapshot_digest
from monitor.store.encoding import _dt
from monitor.store.runs import Runs
from monitor.store.schema import ClusterRow, RunRow, SnapshotRow

BUNDLE_FORMAT = "netpol-drift-bundle"
BUNDLE_SCHEMA = 1


@dataclass(frozen=True, slots=True)
class ImportReport:
    imported: tuple[str, ...] = ()  # new run ids
    skipped: int = 0  # runs already present (same cluster, start time and trigger)


class Bundles(Runs):
    """Runs out to a bundle and back in."""

    def export_bundle(self, run_ids: Iterable[str], now: str) -> dict:
        """A JSON-ready bundle of runs with their snapshots, for clusters that do not share a database."""
        with self._guard("export"), self._tx() as s:
            rows = [self._run_row(s, rid) for rid in run_ids]
            runs, snapshots = [], {}
            for row in rows:
                run = self._run(s, row)
                entry = to_jsonable(run)
                entry["known_good"], entry["accepted_by"] = row.known_good, row.accepted_by
                runs.append(entry)
                if run.snapshot_digest not in snapshots:
                    data = s.scalar(select(SnapshotRow.data).where(SnapshotRow.id == row.snapshot_id))
                    snapshots[run.snapshot_digest] = json.loads(zlib.decompress(data))
        return {"format": BUNDLE_FORMAT, "schema": BUNDLE_SCHEMA, "exported_at": now, "runs": runs,
                "snapshots": snapshots}

    def cluster_run_ids(self, cluster: str) -> list[str]:
        with self._guard("read runs"), self._tx() as s:
            q = (select(RunRow.id).join(ClusterRow, ClusterRow.id == RunRow.cluster_id)
                 .where(ClusterRow.name == cluster).order_by(RunRow.started_at, RunRow.id))
            ids = [str(i) for i in s.scalars(q)]
        if not ids:
            raise InputError(f"no runs of cluster {cluster!r} (see netpol-drift history)")
        return ids

    def import_bundle(self, bundle: Any, now: str) -> ImportReport:
        """All runs of the bundle, or none: validated first, written in one transaction."""
        runs, snapshots = parse_bundle(bundle)
        with self._guard("import"), self._tx(write=True) as s:
            imported, skipped = [], 0
            for run, known_good, accepted_by in runs:
                exists = s.scalar(select(RunRow.id).join(ClusterRow, ClusterRow.id == RunRow.cluster_id)
                                  .where(ClusterRow.name == run.cluster, RunRow.started_at == _dt(run.started_at),
                                         RunRow.trigger == run.trigger))
                if exists is not None:
                    skipped += 1
                    continue
                rid = self._save(s, replace(run, id=None), now=_dt(now), snapshot=snapshots[run.snapshot_digest],
                                 suite_text=None, known_good=known_good, transitions=Transitions(),
                                 accepted_by=accepted_by)
                imported.append(str(rid))
        return ImportReport(tuple(imported), skipped)


def parse_bundle(bundle: Any) -> tuple[list[tuple[Run, bool, str | None]], dict[str, Snapshot]]:
    """Validates a bundle completely before anything is written. Raises InputError naming what is wrong."""
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise InputError(f"not a {BUNDLE_FORMAT} (no \"format\": \"{BUNDLE_FORMAT}\")")
    schema = bundle.get("schema")
    if not isinstance(schema, int) or isinstance(schema, bool):
        raise InputError("bundle has no integer \"schema\"", field="schema")
    if schema > BUNDLE_SCHEMA:
        raise InputError(f"bundle schema {schema} is newer than this netpol-drift reads ({BUNDLE_SCHEMA}); "
                         "upgrade netpol-drift to import it")
    raw_snaps = bundle.get("snapshots")
    raw_runs = bundle.get("runs")
    if not isinstance(raw_snaps, dict):
        raise InputError("must be an object of snapshots by digest", field="snapshots")
    if not isinstance(raw_runs, list):
        raise InputError("must be a list of runs", field="runs")
    snapshots = {}
    for digest, raw in raw_snaps.items():
        snap = from_jsonable(Snapshot, raw, "snapshot")
        if snapshot_digest(snap) != digest:
            raise InputError(f"content does not match its digest {digest}", field=f"snapshots.{digest}")
        snapshots[digest] = snap
    runs = []
    for i, raw in enumerate(raw_runs):
        if not isinstance(raw, dict):
            raise InputError("must be an object", field=f"runs[{i}]")
        raw = dict(raw)
        known_good, accepted_by = raw.pop("known_good", False), raw.pop("accepted_by", None)
        if not isinstance(known_good, bool) or not (accepted_by is None or isinstance(accepted_by, str)):
            raise InputError("known_good must be true/false and accepted_by a string", field=f"runs[{i}]")
        run = from_jsonable(Run, raw, f"runs[{i}]")
        if run.snapshot_digest not in snapshots:
            raise InputError(f"snapshot {run.snapshot_digest} is not in the bundle", field=f"runs[{i}]")
        for t in (run.started_at, run.finished_at):
            _dt(t)
        runs.append((run, known_good, accepted_by))
    return runs, snapshots

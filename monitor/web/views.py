"""What each dashboard page shows, as plain JSON-ready dicts: the page renders them, /api/ returns them as-is.

One function per page, from the store (handed in, already open) and compare.py; the reachability grid of a
stored run comes from the store (built by monitor.grid when its result set was written) with the run's drift
marked here, and the offline `matrix --format html` builds its own. Building one dict for both the page and
its JSON twin is what keeps them equal.
This module must not import starlette, jinja2 or the store package (the store object comes in), nor decide
drift (compare.py does) or read the clock.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from monitor.grid import flow_state, grid, with_drift
from monitor.models import FlowResult, Snapshot, Verdict, to_jsonable

STATE_TEXT = {"violation": "observed contradicts the suite's expectation",
              "gap": "observed contradicts what the policies say (enforcement gap)",
              "unobserved": "not observed (skipped or unknown)", "allow": "reachable, as expected",
              "deny": "blocked, as expected"}
FLOW_FILTERS = ("all", "violation", "gap", "unobserved", "drift")
CHART_POINTS = 366  # history chart: at most this many bars (one more for the window's start), runs bucketed
CHART_BUCKETS = (300, 600, 900, 1800, 3600, 2 * 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 2 * 86400, 5 * 86400,
                 10 * 86400)


def iso_seconds(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def flow_row(r: FlowResult, state: str, drift: bool = False) -> dict:
    return {"key": r.key, "case": r.case, "source": r.source, "destination": r.destination, "port": r.port,
            "protocol": r.protocol, "expected": r.expected.value, "intent": r.intent.value,
            "outcome": r.outcome.value, "verdict": r.verdict.value, "latency_ms": r.latency_ms,
            "attempts": r.attempts, "explanation": r.explanation, "reason": r.reason, "node": r.node,
            "state": state, "drift": drift}


def offline_grid(flows: Iterable[Any]) -> list[dict]:
    """analyze.MatrixFlow rows as a grid: only what the policies say is known offline."""
    results = []
    for f in flows:
        v = Verdict.ALLOW if f.allowed else Verdict.DENY
        results.append(FlowResult("matrix", f.source, f.destination, f.port, f.protocol, v, v,
                                  explanation=f.reason))
    return grid(results, ["allow" if r.intent is Verdict.ALLOW else "deny" for r in results], offline=True)


# ---------------------------------------------------------------------------------------------- pages
def summary_row(s: Any) -> dict:
    d = to_jsonable(s)
    d["ok"] = max(0, s.results - s.violations - s.skipped)
    d["duration_s"] = (iso_seconds(s.finished_at) - iso_seconds(s.started_at)) if s.finished_at else None
    return d


def event_row(e: Any) -> dict:
    d = to_jsonable(e)
    d["cause_text"] = e.cause.describe() if e.cause else ""
    return d


def clusters_view(store: Any) -> dict:
    clusters = []
    for name in store.clusters():
        last = store.history(name, limit=1)
        if not last:
            continue
        summary = last[0]
        good = store.known_good(name, summary.suite_digest)
        open_events = store.open_events(name)
        clusters.append({
            "name": name, "last_run": summary_row(summary),
            "open_events": {k: sum(1 for e in open_events if e.kind == k) for k in ("drift", "violation", "gap")},
            "last_known_good": {"id": good.id, "started_at": good.started_at} if good else None})
    return {"clusters": clusters}


def history_view(store: Any, cluster: str, *, days: int, now: str | None = None) -> dict | None:
    """The runs of the last `days` days (up to the cluster's latest run), bucketed for the chart, and every
    drift event of the window on a timeline. None: no such cluster."""
    latest = store.history(cluster, limit=1)
    if not latest:
        return None
    end = iso_seconds(now or latest[0].started_at) + 1
    # Bars of a round size (5 min ... 10 days) from a multiple of it: whole hours and days read the store's
    # per-hour aggregates, and a bar is a day (or an hour) a reader can name.
    bucket = next((b for b in CHART_BUCKETS if b * CHART_POINTS >= days * 86400), CHART_BUCKETS[-1])
    start = (int(end) - days * 86400) // bucket * bucket
    bars = {}
    for i, n, run, violated, gaps, skipped, ok, duration in store.run_buckets(cluster, _iso(start), bucket):
        bars[i] = {"run": run, "bucket_start": _iso(start + i * bucket), "runs": n, "ok": ok, "violated": violated,
                   "gaps": gaps, "skipped": skipped, "drifted": 0, "duration_s": duration}
    events = [event_row(e) for e in store.events(cluster, limit=1000)
              if iso_seconds(e.opened_at) >= start]
    for e in events:
        i = int((iso_seconds(e["opened_at"]) - start) // bucket)
        if i in bars and e["kind"] == "drift":
            bars[i]["drifted"] += 1
        e["x"] = max(0.0, min(1.0, (iso_seconds(e["opened_at"]) - start) / (end - start or 1)))
    series = [dict(b, x=(i * bucket) / (end - start or 1)) for i, b in sorted(bars.items())]
    recent = [summary_row(s) for s in store.history(cluster, limit=20)]
    return {"cluster": cluster, "days": days, "from": _iso(start), "to": _iso(end), "bucket_seconds": bucket,
            "bar_fraction": bucket / (end - start or 1), "runs": sum(b["runs"] for b in bars.values()),
            "max_flows": max((b["ok"] + b["violated"] + b["skipped"] for b in series), default=0),
            "longest_s": max((b["duration_s"] for b in series if b["duration_s"] is not None), default=0),
            "series": series, "events": events, "recent": recent}


def run_view(store: Any, run_id: str, *, state: str = "all", q: str = "", limit: int = 500,
             cache: Any = None) -> dict:
    """The run's grid as the store wrote it with its result set, with this run's drift marked, and the flows
    table: the first `limit` flows read alone when nothing is filtered, else every result classified.
    `cache` (get and item assignment) keeps grids by result-set digest (immutable): the runs of a quiet
    cluster share one set."""
    summary, error, events = store.run_head(run_id)
    drift_keys = frozenset(e.flow_key for e in events if e.kind == "drift" and e.opened_run == summary.id)
    grids = cache.get(summary.result_set) if cache is not None else None
    results = None
    if grids is None:
        grids = store.run_grid(run_id)
        if grids is None:  # a result set written before the store kept grids
            results = store.get_run(run_id).results
            grids = grid(results)
        if cache is not None:
            cache[summary.result_set] = grids
    if state == "all" and not q:
        shown = [flow_row(r, flow_state(r), r.key in drift_keys)
                 for r in (results[:limit] if results is not None else store.run_results(run_id, limit))]
        matching = summary.results
    else:
        needle = q.lower()
        shown, matching = [], 0
        for r in results if results is not None else store.get_run(run_id).results:
            st = flow_state(r)
            if (state == "all" or (r.key in drift_keys if state == "drift" else st == state)) \
                    and (not needle or needle in f"{r.case} {r.source} {r.destination} {r.port}".lower()):
                matching += 1
                if len(shown) < limit:
                    shown.append(flow_row(r, st, r.key in drift_keys))
    return {"run": summary_row(summary), "error": error, "events": [event_row(e) for e in events],
            "grids": with_drift(grids, drift_keys) if drift_keys else grids,
            "filter": {"state": state, "q": q, "limit": limit, "matching": matching}, "flows": shown}


def _aligned(f: Any, cause: Any = None) -> dict:
    def side(r: FlowResult | None) -> dict | None:
        return None if r is None else {"outcome": r.outcome.value, "verdict": r.verdict.value,
                                       "intent": r.intent.value, "expected": r.expected.value,
                                       "state": flow_state(r)}
    kind = "same" if f.same else ("only_a" if f.b is None else "only_b" if f.a is None else "differs")
    return {"key": f.key, "a": side(f.a), "b": side(f.b), "kind": kind,
            "cause": cause.describe() if cause else ""}


_ORDER = {"differs": 0, "only_a": 1, "only_b": 2, "same": 3}


def _counts(flows: Sequence[dict]) -> dict:
    return {k: sum(1 for f in flows if f["kind"] == k) for k in _ORDER}


def compare_runs_view(store: Any, a_id: str, b_id: str) -> dict:
    from monitor.compare import align_runs, diff_runs

    a, b = store.get_run(a_id), store.get_run(b_id)
    snap_a, snap_b = store.snapshot(a.snapshot_digest), store.snapshot(b.snapshot_digest)
    diff = diff_runs(a, b, snap_a, snap_b)
    causes = {f.key: c for f, c in diff.flows}
    flows = sorted((_aligned(f, causes.get(f.key)) for f in align_runs(a, b)),
                   key=lambda f: (_ORDER[f["kind"]], f["key"]))
    return {"a": _run_ref(a), "b": _run_ref(b), "counts": _counts(flows),
            "snapshot_changes": diff.changes.describe() if diff.changes else [], "flows": flows}


def compare_clusters_view(store: Any, a_name: str, b_name: str, mapping: Mapping[str, str],
                          at: str | None) -> dict:
    from monitor.compare import align_runs

    a, b = store.latest_run(a_name, at), store.latest_run(b_name, at)
    missing = [n for n, r in ((a_name, a), (b_name, b)) if r is None]
    if missing:
        raise LookupError(f"no run of cluster {missing[0]!r}" + (f" at or before {at}" if at else ""))
    flows = sorted((_aligned(f) for f in align_runs(a, b, mapping)), key=lambda f: (_ORDER[f["kind"]], f["key"]))
    return {"a": _run_ref(a), "b": _run_ref(b), "namespace_map": dict(mapping), "at": at,
            "counts": _counts(flows), "flows": flows}


def _run_ref(r: Any) -> dict:
    return {"id": r.id, "cluster": r.cluster, "started_at": r.started_at}


def snapshot_diff_view(store: Any, a_id: str, b_id: str) -> dict:
    """Policies (as unified diffs of their canonical JSON) and labels (added/removed/changed) between the
    snapshots of two runs."""
    from monitor.snapshot import diff_snapshots

    a, b = store.get_run(a_id), store.get_run(b_id)
    snap_a, snap_b = store.snapshot(a.snapshot_digest), store.snapshot(b.snapshot_digest)
    out: dict = {"a": _run_ref(a), "b": _run_ref(b), "same_snapshot": a.snapshot_digest == b.snapshot_digest,
                 "stored": snap_a is not None and snap_b is not None, "policies": [], "labels": [], "other": []}
    if not out["stored"]:
        return out
    for c in diff_snapshots(snap_a, snap_b).changes:
        if c.kind in ("policy", "admin_policy"):
            old, new = _pretty(c.old), _pretty(c.new)
            out["policies"].append({"key": c.key, "kind": c.kind, "action": c.action,
                                    "diff": list(difflib.unified_diff(old, new, f"run {a.id}", f"run {b.id}",
                                                                      lineterm="", n=3))})
        elif c.kind in ("namespace", "pod") and c.action == "changed" and c.labels:
            d = c.labels
            out["labels"].append({"kind": c.kind, "key": c.key, "added": [list(x) for x in d.added],
                                  "removed": [list(x) for x in d.removed], "changed": [list(x) for x in d.changed]})
        else:
            out["other"].append(c.describe())
    return out


def _pretty(obj: Any) -> list[str]:
    """A policy as YAML, label pairs as mappings: what `kubectl get -o yaml` readers scan easily."""
    import yaml

    def readable(v: Any, key: str = "") -> Any:
        if isinstance(v, dict):
            return {k: readable(x, k) for k, x in v.items() if x not in (None, [], {})}
        if isinstance(v, list):
            if key in ("labels", "match_labels") and all(isinstance(x, list) and len(x) == 2 for x in v):
                return {k: x for k, x in v}
            return [readable(x) for x in v]
        return v
    return [] if obj is None else yaml.safe_dump(readable(to_jsonable(obj)), sort_keys=False,
                                                 default_flow_style=False).splitlines()


def _iso(ts: float) -> str:
    from datetime import UTC

    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def offline_matrix_view(snapshot: Snapshot, flows: Iterable[Any]) -> dict:
    return {"pods": [p.ref for p in snapshot.pods], "grids": offline_grid(flows)}

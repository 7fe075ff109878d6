"""What each dashboard page shows, as plain JSON-ready dicts: the page renders them, /api/ returns them as-is.

One function per page, from the store (handed in, already open) and compare.py; the reachability grid is
built here too, for a stored run and for the offline `matrix --format html`. Building one dict for both the
page and its JSON twin is what keeps them equal.
This module must not import starlette, jinja2 or the store package (the store object comes in), nor decide
drift (compare.py does) or read the clock.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from monitor.models import FlowResult, Snapshot, Verdict, to_jsonable

# A cell of the grid holds every flow of its (source, destination, port); it shows the worst of them.
STATES = ("violation", "gap", "unobserved", "allow", "deny")  # worst first
STATE_TEXT = {"violation": "observed contradicts the suite's expectation",
              "gap": "observed contradicts what the policies say (enforcement gap)",
              "unobserved": "not observed (skipped or unknown)", "allow": "reachable, as expected",
              "deny": "blocked, as expected"}
EXPLANATION_CHARS = 400  # a hover text, not a report: the flows table and the API have it whole
FLOW_FILTERS = ("all", "violation", "gap", "unobserved", "drift")
CHART_POINTS = 366  # history chart: at most this many bars, runs bucketed by time beyond it


def iso_seconds(ts: str) -> float:
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def flow_state(r: FlowResult) -> str:
    if r.violation:
        return "violation"
    if r.enforcement_gap:
        return "gap"
    if not r.observed:
        return "unobserved"
    return "allow" if r.verdict == Verdict.ALLOW else "deny"


def flow_row(r: FlowResult, drift: bool = False) -> dict:
    return {"key": r.key, "case": r.case, "source": r.source, "destination": r.destination, "port": r.port,
            "protocol": r.protocol, "expected": r.expected.value, "intent": r.intent.value,
            "outcome": r.outcome.value, "verdict": r.verdict.value, "latency_ms": r.latency_ms,
            "attempts": r.attempts, "explanation": r.explanation, "reason": r.reason, "node": r.node,
            "state": flow_state(r), "drift": drift}


# ------------------------------------------------------------------------------------------------ grid
def _cell_title(src: str, dst: str, port: str, flows: Sequence[dict]) -> str:
    lines = [f"{src} -> {dst} {port}"]
    for f in flows:
        seen = "not observed" if f["state"] == "unobserved" and f["outcome"] == "skipped" else \
            f"{f['verdict']} ({f['outcome']})"
        lines.append(f"[{f['case']}] expected {f['expected']}, policies say {f['intent']}, observed {seen}"
                     + (" - DRIFT" if f["drift"] else ""))
        text = f["explanation"] or f["reason"]
        if text:
            lines.append(text if len(text) <= EXPLANATION_CHARS else text[:EXPLANATION_CHARS - 1] + "…")
    return "\n".join(lines)


def grid(rows: Iterable[dict]) -> list[dict]:
    """Flow rows (flow_row or offline matrix rows) to one grid per port: sources x destinations, each
    cell {state, drift, mark, title}; None where no flow was planned."""
    by_port: dict[str, dict[tuple[str, str], list[dict]]] = {}
    for f in rows:
        by_port.setdefault(f"{f['port']}/{f['protocol']}", {}).setdefault((f["source"], f["destination"]),
                                                                          []).append(f)
    rank = {s: i for i, s in enumerate(STATES)}
    grids = []
    for port in sorted(by_port, key=lambda p: (p.split("/")[1], int(p.split("/")[0]))):
        cells = by_port[port]
        sources = sorted({s for s, _ in cells})
        destinations = sorted({d for _, d in cells})
        matrix = []
        for s in sources:
            line = []
            for d in destinations:
                flows = cells.get((s, d))
                if not flows:
                    line.append(None)
                    continue
                worst = min(flows, key=lambda f: rank[f["state"]])
                observed = worst["verdict"] if worst["verdict"] in ("allow", "deny") else None
                shown = observed or worst["intent"]
                line.append({"state": worst["state"], "drift": any(f["drift"] for f in flows),
                             "mark": {"allow": "✓", "deny": "✗"}.get(shown, "?"),
                             "title": _cell_title(s, d, port, flows)})
            matrix.append(line)
        counts = {st: sum(1 for line in matrix for c in line if c and c["state"] == st) for st in STATES}
        grids.append({"port": port, "sources": sources, "destinations": destinations, "cells": matrix,
                      "counts": counts})
    return grids


def offline_rows(flows: Iterable[Any]) -> list[dict]:
    """analyze.MatrixFlow rows in the grid's shape: only what the policies say is known offline."""
    rows = []
    for f in flows:
        v = "allow" if f.allowed else "deny"
        rows.append({"case": "matrix", "source": f.source, "destination": f.destination, "port": f.port,
                     "protocol": f.protocol, "expected": v, "intent": v, "outcome": "skipped", "verdict": v,
                     "explanation": f.reason, "reason": "", "state": v, "drift": False})
    return rows


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
    end = iso_seconds(now or latest[0].started_at)
    start = end - days * 86400
    points = store.run_points(cluster, since=_iso(start))
    bucket = max(300.0, (end - start) / CHART_POINTS)
    bars: dict[int, dict] = {}
    for p in points:  # (id, started_at, duration_s, results, violations, gaps, skipped, status, known_good)
        i = int((iso_seconds(p[1]) - start) // bucket)
        b = bars.get(i)
        ok = max(0, p[3] - p[4] - p[6])
        if b is None:
            bars[i] = {"run": p[0], "started_at": p[1], "runs": 1, "ok": ok, "violated": p[4], "gaps": p[5],
                       "skipped": p[6], "drifted": 0, "duration_s": p[2], "status": p[7], "known_good": p[8]}
            continue
        b["runs"] += 1
        if (p[4], p[6]) >= (b["violated"], b["skipped"]):  # the bar shows the worst run of its bucket
            b.update(run=p[0], started_at=p[1], ok=ok, violated=p[4], gaps=p[5], skipped=p[6], status=p[7])
        if p[2] is not None and (b["duration_s"] is None or p[2] > b["duration_s"]):
            b["duration_s"] = p[2]
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
            "bar_fraction": bucket / (end - start or 1), "runs": len(points),
            "max_flows": max((b["ok"] + b["violated"] + b["skipped"] for b in series), default=0),
            "longest_s": max((b["duration_s"] for b in series if b["duration_s"] is not None), default=0),
            "series": series, "events": events, "recent": recent}


def run_view(store: Any, run_id: str, *, state: str = "all", q: str = "", limit: int = 500) -> dict:
    summary, run, events = store.run_detail(run_id)
    drift_keys = {e.flow_key for e in events if e.kind == "drift" and e.opened_run == run.id}
    rows = [flow_row(r, r.key in drift_keys) for r in run.results]
    needle = q.lower()
    shown = [r for r in rows
             if (state == "all" or (r["drift"] if state == "drift" else r["state"] == state))
             and (not needle or needle in f"{r['case']} {r['source']} {r['destination']} {r['port']}".lower())]
    return {"run": summary_row(summary), "error": run.error, "events": [event_row(e) for e in events],
            "grids": grid(rows), "filter": {"state": state, "q": q, "limit": limit, "matching": len(shown)},
            "flows": shown[:limit]}


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
    return {"pods": [p.ref for p in snapshot.pods], "grids": grid(offline_rows(flows))}

"""Sub-commands of the history part: history, show, accept, diff RUN RUN, compare, export, import, db ...

Parse, open the store, call store/compare/snapshot, print: tables for people, JSON for scripts. The database
URL is --db or the store.url setting (password from NETPOL_DRIFT_DATABASE_PASSWORD). The clock is read once
per command. `diff` itself is registered by the offline part, which hands two run ids to run_diff_command.
This module must not hold drift logic (compare.py) nor touch the database other than through monitor.store.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from monitor.errors import InputError, syntax_error
from monitor.models import FlowResult, to_jsonable
from monitor.render import Painter, stdout_painter, table
from monitor.settings import load_settings

if TYPE_CHECKING:
    from monitor.compare import AlignedFlow

FORMATS = ("table", "json")


def register(sub: argparse._SubParsersAction) -> None:
    def common(p: argparse.ArgumentParser, formats: bool = True) -> None:
        p.add_argument("--db", metavar="URL", help="database URL (default: the store.url setting)")
        if formats:
            p.add_argument("--format", choices=FORMATS, default="table")

    p = sub.add_parser("history", help="stored runs, newest first",
                       description="Stored runs, newest first, with their counts and known-good marks.")
    p.add_argument("--cluster", metavar="NAME", help="only this cluster")
    p.add_argument("--limit", type=int, default=20, metavar="N", help="at most N runs (default 20)")
    common(p)
    p.set_defaults(func=history_command)

    p = sub.add_parser("show", help="one stored run: every flow with expected, intent, observed",
                       description="One stored run in detail, with the drift events it opened or resolved.")
    p.add_argument("run", metavar="RUN")
    common(p)
    p.set_defaults(func=show_command)

    p = sub.add_parser("accept", help="declare a run the known-good baseline of its cluster and suite")
    p.add_argument("run", metavar="RUN")
    p.add_argument("--by", metavar="NAME", help="who accepts (default: the current user)")
    common(p)
    p.set_defaults(func=accept_command)

    p = sub.add_parser("compare", help="the latest runs of two clusters, flow by flow",
                       description="Aligns the latest runs of two clusters (at or before --at) by flow key. "
                                   "Exit 0 when every common flow agrees, 1 when some differ.")
    p.add_argument("--cluster", action="append", default=[], metavar="NAME", help="give exactly two")
    p.add_argument("--at", metavar="TIME", help="ISO 8601 time: the latest runs at or before it")
    p.add_argument("--map-namespace", action="append", default=[], metavar="A_NS=B_NS",
                   help="namespace A_NS of the first cluster is B_NS in the second (repeatable)")
    p.add_argument("--all", action="store_true", help="list equal flows too")
    common(p, formats=False)
    p.add_argument("--format", choices=(*FORMATS, "markdown"), default="table")
    p.set_defaults(func=compare_command)

    p = sub.add_parser("export", help="runs as a JSON bundle on stdout (for clusters sharing no database)")
    p.add_argument("run", nargs="?", metavar="RUN")
    p.add_argument("--cluster", metavar="NAME", help="every run of this cluster")
    common(p, formats=False)
    p.set_defaults(func=export_command)

    p = sub.add_parser("import", help="store the runs of a bundle written by export (all or nothing)")
    p.add_argument("file", metavar="FILE")
    common(p, formats=False)
    p.set_defaults(func=import_command)

    p = sub.add_parser("db", help="database schema: upgrade, downgrade, current")
    db_sub = p.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    u = db_sub.add_parser("upgrade", help="create or migrate the schema (default: to the newest revision)")
    u.add_argument("revision", nargs="?", default="head")
    common(u, formats=False)
    u.set_defaults(func=db_command)
    d = db_sub.add_parser("downgrade", help="migrate the schema back to REVISION (`base`: drop everything)")
    d.add_argument("revision")
    common(d, formats=False)
    d.set_defaults(func=db_command)
    c = db_sub.add_parser("current", help="the schema revision of the database")
    common(c, formats=False)
    c.set_defaults(func=db_command)
    r = db_sub.add_parser("prune", help="delete runs older than the retention (store.retention_days), "
                                        "keeping accepted runs and each current known-good baseline")
    r.add_argument("--days", type=int, metavar="N", help="override store.retention_days")
    common(r, formats=False)
    r.set_defaults(func=db_command)


# --------------------------------------------------------------------------------------------- helpers
def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _db(args: argparse.Namespace) -> tuple[str, str | None]:
    settings = load_settings(getattr(args, "config", None))
    return (getattr(args, "db", None) or settings.store.url), settings.secrets.database_password


def _open(args: argparse.Namespace):
    from monitor.store import Store  # local: the offline commands never pay for importing SQLAlchemy

    url, password = _db(args)
    return Store.open(url, password=password)


def _dump(data: Any) -> None:
    # Compact: the C encoder is only used without indent, and a run is 500 results (pipe to jq to read).
    sys.stdout.write(json.dumps(data, separators=(",", ":")) + "\n")


def _result_json(r: FlowResult) -> dict:
    # Spelled out rather than to_jsonable: `show --format json` converts 500 of these per run.
    return {"case": r.case, "source": r.source, "destination": r.destination, "port": r.port,
            "protocol": r.protocol, "expected": r.expected.value, "intent": r.intent.value,
            "outcome": r.outcome.value, "verdict": r.verdict.value, "latency_ms": r.latency_ms,
            "attempts": r.attempts, "explanation": r.explanation, "reason": r.reason, "node": r.node,
            "key": r.key, "violation": r.violation, "enforcement_gap": r.enforcement_gap}


def _mark(summary) -> str:
    if summary.accepted_by:
        return f"accepted by {summary.accepted_by}"
    return "yes" if summary.known_good else ""


def _count(n: int, colour: str, paint: Painter) -> str:
    return paint(str(n), colour) if n else "0"


# -------------------------------------------------------------------------------------------- history
def history_command(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise InputError(f"must be at least 1, got {args.limit}", field="--limit")
    with _open(args) as store:
        runs = store.history(args.cluster, limit=args.limit)
    if args.format == "json":
        _dump({"runs": [to_jsonable(r) for r in runs]})
        return 0
    if not runs:
        print("no runs stored" + (f" for cluster {args.cluster}" if args.cluster else ""))
        return 0
    paint = stdout_painter()
    rows = [[r.id, r.cluster, r.started_at, r.trigger, r.status, str(r.results),
             _count(r.violations, "red", paint), _count(r.gaps, "yellow", paint), str(r.skipped), _mark(r)]
            for r in runs]
    print(table(["RUN", "CLUSTER", "STARTED", "TRIGGER", "STATUS", "FLOWS", "VIOLATIONS", "GAPS", "SKIPPED",
                 "KNOWN-GOOD"], rows, paint))
    return 0


# ----------------------------------------------------------------------------------------------- show
def show_command(args: argparse.Namespace) -> int:
    with _open(args) as store:
        summary, run, events = store.run_detail(args.run)
    if args.format == "json":
        _dump({"run": {**to_jsonable(summary), "results": [_result_json(r) for r in run.results]},
               "events": [to_jsonable(e) for e in events]})
        return 0
    paint = stdout_painter()
    trigger = f"{run.trigger} ({run.trigger_detail})" if run.trigger_detail else run.trigger
    print(f"run {run.id} of {run.cluster}: {run.started_at} .. {run.finished_at or '?'}, {trigger}, "
          f"{run.status}{' (' + run.error + ')' if run.error else ''}")
    print(f"snapshot {run.snapshot_digest}  suite {run.suite_digest}  known-good: {_mark(summary) or 'no'}")
    print(table(["CASE", "SOURCE", "DESTINATION", "PORT", "EXPECTED", "INTENT", "OUTCOME", "VERDICT",
                 "LATENCY", "NOTE"], [_result_row(r, paint) for r in run.results], paint))
    for e in events:
        what = "opened" if e.opened_run == run.id else "resolved"
        cause = f" cause: {e.cause.describe()}" if e.cause and what == "opened" else ""
        print(f"{paint(what, 'red' if what == 'opened' else 'green')} {e.kind} {e.flow_key}: {e.detail}{cause}")
    return 0


def _result_row(r: FlowResult, paint: Painter) -> list[str]:
    note = []
    if r.violation:
        note.append(paint("violation", "red"))
    if r.enforcement_gap:
        note.append(paint("gap", "yellow"))
    if r.reason:
        note.append(r.reason)
    latency = "" if r.latency_ms is None else f"{r.latency_ms:g} ms"
    return [r.case, r.source, r.destination, f"{r.port}/{r.protocol}", str(r.expected), str(r.intent),
            str(r.outcome), str(r.verdict), latency, ", ".join(note)]


# --------------------------------------------------------------------------------------------- accept
def accept_command(args: argparse.Namespace) -> int:
    by = args.by or getpass.getuser()
    with _open(args) as store:
        summary = store.accept(args.run, by=by, now=_now())
    if args.format == "json":
        _dump(to_jsonable(summary))
    else:
        print(f"run {summary.id} of {summary.cluster} ({summary.started_at}) is now the known-good baseline, "
              f"accepted by {by}")
    return 0


# ---------------------------------------------------------------------------------------- diff / compare
def _row(f: AlignedFlow) -> dict:
    """A flow of two runs as `diff` and `compare` print it (and as their JSON has it)."""
    def side(r: FlowResult | None) -> dict | None:
        return {"outcome": str(r.outcome), "verdict": str(r.verdict), "intent": str(r.intent)} if r else None

    return {"key": f.key, "a": side(f.a), "b": side(f.b), "same": f.same}


def _side(d: dict | None) -> str:
    return "-" if d is None else f"{d['verdict']} ({d['outcome']})"


def run_diff_command(args: argparse.Namespace, run_a: str, run_b: str) -> int:
    """`netpol-drift diff RUN RUN`: flows whose outcome differs, and the snapshot changes that explain them.
    Exit 0 when no flow differs, 1 otherwise."""
    from monitor.compare import diff_runs

    with _open(args) as store:
        a, b = store.get_run(run_a), store.get_run(run_b)
        snap_a, snap_b = store.snapshot(a.snapshot_digest), store.snapshot(b.snapshot_digest)
    result = diff_runs(a, b, snap_a, snap_b)
    changes, rows = result.changes, []
    for f, cause in result.flows:
        rows.append({**_row(f), "cause": to_jsonable(cause) if cause else None,
                     "cause_text": cause.describe() if cause else ""})
    fmt = getattr(args, "format", "table")
    if fmt == "json":
        _dump({"a": a.id, "b": b.id, "snapshot_changes": changes.describe() if changes else [],
               "flows": [{k: v for k, v in r.items() if k != "cause_text"} for r in rows]})
        return 1 if rows else 0
    if fmt == "markdown":
        from monitor.report.markdown import run_diff_markdown

        sys.stdout.write(run_diff_markdown(a.id, b.id, changes.describe() if changes else [],
                                           [(r["key"], _side(r["a"]), _side(r["b"]), r["cause_text"])
                                            for r in rows]))
        return 1 if rows else 0
    paint = stdout_painter()
    print(f"run {a.id} ({a.cluster}, {a.started_at}) -> run {b.id} ({b.cluster}, {b.started_at})")
    if changes:
        for line in changes.describe():
            print(f"  {line}")
    if not rows:
        print("no flow changed")
        return 0
    print(table(["FLOW", f"RUN {a.id}", f"RUN {b.id}", "CAUSE"],
                [[r["key"], _side(r["a"]), paint(_side(r["b"]), "yellow"), r["cause_text"]] for r in rows], paint))
    return 1


def compare_command(args: argparse.Namespace) -> int:
    if len(args.cluster) != 2:
        raise InputError(f"give exactly two clusters, got {len(args.cluster)}", field="--cluster")
    from monitor.compare import align_runs, parse_namespace_map

    mapping = parse_namespace_map(args.map_namespace, "--map-namespace")
    at = args.at
    if at is not None:
        try:
            datetime.fromisoformat(at)
        except ValueError:
            raise InputError(f"not an ISO 8601 time: {at!r}", field="--at") from None
    name_a, name_b = args.cluster
    with _open(args) as store:
        a, b = store.latest_run(name_a, at), store.latest_run(name_b, at)
    for name, run in ((name_a, a), (name_b, b)):
        if run is None:
            when = f" at or before {at}" if at else ""
            raise InputError(f"no run of cluster {name!r}{when} (see netpol-drift history)")
    rows = [_row(f) for f in align_runs(a, b, mapping)]
    differing = [r for r in rows if not r["same"] and r["a"] and r["b"]]
    only_a = [r for r in rows if r["b"] is None]
    only_b = [r for r in rows if r["a"] is None]
    if args.format == "json":
        _dump({"a": {"cluster": name_a, "run": a.id, "started_at": a.started_at},
               "b": {"cluster": name_b, "run": b.id, "started_at": b.started_at},
               "namespace_map": mapping, "same": len(rows) - len(differing) - len(only_a) - len(only_b),
               "flows": rows if args.all else [r for r in rows if not r["same"]]})
        return 1 if differing else 0
    shown = rows if args.all else [r for r in rows if not r["same"]]
    counts = (f"{len(rows) - len(differing) - len(only_a) - len(only_b)} flows agree, "
              f"{len(differing)} differ, {len(only_a)} only in {name_a}, {len(only_b)} only in {name_b}")
    if args.format == "markdown":
        from monitor.report.markdown import compare_markdown

        sys.stdout.write(compare_markdown(name_a, a.id, name_b, b.id,
                                          [(r["key"], _side(r["a"]), _side(r["b"])) for r in shown], counts,
                                          ok=not differing))
        return 1 if differing else 0
    paint = stdout_painter()
    print(f"{name_a}: run {a.id} ({a.started_at})   {name_b}: run {b.id} ({b.started_at})")
    if shown:
        print(table(["FLOW", name_a, name_b], [[r["key"], _side(r["a"]), paint(_side(r["b"]), None if r["same"]
                                                                                 else "yellow")]
                                              for r in shown], paint))
    print(counts)
    return 1 if differing else 0


# -------------------------------------------------------------------------------------- export / import
def export_command(args: argparse.Namespace) -> int:
    if bool(args.run) == bool(args.cluster):
        raise InputError("give a run id or --cluster NAME (one of them)", field="export")
    now = _now()
    with _open(args) as store:
        ids = [args.run] if args.run else store.cluster_run_ids(args.cluster)
        bundle = store.export_bundle(ids, now=now)
    json.dump(bundle, sys.stdout, separators=(",", ":"), sort_keys=True)
    sys.stdout.write("\n")
    return 0


def import_command(args: argparse.Namespace) -> int:
    path = args.file
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror}", file=path) from e
    try:
        bundle = json.loads(text)
    except ValueError as e:
        raise syntax_error(e, "JSON", file=path) from e
    from monitor.store import parse_bundle

    try:
        parse_bundle(bundle)  # validate before opening the database: a bad file never touches it
    except InputError as e:
        raise e.located(file=path) from e
    with _open(args) as store:
        report = store.import_bundle(bundle, now=_now())
    print(f"imported {len(report.imported)} runs ({report.skipped} already present)")
    return 0


# ------------------------------------------------------------------------------------------------- db
def db_command(args: argparse.Namespace) -> int:
    from monitor import store

    url, password = _db(args)
    if args.db_command == "prune":
        days = args.days if args.days is not None else load_settings(getattr(args, "config", None)).store.retention_days
        if days < 1:
            raise InputError(f"must be at least 1, got {days}", field="--days")
        with _open(args) as s:
            report = s.prune(_now(), days)
        print(f"pruned {report.runs} runs older than {days} days ({report.snapshots} snapshots, "
              f"{report.result_sets} result sets, {report.flow_results} results, {report.events} events, "
              f"{report.alerts} sent alerts)")
        return 0
    if args.db_command == "upgrade":
        rev = store.upgrade(url, args.revision, password=password)
        print(f"{store.safe_url(url)}: schema at revision {rev}")
    elif args.db_command == "downgrade":
        rev = store.downgrade(url, args.revision, password=password)
        print(f"{store.safe_url(url)}: schema at revision {rev or 'base (empty)'}")
    else:
        rev = store.current_revision(url, password=password)
        head = store.head_revision()
        state = "current" if rev == head else f"needs upgrade to {head}"
        print(f"{store.safe_url(url)}: revision {rev or 'none'} ({state})")
    return 0

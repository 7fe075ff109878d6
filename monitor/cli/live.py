"""Sub-commands of the live part: `run`, `suite generate` and `probe-agent`. Parse, call, print; no logic.

This module must import nothing heavy at module level: `probe-agent` starts in every probe pod, so the
cluster adapter, engine and planner are imported inside the commands that need them.
"""

from __future__ import annotations

import argparse
import sys


def register(sub: argparse._SubParsersAction) -> None:
    from monitor.cli import offline
    from monitor.probe import agent

    p = sub.add_parser("probe-agent", help="(inside probe pods) probe targets, write the termination message",
                       description="Probes every target in parallel and writes the compact result to the "
                                   "termination message file. Runs inside probe pods; needs no API access.")
    agent.add_arguments(p)
    p.set_defaults(func=lambda a: agent.run_agent(a.targets, a.timeout, a.result_file, a.settle,
                                                              a.passes))

    p = sub.add_parser("run", help="snapshot the cluster, probe the suite with real packets, report, store",
                       description="Snapshots the cluster, plans the suite, probes it with short-lived probe "
                                   "pods and prints per case: expected, policies say, observed, verdict. "
                                   "With a database (--db or store.url; --no-store to skip) the run is "
                                   "stored and compared with the last known-good run: changed flows are "
                                   "re-probed and each confirmed drift is printed with its cause. "
                                   "Exit 0 when every case was probed and meets its expectation, 1 when some "
                                   "do not or could not be verified (skipped, partial, unknown; drift alone "
                                   "does not change it), 2 on bad input, an unreachable cluster or database.")
    p.add_argument("--once", action="store_true", required=True,
                   help="one run, then exit (the scheduled service is `netpol-drift serve`)")
    p.add_argument("--suite", metavar="FILE", help="suite file (default: the `suite` setting)")
    p.add_argument("--format", choices=("table", "json"), default="table")
    _add_junit_flag(p)
    _cluster_flags(p)
    p.add_argument("--per-node", action="store_true", default=None,
                   help="one probe pod per source per node (default: the probe.per_node setting)")
    p.add_argument("--via-cluster-ip", action="store_true",
                   help="for Service destinations, probe the ClusterIP too (needs a service proxy)")
    offline.add_allow_skipped(p)
    store = p.add_mutually_exclusive_group()
    store.add_argument("--db", metavar="URL", help="database URL (default: the store.url setting; a missing "
                                                   "SQLite file is created)")
    store.add_argument("--no-store", action="store_true", help="do not store the run nor judge drift")
    p.set_defaults(func=run_command)

    p = sub.add_parser("suite", help="work with suite files")
    suite_sub = p.add_subparsers(dest="suite_command", metavar="SUBCOMMAND", required=True)
    g = suite_sub.add_parser("generate", help="write a baseline suite from what the policies say today",
                             description="One case per ordered pair of workload identities on the "
                                         "destination's declared ports, allowed and denied, expectation = "
                                         "the engine's verdict, as a commented YAML suite for review.")
    g.add_argument("--namespace", action="append", default=[], metavar="NS",
                   help="only workloads of this namespace (repeatable; default: all)")
    g.add_argument("--max-cases", type=int, metavar="N", help="at most N cases (allowed and denied mixed)")
    g.add_argument("--manifests", metavar="DIR", help="read manifests instead of a live cluster")
    offline.add_pod_cidr(g)
    g.add_argument("--output", "-o", metavar="FILE", help="write here instead of stdout")
    _cluster_flags(g)
    g.set_defaults(func=generate_command)


def _add_junit_flag(p: argparse.ArgumentParser) -> None:
    from monitor.cli.outputs import add_junit_flag

    add_junit_flag(p)


def _cluster_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--kubeconfig", metavar="FILE", help="kubeconfig (default: cluster.kubeconfig setting, "
                                                        "$KUBECONFIG merged as kubectl does, in-cluster config, "
                                                        "~/.kube/config)")
    p.add_argument("--context", help="kubeconfig context (default: cluster.context setting or current)")


def _settings(args: argparse.Namespace):
    import dataclasses

    from monitor.settings import load_settings

    settings = load_settings(args.config)
    if getattr(args, "per_node", None):
        settings = dataclasses.replace(settings, probe=dataclasses.replace(settings.probe, per_node=True))
    return settings


def _connect(args: argparse.Namespace, settings):
    from monitor.cluster import ClusterAdapter

    return ClusterAdapter.connect(settings.cluster, kubeconfig=args.kubeconfig, context=args.context)


def _terminate_gracefully() -> None:
    """SIGTERM becomes SystemExit so that the runner's cleanup (deleting its probe pods) still runs."""
    import signal

    def handler(signum: int, frame: object) -> None:
        # Only the first one interrupts: a second SIGTERM must not cut the cleanup that the first started.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


def _open_store(args: argparse.Namespace, settings):
    import logging

    from monitor.store import Store, is_new_sqlite

    # Creating a first database runs the migrations: Alembic's INFO lines are noise in a run's report.
    logging.getLogger("alembic").setLevel(max(logging.WARNING, logging.getLogger().getEffectiveLevel()))

    url = args.db or settings.store.url
    # The first run creates the SQLite file and its schema; an existing database must already be current
    # (`netpol-drift db upgrade`): a run never migrates a shared database behind its operators' backs.
    return Store.open(url, password=settings.secrets.database_password, migrate=is_new_sqlite(url))


def run_command(args: argparse.Namespace) -> int:
    import logging
    import uuid
    from datetime import UTC, datetime
    from pathlib import Path

    from monitor.errors import InputError
    from monitor.run import record_run, reprobe, run_once
    from monitor.suite import load_suite

    settings = _settings(args)
    logging.basicConfig(level=settings.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    suite_path = args.suite or settings.suite
    if not suite_path:
        raise InputError("no suite: give --suite FILE or set `suite` in the config")
    suite = load_suite(suite_path)
    suite_text = Path(suite_path).read_text(encoding="utf-8")
    # Opened before probing: a database that cannot be reached fails the run before it costs any probe pod.
    store = None if args.no_store else _open_store(args, settings)
    _terminate_gracefully()
    now = datetime.now(UTC)  # the one reading of the wall clock for this run
    run_id = uuid.uuid4().hex[:10]
    recorded = None
    from monitor.render import progress_on_terminal

    try:
        # On a terminal, stderr shows where the run is (probe pods, flows observed); piped, nothing.
        with progress_on_terminal() as progress:
            progress.stage("connecting to the cluster")
            adapter = _connect(args, settings)
            try:
                live = run_once(adapter, suite, settings, now, run_id, via_cluster_ip=args.via_cluster_ip,
                                progress=progress)
                if store is not None:
                    progress.stage("comparing with the known-good run, storing")
                    recorded = record_run(store, live, settings, now, suite_text,
                                          lambda flows, n: reprobe(adapter, live, flows, settings,
                                                                   f"{run_id}-c{n}", progress=progress))
            finally:
                adapter.close()
    finally:
        if store is not None:
            store.close()
    from monitor.cli import warn

    for text in live.warnings:
        warn(f"cluster {live.run.cluster}: {text}")
    _write_junit(args, live, suite)
    code = live.exit_code(args.allow_skipped)
    if args.format == "json":
        _print_json(live, suite, recorded, code)
    else:
        _print_table(live, suite, recorded)
        from monitor.cli.offline import print_unverified

        print_unverified([c.status for c in live.cases], args.allow_skipped)
    return code


def _write_junit(args: argparse.Namespace, live, suite) -> None:
    from datetime import datetime

    from monitor.cli.outputs import write_junit
    from monitor.report import from_live

    run = live.run
    write_junit(args.junit, suite.name, [from_live(c) for c in live.cases],
                started_at=datetime.fromisoformat(run.started_at), finished_at=datetime.fromisoformat(run.finished_at),
                hostname=run.cluster, properties={"cluster": run.cluster, "run": run.id,
                                                  "snapshot_digest": run.snapshot_digest,
                                                  "suite_digest": run.suite_digest})


def _drift_rows(live, recorded) -> list[dict]:
    """One entry per flow that changed since known-good: confirmed drift with its cause, or a blip/pending."""
    if recorded is None:
        return []
    j = recorded.judgement
    out = []
    for f in j.assessment.changed:
        conf = j.confirmation
        state = ("confirmed" if f.key in conf.confirmed else "blip" if f.key in conf.rejected else "pending")
        cause = j.causes.get(f.key)
        r = f.result
        out.append({"key": f.key, "case": r.case, "source": r.source, "destination": r.destination,
                    "port": r.port, "protocol": r.protocol, "known_good": str(f.baseline_outcome),
                    "observed": str(r.outcome), "state": state, "cause": cause, "cause_text":
                    cause.describe() if cause else ""})
    return out


def _print_json(live, suite, recorded, code: int) -> None:
    import json

    from monitor.models import to_jsonable

    run = live.run
    drift = _drift_rows(live, recorded)
    by_case: dict[str, list[str]] = {}
    for d in drift:
        by_case.setdefault(d["case"], []).append(d["state"])
    data = {"run": run.id, "cluster": run.cluster, "suite": suite.name, "ok": code == 0,
            "verified": all(c.status == "pass" for c in live.cases),
            "snapshot_digest": run.snapshot_digest, "suite_digest": run.suite_digest,
            "started_at": run.started_at, "finished_at": run.finished_at, "status": run.status,
            "probe_pods": live.probe_pods, "warnings": list(live.warnings),
            "cases": [{"name": c.name, "expect": c.expected.value, "result": c.status,
                       "intent": c.intent, "observed": c.observed, "verdict": c.verdict,
                       "enforcement_gap": c.enforcement_gap, "explanation": c.explanation,
                       "drift": "confirmed" in by_case.get(c.name, ()),
                       "flows": [to_jsonable(f) | {"violation": f.violation,
                                                   "enforcement_gap": f.enforcement_gap}
                                 for f in c.flows]}
                      for c in live.cases],
            "stored": recorded is not None}
    if recorded is not None:
        t = recorded.judgement.transitions
        data |= {"stored_run": recorded.stored_id, "baseline_run": recorded.baseline_id,
                 "known_good": recorded.judgement.known_good, "reprobe_rounds": recorded.reprobe_rounds,
                 "drift": [d | {"cause": to_jsonable(d["cause"])} for d in drift],
                 "events_opened": [{"kind": e.kind, "flow": e.flow_key} for e in t.opened],
                 "events_resolved": len(t.resolved),
                 "resolutions": [{"kind": r.kind, "flow": r.flow_key, "resolution": r.resolution}
                                 for r in t.resolved],
                 "not_known_good_because": list(recorded.judgement.not_known_good_because)}
    json.dump(data, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _print_table(live, suite, recorded) -> None:
    from monitor.render import stdout_painter, table

    run = live.run
    drift = _drift_rows(live, recorded)
    paint = stdout_painter()
    colour = {"pass": "green", "fail": "red", "partial": "yellow", "unknown": "yellow", "skipped": "yellow"}
    drift_mark = {"confirmed": paint("DRIFT", "red"), "blip": "blip", "pending": "unconfirmed"}
    per_case: dict[str, str] = {}
    for d in drift:  # the strongest state of any of the case's flows
        if d["state"] == "confirmed" or d["case"] not in per_case:
            per_case[d["case"]] = drift_mark[d["state"]]
    rows = []
    for c in live.cases:
        result = paint(c.status.upper(), colour[c.status])
        gap = paint("GAP", "magenta") if c.enforcement_gap else ""
        rows.append([result, c.name, c.expected.value, c.intent, c.observed, c.verdict, gap,
                     per_case.get(c.name, ""), c.explanation[:160]])
    print(table(["RESULT", "CASE", "EXPECT", "POLICIES SAY", "OBSERVED", "VERDICT", "", "DRIFT", "WHY"], rows,
                paint))
    counts = {s: sum(1 for c in live.cases if c.status == s)
              for s in ("pass", "fail", "partial", "unknown", "skipped")}
    gaps = sum(1 for c in live.cases if c.enforcement_gap)
    print(f"\n{suite.name} on {run.cluster}: " + ", ".join(f"{n} {s}" for s, n in counts.items() if n)
          + f"; {gaps} enforcement gap(s); {live.probe_pods} probe pod(s) in {live.probe_seconds:.1f}s; "
            f"run {run.id}, snapshot {run.snapshot_digest[:19]}")
    if recorded is None:
        print("not stored (--no-store)")
        return
    confirmed = [d for d in drift if d["state"] == "confirmed"]
    if recorded.baseline_id is None:
        print("\nno known-good run of this cluster and suite yet: nothing to drift from")
    elif not drift:
        print(f"\nno drift since known-good run {recorded.baseline_id}")
    else:
        print(f"\nDRIFT since known-good run {recorded.baseline_id}: {len(confirmed)} confirmed, "
              f"{len(drift) - len(confirmed)} not confirmed by {recorded.reprobe_rounds} re-probe round(s)")
        for d in drift:
            flow = f"{d['case']} {d['source']} -> {d['destination']} {d['port']}/{d['protocol']}"
            head = f"  {drift_mark[d['state']]} {flow}: {d['known_good']} -> {d['observed']}"
            print(head + (f"\n      cause: {d['cause_text']}" if d["cause_text"] else
                          "  (seen once, not again on re-probe)" if d["state"] == "blip" else ""))
    t = recorded.judgement.transitions
    mark = "known-good" if recorded.judgement.known_good else "not known-good"
    if not recorded.judgement.known_good and recorded.judgement.not_known_good_because:
        mark += ": " + "; ".join(recorded.judgement.not_known_good_because)
    print(f"stored as run {recorded.stored_id} ({mark}); {len(t.opened)} event(s) opened, "
          f"{len(t.resolved)} resolved: netpol-drift show {recorded.stored_id}")
    for r in t.resolved:
        print(f"  resolved {r.kind} {r.flow_key}: {r.resolution}")


def generate_command(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from monitor.engine import Engine
    from monitor.errors import InputError
    from monitor.plan import generate_cases, render_suite_yaml

    if args.max_cases is not None and args.max_cases < 1:
        raise InputError("--max-cases must be at least 1")
    from monitor.render import progress_on_terminal

    cidrs = None
    # On a terminal, stderr shows the stage and the source identities done; piped, nothing.
    with progress_on_terminal() as progress:
        if args.manifests:
            from monitor.cli.offline import pod_cidrs
            from monitor.manifests import load_manifests

            progress.stage(f"reading manifests in {args.manifests}")
            snapshot = load_manifests(args.manifests)
            source = f"manifests in {args.manifests}"
            cidrs = pod_cidrs(args, (snapshot,))
        else:
            from monitor.snapshot import take_snapshot

            settings = _settings(args)
            progress.stage("connecting to the cluster")
            adapter = _connect(args, settings)
            try:
                progress.stage("reading the cluster (snapshot)")
                snapshot = take_snapshot(adapter, datetime.now(UTC))
            finally:
                adapter.close()
            source = f"cluster {settings.cluster.name} ({adapter.server})"
        from monitor.analyze import admin_tie_warnings
        from monitor.cli import warn

        for text in admin_tie_warnings(snapshot):
            warn(f"{source}: {text}")
        known = {n.name for n in snapshot.namespaces}
        for ns in args.namespace:
            if ns not in known:
                raise InputError(f"namespace {ns!r} does not exist", field="--namespace")
        engine = Engine(snapshot, cidrs) if cidrs else Engine(snapshot)
        progress.stage("generating cases: source identities done")
        cases = generate_cases(snapshot, tuple(args.namespace), args.max_cases, engine.decide,
                               progress=progress.steps)
    text = render_suite_yaml(cases, source)
    if args.output:
        try:
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(text)
        except OSError as e:
            raise InputError(f"cannot write: {e.strerror}", file=args.output) from e
        print(f"wrote {len(cases)} case(s) to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0

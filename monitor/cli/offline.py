"""Sub-commands of the offline analyzer: `matrix`, `check`, `diff` (DESIGN.md's stable contracts).

Parse, call monitor.analyze, print. Table output is for people (aligned, coloured on a terminal); JSON and
tsv are for scripts and keep their shape.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime

from monitor import analyze, report
from monitor.cli import outputs, warn
from monitor.errors import InputError
from monitor.manifests import load_manifests
from monitor.models import PROTOCOLS, UNVERIFIED_STATUSES, Snapshot, Verdict, suite_exit_code, to_jsonable
from monitor.render import Painter, stdout_painter, table
from monitor.report import markdown
from monitor.suite import load_suite, validate_suite


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("matrix", help="who can reach whom, from manifests",
                       description="Reachability between every ordered pair of pods in a manifests directory.")
    p.add_argument("--manifests", required=True, metavar="DIR", help="directory of .yaml/.yml/.json manifests")
    p.add_argument("--port", action="append", default=[], metavar="PORT/PROTOCOL",
                   help="port to evaluate (repeatable; default: every port some pod declares)")
    p.add_argument("--format", choices=("table", "json", "tsv", "html"), default="table",
                   help="html: one self-contained page with the dashboard's coloured grid (CI artifacts, reviews)")
    add_pod_cidr(p)
    p.set_defaults(func=matrix_command)

    p = sub.add_parser("check", help="evaluate a suite against manifests, statically",
                       description="Exit 0 when every case was evaluated and meets its expectation, 1 when some "
                                   "do not or could not be evaluated (skipped, unknown), 2 on bad input.")
    p.add_argument("--manifests", required=True, metavar="DIR")
    p.add_argument("--suite", required=True, metavar="FILE")
    p.add_argument("--format", choices=("table", "json", "markdown"), default="table")
    add_allow_skipped(p)
    add_pod_cidr(p)
    outputs.add_junit_flag(p)
    p.set_defaults(func=check_command)

    p = sub.add_parser("diff", help="flows whose verdict differs between two manifest sets (or two stored runs)",
                       description="netpol-drift diff --before DIR --after DIR, or netpol-drift diff RUN RUN.")
    p.add_argument("runs", nargs="*", metavar="RUN", help="two stored run ids (history)")
    p.add_argument("--before", metavar="DIR")
    p.add_argument("--after", metavar="DIR")
    p.add_argument("--db", metavar="URL", help="database URL for a run diff (default: store.url setting)")
    p.add_argument("--format", choices=("table", "json", "markdown"), default="table")
    add_pod_cidr(p)
    p.set_defaults(func=diff_command)


def snapshot_of(directory: str) -> Snapshot:
    """The snapshot of a manifests directory, with a warning on stderr for what its policies leave open."""
    snapshot = load_manifests(directory)
    for text in analyze.admin_tie_warnings(snapshot):
        warn(f"{directory}: {text}")
    return snapshot


def add_pod_cidr(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pod-cidr", action="append", default=[], metavar="CIDR",
                   help="where pods without an IP in the manifests are assumed to be (repeatable or "
                        "comma-separated; the first is the primary family; default: cluster.pod_cidrs, "
                        "private IPv4 space)")


def pod_cidrs(args: argparse.Namespace, snapshots: tuple = ()) -> tuple[str, ...]:
    """--pod-cidr, else the cluster.pod_cidrs setting; prints the address-model warnings of the snapshots."""
    if args.pod_cidr:
        from monitor.settings import parse_cidrs

        cidrs = parse_cidrs(",".join(args.pod_cidr), "command line", "--pod-cidr")
    else:
        from monitor.settings import load_settings

        cidrs = load_settings(args.config).cluster.pod_cidrs
    for snapshot in snapshots:
        for line in analyze.address_warnings(snapshot, cidrs):
            warn(line)
    return cidrs


def add_allow_skipped(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-skipped", action="store_true",
                   help="exit 0 even when some cases could not be verified (skipped, partial, unknown); "
                        "failing cases still exit 1")


def print_unverified(statuses: list[str], allow_skipped: bool) -> None:
    """The closing line that says why a suite with no failure still exits 1 (or why it does not)."""
    unverified = sum(1 for s in statuses if s in UNVERIFIED_STATUSES)
    if not unverified:
        return
    if allow_skipped:
        print(f"{unverified} case(s) not verified, accepted by --allow-skipped")
    else:
        print(f"{unverified} case(s) not verified (skipped, partial or unknown): exit 1; "
              f"--allow-skipped accepts them")


def parse_port(text: str) -> tuple[int, str]:
    number, _, proto = text.partition("/")
    proto = (proto or "TCP").upper()
    if not number.isdigit() or not 1 <= int(number) <= 65535 or proto not in PROTOCOLS:
        raise InputError(f"invalid port {text!r} (expected PORT/PROTOCOL such as 80/TCP)", field="--port")
    return int(number), proto


# ------------------------------------------------------------------------------------------------ matrix
def matrix_command(args: argparse.Namespace) -> int:
    ports = [parse_port(p) for p in args.port]
    snapshot = snapshot_of(args.manifests)
    cidrs = pod_cidrs(args, (snapshot,))
    out = sys.stdout
    if args.format == "tsv":
        # Streamed: big clusters produce ~10^8 lines, written as bytes a chunk per source pod.
        out.flush()
        write = out.buffer.write
        for chunk in analyze.connection_lines(snapshot, cidrs):
            write(chunk)
        return 0
    ports = ports or analyze.declared_ports(snapshot)
    flows = list(analyze.matrix_flows(snapshot, ports, cidrs))
    pods = [p.ref for p in snapshot.pods]
    if args.format == "html":
        from monitor.web.matrix_page import render_matrix_html  # local: jinja2 only for this format

        out.write(render_matrix_html(snapshot, flows, source=str(args.manifests)))
        return 0
    if args.format == "json":
        json.dump({"pods": pods, "flows": [
            {"from": f.source, "to": f.destination, "port": f.port, "protocol": f.protocol,
             "allowed": f.allowed, "reason": f.reason} for f in flows]}, out, indent=2)
        out.write("\n")
        return 0
    out.write(render_matrix_table(pods, ports, flows, stdout_painter()) + "\n")
    return 0


def render_matrix_table(pods: list[str], ports: list[tuple[int, str]], flows: list[analyze.MatrixFlow],
                        paint: Painter) -> str:
    if not pods:
        return "no pods in the manifests"
    if not ports:
        return "no ports declared by any pod: pass --port PORT/PROTOCOL"
    index = {p: i for i, p in enumerate(pods)}
    grid = {(f.source, f.destination, f.port, f.protocol): f.allowed for f in flows}
    blocks = []
    for port, proto in ports:
        headers = [f"{proto}/{port}  from \\ to", *[str(i + 1) for i in range(len(pods))]]
        rows = []
        for src in pods:
            row = [f"{index[src] + 1:>2} {src}"]
            for dst in pods:
                if src == dst:
                    row.append(paint("·", "grey"))
                else:
                    ok = grid[(src, dst, port, proto)]
                    row.append(paint("✓", "green") if ok else paint("✗", "red"))
            rows.append(row)
        blocks.append(table(headers, rows, paint))
    legend = paint("✓ allowed  ✗ denied  · same pod; columns are the numbered pods", "grey")
    return "\n\n".join(blocks) + "\n" + legend


# ------------------------------------------------------------------------------------------------- check
def check_command(args: argparse.Namespace) -> int:
    started = datetime.now(UTC)
    snapshot = snapshot_of(args.manifests)
    suite = load_suite(args.suite)
    validate_suite(suite, snapshot)
    checks = analyze.check_suite(snapshot, suite, pod_cidrs(args, (snapshot,)))
    code = suite_exit_code([c.status for c in checks], args.allow_skipped)
    outputs.write_junit(args.junit, suite.name, [report.from_check(c) for c in checks], started_at=started,
                        finished_at=datetime.now(UTC), hostname=None,
                        properties={"manifests": args.manifests, "suite_digest": suite.digest})
    if args.format == "markdown":
        sys.stdout.write(markdown.check_markdown(suite.name, [report.from_check(c) for c in checks],
                                                 f"manifests {args.manifests}"))
    elif args.format == "json":
        json.dump({"suite": suite.name, "ok": code == 0,
                   "verified": all(c.status == "pass" for c in checks), "cases": [
            {"name": c.name, "from": c.source, "to": c.destination, "ports": c.ports, "protocol": c.protocol,
             "expect": c.expected.value, "result": c.status,
             "flows": [{"from": f.source, "to": f.destination, "port": f.port, "protocol": f.protocol,
                        "intent": f.intent.value, "reason": f.explanation or f.reason} for f in c.flows]}
            for c in checks]}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        paint = stdout_painter()
        colour = {"pass": "green", "fail": "red", "partial": "yellow", "unknown": "yellow", "skipped": "yellow"}
        rows = []
        for c in checks:
            intents = {f.intent for f in c.flows if f.intent in (Verdict.ALLOW, Verdict.DENY)}
            intent = "/".join(sorted(v.value for v in intents)) or "-"
            rows.append([paint(c.status.upper(), colour[c.status]), c.name, c.source, c.destination,
                         f"{c.ports}/{c.protocol}", c.expected.value, intent,
                         "" if c.status == "pass" else c.summary])
        print(table(["RESULT", "CASE", "FROM", "TO", "PORT", "EXPECT", "POLICIES SAY", "WHY"], rows, paint))
        counts = {s: sum(1 for c in checks if c.status == s) for s in ("pass", "fail", "skipped")}
        others = {s: sum(1 for c in checks if c.status == s) for s in ("partial", "unknown")}
        print(f"\n{suite.name}: {counts['pass']} passed, {counts['fail']} failed, {counts['skipped']} skipped"
              + "".join(f", {n} {s}" for s, n in others.items() if n))
        print_unverified([c.status for c in checks], args.allow_skipped)
    return code


# -------------------------------------------------------------------------------------------------- diff
def diff_command(args: argparse.Namespace) -> int:
    if args.runs:
        if len(args.runs) != 2 or args.before or args.after:
            raise InputError("give two run ids, or --before DIR --after DIR", field="diff")
        from monitor.cli import history

        return history.run_diff_command(args, args.runs[0], args.runs[1])
    if not args.before or not args.after:
        raise InputError("needs --before DIR and --after DIR (or two run ids)", field="diff")
    before, after = snapshot_of(args.before), snapshot_of(args.after)
    changes, policies = analyze.reachability_diff(before, after, pod_cidrs(args, (before, after)))
    pods = analyze.one_sided_pods(analyze.diff_snapshots(before, after), before, after)
    if args.format == "markdown":
        lines = [f"policy {label}: {ref}" for label, refs in (("added", policies.added), ("removed",
                 policies.removed), ("changed", policies.changed)) for ref in refs]
        lines += [f"pod {c.action}: {(c.new or c.old).ref}" for c in pods]
        sys.stdout.write(markdown.flow_diff_markdown(args.before, args.after, changes, lines))
        return 0
    if args.format == "json":
        json.dump({"policy_changes": to_jsonable(policies),
                   "pods_added": sorted(c.new.ref for c in pods if c.action == "added"),
                   "pods_removed": sorted(c.old.ref for c in pods if c.action == "removed"), "flows": [
            {"from": c.source, "to": c.destination, "before": c.before, "after": c.after, "added": c.added,
             "removed": c.removed, "causes": list(c.causes), "change": c.change, "reason": c.reason}
            for c in changes]}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    paint = stdout_painter()
    for label, refs, colour in (("added", policies.added, "green"), ("removed", policies.removed, "red"),
                                ("changed", policies.changed, "yellow")):
        for ref in refs:
            print(f"policy {paint(label, colour)}: {ref}")
    for c in pods:
        pod = c.new or c.old
        mine = sum(1 for f in changes if f.change == c.action and pod.ref in (f.source, f.destination))
        print(f"pod {paint(c.action, 'green' if c.action == 'added' else 'red')}: {pod.ref}"
              + (f" ({pod.workload})" if pod.workload else "") + f", {mine} allowed flow(s) to or from it")
    if not changes:
        print("no flow changed")
        return 0
    rows = [[c.source, c.destination, c.before, c.after,
             paint("+" + c.added, "green") if c.added else "", paint("-" + c.removed, "red") if c.removed else "",
             "; ".join(c.causes) + (f" ({c.reason})" if c.reason else "")] for c in changes]
    print(table(["FROM", "TO", "BEFORE", "AFTER", "GAINED", "LOST", "CAUSE"], rows, paint))
    counts = {k: sum(1 for c in changes if c.change == k) for k in ("changed", "added", "removed")}
    print(f"\n{counts['changed']} flow(s) changed" + "".join(
        f", {n} flow(s) of {k} pods" for k, n in counts.items() if n and k != "changed"))
    return 0

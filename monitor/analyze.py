"""Offline analysis on snapshots: the flow matrix, static suite checks, and reachability diffs.

The functions here turn a snapshot (and a suite) into frozen results that the CLI prints; they decide
nothing about presentation and do no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from monitor.engine import ConnSet, Engine
from monitor.engine.matrix import bits_of, class_matrix
from monitor.models import FlowResult, Outcome, Pod, Snapshot, Verdict
from monitor.suite import Suite, expand_case


@dataclass(frozen=True, slots=True)
class MatrixFlow:
    source: str
    destination: str
    port: int
    protocol: str
    allowed: bool
    reason: str


def declared_ports(snapshot: Snapshot) -> list[tuple[int, str]]:
    """Every (port, protocol) that some pod declares, in protocol then port order."""
    ports = {(cp.port, cp.protocol) for p in snapshot.pods for cp in p.ports}
    return sorted(ports, key=lambda x: (x[1], x[0]))


def matrix_flows(snapshot: Snapshot, ports: list[tuple[int, str]]) -> Iterator[MatrixFlow]:
    """One flow per ordered pair of distinct pods per port; explanations computed once per class pair."""
    engine = Engine(snapshot)
    matrix = class_matrix(snapshot)
    class_of = matrix.class_of()
    reasons: dict[tuple[int, int, int, str], tuple[bool, str]] = {}
    for a in snapshot.pods:
        for b in snapshot.pods:
            if a is b:
                continue
            ca, cb = class_of[a.ref], class_of[b.ref]
            for port, proto in ports:
                key = (ca, cb, port, proto)
                hit = reasons.get(key)
                if hit is None:
                    d = engine.decide(a, b, port, proto)
                    hit = reasons[key] = (d.allowed, d.reason.replace(a.ref, "SRC").replace(b.ref, "DST"))
                allowed, reason = hit
                yield MatrixFlow(a.ref, b.ref, port, proto, allowed,
                                 reason.replace("SRC", a.ref).replace("DST", b.ref))


def connection_lines(snapshot: Snapshot) -> Iterator[str]:
    """The streamed tsv: `ns/src<TAB>ns/dst<TAB>CONNS` for each pod pair with any allowed connection."""
    matrix = class_matrix(snapshot)
    refs = [[p.ref for p in m] for m in matrix.members]
    for s, srcs in enumerate(refs):
        groups = [(str(conns), sorted(bits_of(part))) for conns, part in matrix.row_groups(s) if conns]
        for a in srcs:
            # Lines for one source come out grouped by connection set; consumers key on the pair, not the order.
            for text, dsts in groups:
                tail = "\t" + text + "\n"
                yield "".join(f"{a}\t{b}{tail}" for d in dsts for b in refs[d] if b != a)


# ------------------------------------------------------------------------------------------------- check
@dataclass(frozen=True, slots=True)
class CaseCheck:
    name: str
    source: str
    destination: str
    ports: str
    protocol: str
    expected: Verdict
    status: str  # pass, fail, skipped
    flows: tuple[FlowResult, ...]

    @property
    def summary(self) -> str:
        bad = [f for f in self.flows if f.intent != f.expected and f.outcome is not Outcome.SKIPPED]
        pick = bad[0] if bad else (self.flows[0] if self.flows else None)
        return (pick.reason or pick.explanation) if pick else ""


def check_suite(snapshot: Snapshot, suite: Suite) -> list[CaseCheck]:
    """Evaluates every case statically: the engine's answer is the intent, compared with the expectation."""
    engine = Engine(snapshot)
    ns_labels = {n.name: dict(n.labels) for n in snapshot.namespaces}
    checks = []
    for case in suite.cases:
        flows = []
        for f in expand_case(snapshot, case, ns_labels):
            src = f.source_identity if f.source is None else f.source.ref
            dst = (f.destination.ref if isinstance(f.destination, Pod) else f.destination) or f.destination_identity
            if f.skip_reason:
                flows.append(FlowResult(case.name, src, dst, f.port or 0, f.protocol, case.expect, Verdict.SKIPPED,
                                        reason=f.skip_reason))
                continue
            d = engine.decide(f.source, f.destination, f.port, f.protocol)
            intent = Verdict.ALLOW if d.allowed else Verdict.DENY
            flows.append(FlowResult(case.name, src, dst, f.port, f.protocol, case.expect, intent,
                                    Outcome.SKIPPED, Verdict.SKIPPED, explanation=d.reason))
        judged = [f for f in flows if f.intent in (Verdict.ALLOW, Verdict.DENY)]
        if not judged:
            status = "skipped"
        elif all(f.intent == case.expect for f in judged):
            status = "pass"
        else:
            status = "fail"
        checks.append(CaseCheck(case.name, case.source.describe(), case.destination.describe(),
                                ",".join(str(p) for p in case.ports), case.protocol, case.expect, status,
                                tuple(flows)))
    return checks


# -------------------------------------------------------------------------------------------------- diff
@dataclass(frozen=True, slots=True)
class FlowChange:
    source: str
    destination: str
    before: str  # connection set, `none` when nothing was allowed
    after: str
    added: str
    removed: str
    causes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PolicyChanges:
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]


def reachability_diff(before: Snapshot, after: Snapshot) -> tuple[list[FlowChange], PolicyChanges]:
    """Pod pairs (present in both snapshots) whose connection set differs, with the changes that explain it."""
    old_pol = {p.ref: p for p in (*before.policies, *before.admin_policies)}
    new_pol = {p.ref: p for p in (*after.policies, *after.admin_policies)}
    policy_changes = PolicyChanges(
        tuple(sorted(new_pol.keys() - old_pol.keys())), tuple(sorted(old_pol.keys() - new_pol.keys())),
        tuple(sorted(k for k in old_pol.keys() & new_pol.keys() if old_pol[k] != new_pol[k])))
    touched = set(policy_changes.added + policy_changes.removed + policy_changes.changed)
    old_m, new_m = class_matrix(before), class_matrix(after)
    old_cls, new_cls = old_m.class_of(), new_m.class_of()
    old_pods = {p.ref: p for p in before.pods}
    new_pods = {p.ref: p for p in after.pods}
    old_ns = {n.name: n.labels for n in before.namespaces}
    new_ns = {n.name: n.labels for n in after.namespaces}
    common = [r for r in sorted(old_pods) if r in new_pods]
    old_eng, new_eng = Engine(before), Engine(after)
    changes = []
    for a in common:
        for b in common:
            if a == b:
                continue
            c_old = old_m.cell(old_cls[a], old_cls[b])
            c_new = new_m.cell(new_cls[a], new_cls[b])
            if c_old == c_new:
                continue
            causes = _causes(a, b, old_pods, new_pods, old_ns, new_ns, old_eng, new_eng, touched)
            changes.append(FlowChange(a, b, str(c_old), str(c_new), _fmt(c_new - c_old), _fmt(c_old - c_new),
                                      causes))
    return changes, policy_changes


def _fmt(c: ConnSet) -> str:
    return str(c) if c else ""


def _causes(a, b, old_pods, new_pods, old_ns, new_ns, old_eng: Engine, new_eng: Engine, touched) -> tuple[str, ...]:
    causes = []
    for ref in (a, b):
        if old_pods[ref].labels != new_pods[ref].labels:
            causes.append(f"labels of pod {ref} changed")
        if old_pods[ref].ports != new_pods[ref].ports:
            causes.append(f"container ports of pod {ref} changed")
        ns = ref.split("/", 1)[0]
        if old_ns.get(ns) != new_ns.get(ns):
            causes.append(f"labels of namespace {ns} changed")
    relevant = set()
    for eng, pods in ((old_eng, old_pods), (new_eng, new_pods)):
        relevant.update(eng.decide(pods[a], pods[b], 1, "TCP").egress_policies)
        relevant.update(eng.decide(pods[a], pods[b], 1, "TCP").ingress_policies)
    for ref in sorted(touched):
        if ref in relevant or "/" not in ref or ref.split("/", 1)[0] in ("AdminNetworkPolicy",
                                                                       "BaselineAdminNetworkPolicy",
                                                                       "ClusterNetworkPolicy"):
            causes.append(f"policy {ref} changed")
    return tuple(dict.fromkeys(causes))

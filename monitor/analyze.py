"""Offline analysis on snapshots: the flow matrix, static suite checks, and reachability diffs.

The functions here turn a snapshot (and a suite) into frozen results that the CLI prints; they decide
nothing about presentation and do no I/O.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

from monitor.engine import ConnSet, Engine
from monitor.engine.evaluate import Decision, fill_template
from monitor.engine.matrix import bits_of, class_key, class_matrix, comparable_matrices, pod_classes, selector_bytes
from monitor.engine.selectors import block_coverage, primary_cidrs
from monitor.models import DEFAULT_POD_CIDRS, FlowResult, Outcome, Pod, Snapshot, Verdict
from monitor.snapshot import Change, SnapshotDiff, apply_change, diff_snapshots
from monitor.suite import Suite, expand_case, pods_by_namespace


@dataclass(frozen=True, slots=True)
class MatrixFlow:
    source: str
    destination: str
    port: int
    protocol: str
    allowed: bool
    reason: str


def admin_tie_warnings(snapshot: Snapshot) -> list[str]:
    """Same-priority admin policies with a common pod: valid, but their order is the implementation's choice."""
    return [t.describe() for t in Engine(snapshot).ties()]


def declared_ports(snapshot: Snapshot) -> list[tuple[int, str]]:
    """Every (port, protocol) that some pod declares, in protocol then port order."""
    ports = {(cp.port, cp.protocol) for p in snapshot.pods for cp in p.ports}
    return sorted(ports, key=lambda x: (x[1], x[0]))


def matrix_flows(snapshot: Snapshot, ports: list[tuple[int, str]],
                 pod_cidrs: Sequence[str] = DEFAULT_POD_CIDRS) -> Iterator[MatrixFlow]:
    """One flow per ordered pair of distinct pods per port; explanations computed once per class pair."""
    engine = Engine(snapshot, pod_cidrs)
    matrix = class_matrix(snapshot, pod_cidrs)
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
                    d = engine.decide(a, b, port, proto, template=True)
                    hit = reasons[key] = (d.allowed, d.reason)
                allowed, reason = hit
                yield MatrixFlow(a.ref, b.ref, port, proto, allowed, fill_template(reason, a, b))


def connection_lines(snapshot: Snapshot, pod_cidrs: Sequence[str] = DEFAULT_POD_CIDRS) -> Iterator[bytes]:
    """The streamed tsv, as UTF-8: `ns/src<TAB>ns/dst<TAB>CONNS` for each pod pair with any allowed
    connection, one chunk per source pod.

    A source class's lines are the same for each of its pods but for the source's name: they are made once
    per class with a placeholder where the source goes, and each pod's chunk is one bytes.replace of it (the
    output is ~10^8 lines at 10,000 pods: per-line Python work would be most of the time).
    """
    matrix = class_matrix(snapshot, pod_cidrs)
    refs = [[p.ref.encode() for p in m] for m in matrix.members]
    # Each class's pods as one text, NUL-separated: a line's separator is then put in by one replace.
    names = [b"\0".join(r) for r in refs]
    dense = max(1, len(refs) // 32)  # from this many classes on, picking them with compress() is faster
    tails: dict[ConnSet, bytes] = {}
    for s, srcs in enumerate(refs):
        body, own_tail = [], None
        for conns, part in matrix.row_groups(s):
            if not conns:
                continue
            tail = tails.get(conns) or tails.setdefault(conns, b"\t" + str(conns).encode() + b"\n")
            if part >> s & 1:  # the source's own class: each of its pods is left out of its own lines
                own_tail, part = tail, part ^ 1 << s
            if part:
                if part.bit_count() < dense:
                    picked = map(names.__getitem__, bits_of(part))
                else:  # one selector byte per class, in C: ~100x cheaper per class than a Python loop
                    picked = itertools.compress(names, selector_bytes(part))
                body.append(_SRC + b"\0".join(picked).replace(b"\0", tail + _SRC) + tail)
        text = b"".join(body)
        for k, a in enumerate(srcs):
            # Lines for one source come out grouped by connection set; consumers key on the pair, not the order.
            lead = a + b"\t"
            if text:
                yield text.replace(_SRC, lead)
            if own_tail is not None and len(srcs) > 1:
                others = srcs[:k] + srcs[k + 1:]
                yield lead + (own_tail + lead).join(others) + own_tail


_SRC = b"\1"  # where a source pod's name goes in a class's lines: no Kubernetes name holds a control byte


def address_warnings(snapshot: Snapshot, pod_cidrs: Sequence[str] = DEFAULT_POD_CIDRS) -> list[str]:
    """One line per policy CIDR whose verdict for pods without an IP depends on where in the pod CIDRs
    they are (the engine assumes inside and flags each such answer)."""
    unknown = [p for p in snapshot.pods if not p.addresses and not p.host_network]
    if not unknown:
        return []
    blocks: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for np in snapshot.policies:
        for rule in (*np.ingress, *np.egress):
            for peer in rule.peers:
                if peer.ip_block is not None:
                    blocks.setdefault((peer.ip_block.cidr, peer.ip_block.except_), []).append(np.ref)
    for ap in snapshot.admin_policies:
        for rule in (*ap.ingress, *ap.egress):
            for peer in rule.peers:
                for cidr in peer.networks:
                    blocks.setdefault((cidr, ()), []).append(ap.ref)
    cidrs = primary_cidrs(pod_cidrs)
    out = []
    for (cidr, excepts), refs in blocks.items():
        if block_coverage(cidr, excepts, cidrs) is None:
            block = cidr + (f" except {', '.join(excepts)}" if excepts else "")
            out.append(f"{len(unknown)} pod(s) have no IP in the manifests and {block} (in "
                       f"{', '.join(sorted(set(refs)))}) holds only part of the pod CIDRs ({', '.join(cidrs)}): "
                       f"answers that depend on it assume they are inside and say so; give status.podIPs or "
                       f"--pod-cidr")
    return out


# ------------------------------------------------------------------------------------------------- check
@dataclass(frozen=True, slots=True)
class CaseCheck:
    name: str
    source: str
    destination: str
    ports: str
    protocol: str
    expected: Verdict
    status: str  # pass, fail, partial (some flows not judged), unknown, skipped
    flows: tuple[FlowResult, ...]

    @property
    def summary(self) -> str:
        """The line that explains the status: the failing flow, else the one not judged, else the first."""
        judged = (Verdict.ALLOW, Verdict.DENY)
        bad = [f for f in self.flows if f.intent in judged and f.intent != f.expected]
        unjudged = [f for f in self.flows if f.intent not in judged]
        pick = (bad or unjudged or list(self.flows) or [None])[0]
        return (pick.reason or pick.explanation) if pick else ""


def check_suite(snapshot: Snapshot, suite: Suite, pod_cidrs: Sequence[str] = DEFAULT_POD_CIDRS
                ) -> list[CaseCheck]:
    """Evaluates every case statically: the engine's answer is the intent, compared with the expectation.
    An answer that depends on an IP the manifests do not give is `unknown`, never a pass."""
    engine = Engine(snapshot, pod_cidrs)
    ns_labels = {n.name: dict(n.labels) for n in snapshot.namespaces}
    by_namespace = pods_by_namespace(snapshot)
    # A case's flows are mostly replicas of few workloads: pods alike to the policies get one decision (its
    # reason a template, filled per pair), as matrix_flows does.
    key_of, keys = class_key(snapshot), {}
    decided: dict[tuple, Decision] = {}

    def decide(src: Pod, dst: Pod | str, port: int, protocol: str) -> Decision:
        if not isinstance(dst, Pod):
            return engine.decide(src, dst, port, protocol)
        ks = keys.get(id(src)) or keys.setdefault(id(src), key_of(src))
        kd = keys.get(id(dst)) or keys.setdefault(id(dst), key_of(dst))
        d = decided.get((ks, kd, port, protocol))
        if d is None:
            d = decided[(ks, kd, port, protocol)] = engine.decide(src, dst, port, protocol, template=True)
        return replace(d, reason=fill_template(d.reason, src, dst),
                       depends_on_ip=fill_template(d.depends_on_ip, src, dst))

    checks = []
    for case in suite.cases:
        flows = []
        for f in expand_case(snapshot, case, ns_labels, by_namespace):
            src = f.source_identity if f.source is None else f.source.ref
            dst = (f.destination.ref if isinstance(f.destination, Pod) else f.destination) or f.destination_identity
            if f.skip_reason:
                flows.append(FlowResult(case.name, src, dst, f.port or 0, f.protocol, case.expect, Verdict.SKIPPED,
                                        reason=f.skip_reason))
                continue
            d = decide(f.source, f.destination, f.port, f.protocol)
            intent = Verdict.UNKNOWN if d.depends_on_ip else Verdict.ALLOW if d.allowed else Verdict.DENY
            flows.append(FlowResult(case.name, src, dst, f.port, f.protocol, case.expect, intent,
                                    Outcome.SKIPPED, Verdict.SKIPPED, explanation=d.reason,
                                    reason=d.depends_on_ip))
        judged = [f for f in flows if f.intent in (Verdict.ALLOW, Verdict.DENY)]
        if any(f.intent != case.expect for f in judged):
            status = "fail"
        elif judged:
            status = "pass" if len(judged) == len(flows) else "partial"
        elif any(f.intent is Verdict.UNKNOWN for f in flows):
            status = "unknown"
        else:
            status = "skipped"
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
    change: str = "changed"  # changed; added or removed: a pod that exists on one side only
    reason: str = ""  # for an added/removed pod's flow: what the policies say about it on that side


@dataclass(frozen=True, slots=True)
class PolicyChanges:
    added: tuple[str, ...]
    removed: tuple[str, ...]
    changed: tuple[str, ...]


def reachability_diff(before: Snapshot, after: Snapshot, pod_cidrs: Sequence[str] = DEFAULT_POD_CIDRS
                      ) -> tuple[list[FlowChange], PolicyChanges]:
    """Pod pairs (present in both snapshots) whose connection set differs, with the changes that explain it,
    then the allowed flows of pods that exist on one side only (`added` / `removed`, caused by that pod).

    A change explains a pair when applying it alone to `before` moves that pair's connection set (the same
    single-change attribution as drift causes); when none does alone, the pair needs them together and all are
    listed.

    Both class matrices are built over one partition of the common pods (pods alike in both snapshots), so a
    row of one compares with the same row of the other group by group: only rows that moved are expanded to
    pod pairs, and a change's effect is evaluated once per pair of classes of the snapshot it makes.
    """
    diff = diff_snapshots(before, after)
    policy_changes = PolicyChanges(
        tuple(sorted(diff.policies_added + diff.admin_policies_added)),
        tuple(sorted(diff.policies_removed + diff.admin_policies_removed)),
        tuple(sorted(diff.policies_changed + diff.admin_policies_changed)))
    after_by_ref = {p.ref: p for p in after.pods}
    common = [p for p in before.pods if p.ref in after_by_ref]
    old_cls, new_cls = _class_index(before), _class_index(after)
    joint: dict[tuple[int, int], int] = {}
    old_members: list[list[Pod]] = []
    new_members: list[list[Pod]] = []
    for p in common:
        j = joint.setdefault((old_cls[p.ref], new_cls[p.ref]), len(joint))
        if j == len(old_members):
            old_members.append([])
            new_members.append([])
        old_members[j].append(p)
        new_members[j].append(after_by_ref[p.ref])
    old_m, new_m, same_atoms = comparable_matrices(before, after, pod_cidrs, (old_members, new_members))
    order = {p.ref: i for i, p in enumerate(common)}
    causes_of = _SingleChangeCauses(before, diff, pod_cidrs)
    texts: dict[tuple[ConnSet, ConnSet], tuple[str, str, str, str]] = {}
    changes = []
    moved_rows: dict[int, list[tuple[int, str, ConnSet, ConnSet, tuple[str, str, str, str]]]] = {}
    for s in range(len(old_members)):
        if same_atoms and old_m.row_of(s) == new_m.row_of(s):
            continue
        old_row = _by_conns(old_m.row_groups(s))
        new_row = _by_conns(new_m.row_groups(s))
        changed = 0
        for c in old_row.keys() | new_row.keys():
            changed |= old_row.get(c, 0) ^ new_row.get(c, 0)
        if not changed:
            continue
        moved = []  # every destination pod of the class's moved pairs, in snapshot order
        for c_old, bits in old_row.items():
            if bits & changed:
                for c_new, bits_new in new_row.items():
                    if c_new != c_old and bits & changed & bits_new:
                        text = texts.get((c_old, c_new))
                        if text is None:
                            text = texts[(c_old, c_new)] = (str(c_old), str(c_new), _fmt(c_new - c_old),
                                                            _fmt(c_old - c_new))
                        moved += [(order[b.ref], b.ref, c_old, c_new, text)
                                  for d in bits_of(bits & changed & bits_new) for b in old_members[d]]
        moved.sort(key=lambda m: m[0])
        moved_rows[s] = moved
    for j, pods in enumerate(old_members):
        for a in pods:
            for _, b, c_old, _, text in moved_rows.get(j, ()):
                if b != a.ref:
                    changes.append(FlowChange(a.ref, b, *text, causes_of(a.ref, b, c_old)))
    changes.sort(key=lambda c: order[c.source])  # stable: destinations stay in snapshot order
    one_sided = one_sided_pods(diff, before, after)
    if one_sided:  # matrices over every pod of each side, made only when a pod exists on one side
        full_old, full_new = class_matrix(before, pod_cidrs), class_matrix(after, pod_cidrs)
        for c in one_sided:
            if c.action == "added":
                changes += _one_sided_flows(after, full_new, full_new.class_of(), c.new, c.describe(), "added",
                                            pod_cidrs)
            else:
                changes += _one_sided_flows(before, full_old, full_old.class_of(), c.old, c.describe(), "removed",
                                            pod_cidrs)
    return changes, policy_changes


def one_sided_pods(diff: SnapshotDiff, before: Snapshot, after: Snapshot) -> list[Change]:
    """The pod changes that add a pod missing before or remove one missing after (not a pod that changed)."""
    before_refs, after_refs = {p.ref for p in before.pods}, {p.ref for p in after.pods}
    return [c for c in diff.changes if c.kind == "pod" and (
        (c.action == "added" and c.new.ref not in before_refs) or
        (c.action == "removed" and c.old.ref not in after_refs))]


def _one_sided_flows(snapshot: Snapshot, matrix, class_of: dict[str, int], pod: Pod, cause: str,
                     change: str, pod_cidrs: Sequence[str]) -> list[FlowChange]:
    """Every allowed flow from and to a pod that exists on one side only: all of it appeared (or went)."""
    engine = Engine(snapshot, pod_cidrs)
    out = []
    for other in snapshot.pods:
        if other.ref == pod.ref:
            continue
        for src, dst in ((pod, other), (other, pod)):
            conns = matrix.cell(class_of[src.ref], class_of[dst.ref])
            if not conns:
                continue
            proto, port = conns.first()
            reason = engine.decide(src, dst, port, proto).reason
            text = str(conns)
            before, after = ("none", text) if change == "added" else (text, "none")
            out.append(FlowChange(src.ref, dst.ref, before, after, text if change == "added" else "",
                                  text if change == "removed" else "", (cause,), change, reason))
    return out


def _class_index(snapshot: Snapshot) -> dict[str, int]:
    return {p.ref: i for i, pods in enumerate(pod_classes(snapshot)[1]) for p in pods}


def _by_conns(groups: list[tuple[ConnSet, int]]) -> dict[ConnSet, int]:
    out: dict[ConnSet, int] = {}
    for conns, bits in groups:
        out[conns] = out.get(conns, 0) | bits
    return out


class _SingleChangeCauses:
    """The changes that alone move a pair's connection set: `before` with one change applied, evaluated once
    per pair of pod classes of that one-change snapshot (pods of one class get the same answer there)."""

    def __init__(self, before: Snapshot, diff: SnapshotDiff, pod_cidrs: Sequence[str]) -> None:
        self.before, self.diff, self.pod_cidrs = before, diff, pod_cidrs
        self.variants: list[tuple[Change, Engine, dict[str, Pod], dict[str, int]]] | None = None
        self.descriptions: list[str] = []
        self.together: tuple[str, ...] = ()
        self.by_classes: dict[tuple, tuple[str, ...]] = {}
        self.pod_classes: dict[str, tuple[int, ...]] = {}

    def __call__(self, a: str, b: str, c_old: ConnSet) -> tuple[str, ...]:
        if self.variants is None:  # built on the first changed pair: one engine per single change
            self.variants = []
            for change in self.diff.changes:
                variant = apply_change(self.before, change)
                self.variants.append((change, Engine(variant, self.pod_cidrs), {p.ref: p for p in variant.pods},
                                      _class_index(variant)))
            self.descriptions = [c.describe() for c in self.diff.changes]
            self.together = tuple(d + " (with the others)" for d in self.descriptions)
        # A pod's classes in every one-change snapshot: pairs with the same ones have the same causes.
        key = (self._classes(a), self._classes(b), c_old)
        causes = self.by_classes.get(key)
        if causes is None:
            causes = self.by_classes[key] = tuple(
                self.descriptions[i] for i, (change, engine, pods, _) in enumerate(self.variants)
                if a in pods and b in pods and _may_move(change, pods[a], pods[b])
                and engine.connections(pods[a], pods[b]) != c_old) or self.together
        return causes

    def _classes(self, ref: str) -> tuple[int, ...]:
        out = self.pod_classes.get(ref)
        if out is None:
            out = self.pod_classes[ref] = tuple(cls.get(ref, -1) for _, _, _, cls in self.variants or ())
        return out


def _may_move(change: Change, a: Pod, b: Pod) -> bool:
    """False when the change cannot touch the pair: a NetworkPolicy selects pods of its own namespace only,
    a pod's labels matter only to its own pairs, and Services are not policy."""
    if change.kind == "policy":
        return (change.old or change.new).namespace in (a.namespace, b.namespace)
    if change.kind == "pod":
        return bool({a.ref, b.ref} & {p.ref for p in (change.old, change.new) if p is not None})
    return change.kind != "service"


def _fmt(c: ConnSet) -> str:
    return str(c) if c else ""

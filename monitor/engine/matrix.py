"""Whole-cluster reachability on pod equivalence classes, fast enough for big clusters.

Pods that agree on everything policies can see (namespace, labels, named ports, host networking, and which
ipBlocks/networks cover their IP) form one class; the matrix is computed once per ordered class pair. For
snapshots with only NetworkPolicy v1 the computation is set-based: each rule's peers become a bitset of
classes, each source's egress and each destination's ingress become (bitset, connections) entries, and a
cell is the intersection of the two. With admin-tier policies every class pair goes through the reference
evaluator in evaluate.py instead (identical semantics, slower). No I/O here.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass

from monitor.engine.connset import ALL, EMPTY, ConnSet
from monitor.engine.evaluate import Engine, np_rule_conns
from monitor.engine.selectors import ip_block_matches, ip_in, selector_matches
from monitor.models import LabelSelector, NetworkPolicy, Pod, PolicyPeer, Snapshot


@dataclass(frozen=True)
class ClassMatrix:
    classes: tuple[Pod, ...]  # one representative pod per class
    members: tuple[tuple[Pod, ...], ...]  # the pods of each class, same order
    cells: tuple[tuple[ConnSet, ...], ...]  # cells[src_class][dst_class]

    def class_of(self) -> dict[str, int]:
        return {p.ref: i for i, pods in enumerate(self.members) for p in pods}

    def pod_pairs(self) -> Iterator[tuple[Pod, Pod, ConnSet]]:
        """Every ordered pair of distinct pods with its connection set (including empty ones)."""
        for s, srcs in enumerate(self.members):
            row = self.cells[s]
            for d, dsts in enumerate(self.members):
                cell = row[d]
                for a in srcs:
                    for b in dsts:
                        if a is not b:
                            yield a, b, cell


def pod_classes(snapshot: Snapshot) -> tuple[list[Pod], list[list[Pod]]]:
    blocks = _ip_matchers(snapshot)
    index: dict[tuple, int] = {}
    reps: list[Pod] = []
    members: list[list[Pod]] = []
    for pod in snapshot.pods:
        sig = ()
        if pod.ip and blocks:
            sig = tuple(i for i, m in enumerate(blocks) if m(pod.ip))
        key = (pod.namespace, pod.labels, pod.ports, pod.host_network, sig)
        i = index.get(key)
        if i is None:
            i = index[key] = len(reps)
            reps.append(pod)
            members.append([])
        members[i].append(pod)
    return reps, members


def _ip_matchers(snapshot: Snapshot) -> list:
    matchers: dict = {}
    for p in snapshot.policies:
        for rule in (*p.ingress, *p.egress):
            for peer in rule.peers:
                if peer.ip_block is not None:
                    matchers.setdefault(("b", peer.ip_block), lambda ip, b=peer.ip_block: ip_block_matches(b, ip))
    for ap in snapshot.admin_policies:
        for rule in (*ap.ingress, *ap.egress):
            for peer in rule.peers:
                for cidr in peer.networks:
                    matchers.setdefault(("n", cidr), lambda ip, c=cidr: ip_in(ip, c))
    return list(matchers.values())


def class_matrix(snapshot: Snapshot) -> ClassMatrix:
    reps, members = pod_classes(snapshot)
    if snapshot.admin_policies:
        engine = Engine(snapshot)
        cells = tuple(tuple(engine.connections(s, d) for d in reps) for s in reps)
    else:
        cells = _np_only_cells(snapshot, reps)
    return ClassMatrix(tuple(reps), tuple(tuple(m) for m in members), cells)


def _bits(x: int) -> Iterator[int]:
    while x:
        low = x & -x
        yield low.bit_length() - 1
        x ^= low


class _Union:
    """Memoised union/intersection of interned connection sets (few distinct values, many cells)."""

    def __init__(self) -> None:
        self.or_cache: dict[tuple[int, int], ConnSet] = {}
        self.and_cache: dict[tuple[int, int], ConnSet] = {}

    def union(self, a: ConnSet, b: ConnSet) -> ConnSet:
        if a is EMPTY or a is b:
            return b
        key = (id(a), id(b))
        r = self.or_cache.get(key)
        if r is None:
            r = self.or_cache[key] = _intern(a | b)
        return r

    def inter(self, a: ConnSet, b: ConnSet) -> ConnSet:
        if a is ALL:
            return b
        if b is ALL or a is b:
            return a
        key = (id(a), id(b))
        r = self.and_cache.get(key)
        if r is None:
            r = self.and_cache[key] = _intern(a & b)
        return r


_INTERNED: dict[ConnSet, ConnSet] = {ALL: ALL, EMPTY: EMPTY}


def _intern(c: ConnSet) -> ConnSet:
    return _INTERNED.setdefault(c, c)


def _np_only_cells(snapshot: Snapshot, reps: list[Pod]) -> tuple[tuple[ConnSet, ...], ...]:
    n = len(reps)
    ns_labels = {ns.name: dict(ns.labels) for ns in snapshot.namespaces}
    labels = [dict(p.labels) for p in reps]
    by_ns: dict[str, int] = defaultdict(int)  # namespace -> bitset of its (non host-network) classes
    for i, p in enumerate(reps):
        if not p.host_network:
            by_ns[p.namespace] |= 1 << i
    ns_sel_cache: dict[LabelSelector, int] = {}
    pod_sel_cache: dict[tuple[LabelSelector, int], int] = {}

    def ns_bits(sel: LabelSelector) -> int:
        r = ns_sel_cache.get(sel)
        if r is None:
            r = 0
            for ns, bits in by_ns.items():
                if selector_matches(sel, ns_labels.get(ns, {})):
                    r |= bits
            ns_sel_cache[sel] = r
        return r

    def filter_pods(sel: LabelSelector, candidates: int) -> int:
        key = (sel, candidates)
        r = pod_sel_cache.get(key)
        if r is None:
            r = 0
            for i in _bits(candidates):
                if selector_matches(sel, labels[i]):
                    r |= 1 << i
            pod_sel_cache[key] = r
        return r

    everyone = (1 << n) - 1

    def peer_bits(peer: PolicyPeer, policy_ns: str) -> int:
        if peer.ip_block is not None:
            r = 0
            for i, p in enumerate(reps):
                if p.ip and ip_block_matches(peer.ip_block, p.ip):
                    r |= 1 << i
            return r
        cand = by_ns.get(policy_ns, 0) if peer.namespace_selector is None else ns_bits(peer.namespace_selector)
        return cand if peer.pod_selector is None else filter_pods(peer.pod_selector, cand)

    # Destination classes grouped by their named ports: a rule with named ports resolves once per group.
    port_groups: dict[tuple, int] = defaultdict(int)
    for i, p in enumerate(reps):
        port_groups[p.ports] |= 1 << i
    port_group_reps = {ports: reps[next(_bits(bits))] for ports, bits in port_groups.items()}

    def rule_entries(policy: NetworkPolicy, direction: str) -> list[tuple[int, ConnSet | None]]:
        """(peer bitset, conns) per rule; conns None means 'resolve named ports on the destination'."""
        out = []
        for rule in policy.ingress if direction == "ingress" else policy.egress:
            bits = everyone if not rule.peers else 0
            for peer in rule.peers:
                bits |= peer_bits(peer, policy.namespace)
            if not bits and rule.peers:
                continue
            named = any(isinstance(p.port, str) for p in rule.ports)
            out.append((bits, rule, None if named else _intern(np_rule_conns(rule, None))))
        return out

    # Which policies select each class, per direction.
    select_in: list[list[NetworkPolicy]] = [[] for _ in range(n)]
    select_out: list[list[NetworkPolicy]] = [[] for _ in range(n)]
    for policy in snapshot.policies:
        sel = filter_pods(policy.pod_selector, by_ns.get(policy.namespace, 0))
        for i in _bits(sel):
            if "Ingress" in policy.policy_types:
                select_in[i].append(policy)
            if "Egress" in policy.policy_types:
                select_out[i].append(policy)

    entries_cache: dict[tuple[int, str], list] = {}

    def entries_of(policy: NetworkPolicy, direction: str) -> list:
        key = (id(policy), direction)
        e = entries_cache.get(key)
        if e is None:
            e = entries_cache[key] = rule_entries(policy, direction)
        return e

    ops = _Union()

    # Egress rows: row[s][d] = what s's egress allows towards d.
    rows: list[list[ConnSet]] = []
    for s in range(n):
        pols = select_out[s]
        if not pols:
            rows.append([ALL] * n)
            continue
        row = [EMPTY] * n
        for policy in pols:
            for bits, rule, conns in entries_of(policy, "egress"):
                if conns is None:
                    for ports, group in port_groups.items():
                        sub = bits & group
                        if sub:
                            resolved = _intern(np_rule_conns(rule, port_group_reps[ports]))
                            for d in _bits(sub):
                                row[d] = ops.union(row[d], resolved)
                elif bits == everyone:
                    row = [ops.union(c, conns) for c in row]
                else:
                    for d in _bits(bits):
                        row[d] = ops.union(row[d], conns)
        rows.append(row)

    # Ingress: for each isolated destination d, what it accepts from each source s.
    for d in range(n):
        pols = select_in[d]
        if not pols:
            continue
        col = [EMPTY] * n
        for policy in pols:
            for bits, rule, conns in entries_of(policy, "ingress"):
                if conns is None:
                    conns = _intern(np_rule_conns(rule, reps[d]))
                for s in (range(n) if bits == everyone else _bits(bits)):
                    col[s] = ops.union(col[s], conns)
        for s in range(n):
            rows[s][d] = ops.inter(rows[s][d], col[s])
    return tuple(tuple(r) for r in rows)

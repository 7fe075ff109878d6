"""Whole-cluster reachability on pod equivalence classes, fast and compact enough for big clusters.

Pods that agree on everything the policies can see (namespace, the label keys some selector reads, named
ports, host networking, and which ipBlocks/networks cover their IP) form one class.

For snapshots with only NetworkPolicy v1 the matrix is computed with bitsets instead of per-pair walks:
1. The connection space is cut into atoms: the coarsest pieces (protocol x port intervals) that no rule
   splits. Every rule's connections are then a bitmask of atoms.
2. Egress: for each source class s and atom a, the bitset of destination classes its egress allows
   (everyone when no policy isolates s for egress).
3. Ingress, transposed: for each source class s and atom a, the bitset of destination classes whose
   ingress accepts s on a; built per distinct peer bitset, so cost follows the distinct selectors.
4. allowed[s][a] = egress[s][a] & ingress[s][a].
A cell is thus never materialised unless asked for; rows are grouped by their connection set when listed.
With admin-tier policies every class pair goes through the reference evaluator in evaluate.py (identical
semantics, slower). No I/O here.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field

from monitor.engine.connset import ALL, EMPTY, ConnSet
from monitor.engine.evaluate import Engine, np_rule_conns
from monitor.engine.selectors import ip_block_matches, ip_in, selector_matches
from monitor.models import PROTOCOLS, LabelSelector, NetworkPolicy, Pod, PolicyPeer, Snapshot


@dataclass(frozen=True)
class ClassMatrix:
    """The class-level matrix: allowed[s][a] is the bitset of destination classes s reaches on atom a."""

    classes: tuple[Pod, ...]  # one representative pod per class
    members: tuple[tuple[Pod, ...], ...]  # the pods of each class, same order
    atoms: tuple[ConnSet, ...]
    allowed: tuple[tuple[int, ...], ...]
    _by_mask: dict[int, ConnSet] = field(default_factory=dict, compare=False, repr=False)

    def class_of(self) -> dict[str, int]:
        return {p.ref: i for i, pods in enumerate(self.members) for p in pods}

    def conns(self, mask: int) -> ConnSet:
        c = self._by_mask.get(mask)
        if c is None:
            c = EMPTY
            for a, atom in enumerate(self.atoms):
                if mask >> a & 1:
                    c = c | atom
            self._by_mask[mask] = c
        return c

    def cell(self, s: int, d: int) -> ConnSet:
        mask = 0
        for a, bits in enumerate(self.allowed[s]):
            if bits >> d & 1:
                mask |= 1 << a
        return self.conns(mask)

    def row_groups(self, s: int) -> list[tuple[ConnSet, int]]:
        """The destinations of source class s grouped by connection set: [(conns, bitset of classes)]."""
        parts = [(0, (1 << len(self.classes)) - 1)]
        for a, bits in enumerate(self.allowed[s]):
            nxt = []
            for mask, part in parts:
                inside, outside = part & bits, part & ~bits
                if inside:
                    nxt.append((mask | 1 << a, inside))
                if outside:
                    nxt.append((mask, outside))
            parts = nxt
        return [(self.conns(mask), part) for mask, part in parts]

    def pod_pairs(self) -> Iterator[tuple[Pod, Pod, ConnSet]]:
        """Every ordered pair of distinct pods with a non-empty connection set."""
        for s, srcs in enumerate(self.members):
            for conns, part in self.row_groups(s):
                if not conns:
                    continue
                for d in bits_of(part):
                    for a in srcs:
                        for b in self.members[d]:
                            if a is not b:
                                yield a, b, conns


def bits_of(x: int) -> Iterator[int]:
    while x:
        low = x & -x
        yield low.bit_length() - 1
        x ^= low


# ------------------------------------------------------------------------------------------------ classes
def pod_classes(snapshot: Snapshot) -> tuple[list[Pod], list[list[Pod]]]:
    matchers = _ip_matchers(snapshot)
    keys = None if snapshot.admin_policies else _selector_keys(snapshot)
    index: dict[tuple, int] = {}
    reps: list[Pod] = []
    members: list[list[Pod]] = []
    for pod in snapshot.pods:
        sig = tuple(i for i, m in enumerate(matchers) if m(pod.ip)) if pod.ip and matchers else ()
        # Label keys no selector reads cannot change any answer: leaving them out merges classes.
        labels = pod.labels if keys is None else tuple(kv for kv in pod.labels if kv[0] in keys)
        named = tuple(cp for cp in pod.ports if cp.name)
        key = (pod.namespace, labels, named, pod.host_network, sig)
        i = index.get(key)
        if i is None:
            i = index[key] = len(reps)
            reps.append(pod)
            members.append([])
        members[i].append(pod)
    return reps, members


def _selector_keys(snapshot: Snapshot) -> set[str]:
    keys: set[str] = set()

    def add(sel: LabelSelector | None) -> None:
        if sel is not None:
            keys.update(k for k, _ in sel.match_labels)
            keys.update(r.key for r in sel.match_expressions)

    for p in snapshot.policies:
        add(p.pod_selector)
        for rule in (*p.ingress, *p.egress):
            for peer in rule.peers:
                add(peer.pod_selector)
    return keys


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
        return _reference_matrix(snapshot, reps, members)
    return _NetworkPolicyMatrix(snapshot, reps).build(members)


# -------------------------------------------------------------------------------------------------- atoms
def atoms_of(connsets: list[ConnSet]) -> tuple[list[ConnSet], dict[ConnSet, int]]:
    """The coarsest partition of the connection space that every given set is a union of; set -> atom mask."""
    distinct = list(dict.fromkeys([ALL, *connsets]))
    pieces: dict[tuple[bool, ...], dict[str, list[tuple[int, int]]]] = defaultdict(lambda: defaultdict(list))
    for proto in PROTOCOLS:
        cuts = {1, 65536}
        for c in distinct:
            for lo, hi in c.by_protocol.get(proto, ()):
                cuts.update((lo, hi + 1))
        edges = sorted(cuts)
        for lo, nxt in itertools.pairwise(edges):
            sig = tuple(c.contains(proto, lo) for c in distinct)
            pieces[sig][proto].append((lo, nxt - 1))
    atoms = [ConnSet({p: tuple(iv) for p, iv in by_proto.items()}) for by_proto in pieces.values()]
    sigs = list(pieces)
    masks = {}
    for i, c in enumerate(distinct):
        masks[c] = sum(1 << a for a, sig in enumerate(sigs) if sig[i])
    return atoms, masks


# ------------------------------------------------------------------------------- NetworkPolicy-only path
class _NetworkPolicyMatrix:
    def __init__(self, snapshot: Snapshot, reps: list[Pod]) -> None:
        self.snapshot = snapshot
        self.reps = reps
        self.n = len(reps)
        self.everyone = (1 << self.n) - 1
        self.ns_labels = {ns.name: dict(ns.labels) for ns in snapshot.namespaces}
        self.labels = [dict(p.labels) for p in reps]
        self.by_ns: dict[str, int] = defaultdict(int)  # namespace -> its (non host-network) classes
        for i, p in enumerate(reps):
            if not p.host_network:
                self.by_ns[p.namespace] |= 1 << i
        self.port_groups: dict[tuple, int] = defaultdict(int)  # named ports -> classes declaring exactly them
        for i, p in enumerate(reps):
            self.port_groups[tuple(cp for cp in p.ports if cp.name)] |= 1 << i
        self.port_group_rep = {k: reps[next(bits_of(v))] for k, v in self.port_groups.items()}
        self._ns_sel: dict[LabelSelector, int] = {}
        self._pod_sel: dict[tuple[LabelSelector, int], int] = {}

    # selectors -> bitsets of classes (memoised: real clusters repeat the same selectors a lot)
    def ns_bits(self, sel: LabelSelector) -> int:
        r = self._ns_sel.get(sel)
        if r is None:
            r = 0
            for ns, bits in self.by_ns.items():
                if selector_matches(sel, self.ns_labels.get(ns, {})):
                    r |= bits
            self._ns_sel[sel] = r
        return r

    def filter_pods(self, sel: LabelSelector, candidates: int) -> int:
        if not sel.match_labels and not sel.match_expressions:
            return candidates
        key = (sel, candidates)
        r = self._pod_sel.get(key)
        if r is None:
            r = 0
            for i in bits_of(candidates):
                if selector_matches(sel, self.labels[i]):
                    r |= 1 << i
            self._pod_sel[key] = r
        return r

    def peer_bits(self, peer: PolicyPeer, policy_ns: str) -> int:
        if peer.ip_block is not None:
            return sum(1 << i for i, p in enumerate(self.reps) if p.ip and ip_block_matches(peer.ip_block, p.ip))
        if peer.namespace_selector is None:
            cand = self.by_ns.get(policy_ns, 0)
        else:
            cand = self.ns_bits(peer.namespace_selector)
        return cand if peer.pod_selector is None else self.filter_pods(peer.pod_selector, cand)

    def rule_pieces(self, policy: NetworkPolicy, direction: str, over: int) -> list[tuple[int, int, ConnSet]]:
        """(peer classes, classes of `over` the connections apply to, connections) per rule.

        `over` are the destination classes a rule's named ports resolve on: for egress the peers themselves,
        for ingress the policy's own pods. A rule without named ports is one piece.
        """
        out = []
        for rule in policy.ingress if direction == "ingress" else policy.egress:
            peers = self.everyone if not rule.peers else 0
            for peer in rule.peers:
                peers |= self.peer_bits(peer, policy.namespace)
            if not peers:
                continue
            if not any(isinstance(p.port, str) for p in rule.ports):
                out.append((peers, over if direction == "ingress" else peers, np_rule_conns(rule, None)))
                continue
            dsts = over if direction == "ingress" else peers
            for ports, group in self.port_groups.items():
                sub = dsts & group
                if sub:
                    conns = np_rule_conns(rule, self.port_group_rep[ports])
                    out.append((peers if direction == "ingress" else sub, sub, conns))
        return out

    def build(self, members: list[list[Pod]]) -> ClassMatrix:
        n, everyone = self.n, self.everyone
        selected_in = [0] * len(self.snapshot.policies)
        out_profile: list[list[int]] = [[] for _ in range(n)]  # per class: indexes of its egress policies
        iso_in = 0
        for j, policy in enumerate(self.snapshot.policies):
            sel = self.filter_pods(policy.pod_selector, self.by_ns.get(policy.namespace, 0))
            if "Ingress" in policy.policy_types:
                selected_in[j] = sel
                iso_in |= sel
            if "Egress" in policy.policy_types:
                for i in bits_of(sel):
                    out_profile[i].append(j)

        # Every piece of every rule, so that the atoms can be cut once.
        egress_pieces: dict[int, list[tuple[int, int, ConnSet]]] = {}
        ingress_pieces: list[tuple[int, int, ConnSet]] = []
        for j, policy in enumerate(self.snapshot.policies):
            if selected_in[j]:
                ingress_pieces += self.rule_pieces(policy, "ingress", selected_in[j])
        for prof in out_profile:
            for j in prof:
                if j not in egress_pieces:
                    egress_pieces[j] = self.rule_pieces(self.snapshot.policies[j], "egress", 0)
        all_conns = [c for _, _, c in ingress_pieces]
        for pieces in egress_pieces.values():
            all_conns += [c for _, _, c in pieces]
        atoms, masks = atoms_of(all_conns)
        k = len(atoms)
        atom_range = range(k)

        # Egress rows, shared between classes with the same egress policies.
        rows_by_profile: dict[tuple[int, ...], list[int]] = {(): [everyone] * k}
        egress: list[list[int]] = []
        for prof in out_profile:
            key = tuple(prof)
            row = rows_by_profile.get(key)
            if row is None:
                row = [0] * k
                for j in prof:
                    for _, dsts, conns in egress_pieces[j]:
                        m = masks[conns]
                        for a in atom_range:
                            if m >> a & 1:
                                row[a] |= dsts
                rows_by_profile[key] = row
            egress.append(row)

        # Ingress, transposed to rows by source: accumulate per distinct peer bitset, then spread.
        by_peers: dict[int, list[int]] = {}
        for peers, dsts, conns in ingress_pieces:
            acc = by_peers.get(peers)
            if acc is None:
                acc = by_peers[peers] = [0] * k
            m = masks[conns]
            for a in atom_range:
                if m >> a & 1:
                    acc[a] |= dsts
        not_isolated = everyone & ~iso_in
        ingress = [[not_isolated] * k for _ in range(n)]
        for peers, acc in by_peers.items():
            for s in range(n) if peers == everyone else bits_of(peers):
                row = ingress[s]
                for a in atom_range:
                    if acc[a]:
                        row[a] |= acc[a]

        allowed = tuple(tuple(e[a] & i[a] for a in atom_range) for e, i in zip(egress, ingress, strict=True))
        return ClassMatrix(tuple(self.reps), tuple(tuple(m) for m in members), tuple(atoms), allowed)


# ---------------------------------------------------------------------------------------- reference path
def _reference_matrix(snapshot: Snapshot, reps: list[Pod], members: list[list[Pod]]) -> ClassMatrix:
    engine = Engine(snapshot)
    cells = [[engine.connections(s, d) for d in reps] for s in reps]
    atoms, masks = atoms_of([c for row in cells for c in row])
    allowed = []
    for row in cells:
        bits = [0] * len(atoms)
        for d, c in enumerate(row):
            m = masks[c]
            for a in range(len(atoms)):
                if m >> a & 1:
                    bits[a] |= 1 << d
        allowed.append(tuple(bits))
    return ClassMatrix(tuple(reps), tuple(tuple(m) for m in members), tuple(atoms), tuple(allowed))

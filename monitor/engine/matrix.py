"""Whole-cluster reachability on pod equivalence classes, fast and compact enough for big clusters.

Pods that agree on everything the policies can see (namespace, the label keys some selector reads, named
ports, host networking, and which ipBlocks/networks cover their IP) form one class.

For snapshots with only NetworkPolicy v1 the matrix is computed with bitsets instead of per-pair walks:
1. The connection space is cut into atoms: the coarsest pieces (protocol x port intervals) that no rule
   splits. Every rule's connections are then a bitmask of atoms.
2. Selectors become bitsets of classes through an inverted label index; a named port is resolved once per
   rule and distinct port layout.
3. A row is (classes reached on every connection, {atom: classes reached on that atom only}), so a rule
   without ports, the commonest kind, costs one OR. Egress rows are shared by classes with the same egress
   policies; ingress is accumulated per distinct peer bitset and then spread to its source classes.
4. full[s] = egress_full & ingress_full, partial[s][a] = what each side allows on atom a beyond that.
A cell is never materialised unless asked for; rows are grouped by their connection set when listed.
With admin-tier policies every class pair goes through the reference evaluator in evaluate.py (identical
semantics, slower). No I/O here.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from monitor.engine.connset import ALL, EMPTY, ConnSet
from monitor.engine.evaluate import Engine, np_rule_conns
from monitor.engine.selectors import (
    address_bits,
    block_bits,
    block_coverage,
    in_block_bits,
    primary_cidrs,
)
from monitor.models import DEFAULT_POD_CIDRS, PROTOCOLS, LabelSelector, NetworkPolicy, Pod, PolicyPeer, Snapshot

# Rows kept at once per kind (egress profile, ingress peer set, combined): bounds memory on any shape.
_ROW_CACHE = 256
Row = tuple[int, dict[int, int]]  # (classes reached on every connection, {atom: classes reached on it only})


@dataclass(frozen=True)
class ClassMatrix:
    """The class-level matrix. Source class s reaches destination class d on every connection when bit d of
    row(s)[0] is set, and else on atom a when bit d of row(s)[1][a] is set.

    Rows are computed on demand (`row_of`) and not kept: a 10,000-class matrix with 178 atoms would otherwise
    hold 10,000 x 178 bitsets of 10,000 bits (2.2 GB). Listing every row costs about what building them did.
    """

    classes: tuple[Pod, ...]  # one representative pod per class
    members: tuple[tuple[Pod, ...], ...]  # the pods of each class, same order
    atoms: tuple[ConnSet, ...]
    row_of: Callable[[int], Row] = field(compare=False, repr=False)
    _by_mask: dict[int, ConnSet] = field(default_factory=dict, compare=False, repr=False)

    def class_of(self) -> dict[str, int]:
        return {p.ref: i for i, pods in enumerate(self.members) for p in pods}

    def conns(self, mask: int) -> ConnSet:
        c = self._by_mask.get(mask)
        if c is None:
            c = EMPTY
            for a in bits_of(mask):
                c = c | self.atoms[a]
            self._by_mask[mask] = c
        return c

    def cell(self, s: int, d: int) -> ConnSet:
        full, partial = self.row_of(s)
        if full >> d & 1:
            return ALL
        mask = 0
        for a, bits in partial.items():
            if bits >> d & 1:
                mask |= 1 << a
        return self.conns(mask)

    def row_groups(self, s: int) -> list[tuple[ConnSet, int]]:
        """The destinations of source class s grouped by connection set: [(conns, bitset of classes)]."""
        full, partial = self.row_of(s)
        groups = [(ALL, full)] if full else []
        # Atoms that reach the same destinations split nothing apart from each other: merge them first.
        by_bits: dict[int, int] = {}
        for a, bits in partial.items():
            by_bits[bits] = by_bits.get(bits, 0) | 1 << a
        parts, masks, _ = refine(((1 << len(self.classes)) - 1) & ~full, len(self.classes), by_bits.items())
        return groups + [(self.conns(mask), part) for mask, part in zip(masks, parts, strict=True) if part]

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


def refine(universe: int, n: int, splitters: Iterable[tuple[int, int]]) -> tuple[list[int], list[int], list[int]]:
    """Partition refinement of the classes in `universe` (bits below n) by bitsets: splitters are (bitset,
    tag) pairs; classes end in one part when the same splitters hold them. Returns (parts, the OR of the tags
    of the splitters holding each part, owner: the part of each class (0 outside the universe)).

    Only the parts a bitset meets are visited: owner[d] is found from the bitset's top class, and a split
    re-points the smaller half, so a part met whole costs one OR and the work is not parts x splitters.
    """
    parts, masks, owner = [universe], [0], [0] * n
    everyone, dense = range(n), max(1, n // 64)
    for bits, tag in splitters:
        left = bits & universe  # a class outside every part would never be found
        while left:
            p = owner[left.bit_length() - 1]
            part = parts[p]
            inside = part & left
            left ^= inside
            if inside == part:
                masks[p] |= tag
                continue
            outside = part ^ inside
            q = len(parts)
            if inside.bit_count() <= outside.bit_count():
                parts[p], moved = outside, inside
                parts.append(inside)
                masks.append(masks[p] | tag)
            else:
                parts[p], moved = inside, outside
                parts.append(outside)
                masks.append(masks[p])
                masks[p] |= tag
            for d in (bits_of(moved) if moved.bit_count() < dense else
                      itertools.compress(everyone, selector_bytes(moved))):
                owner[d] = q
    return parts, masks, owner


_BITS = bytes.maketrans(b"01", b"\0\1")


def selector_bytes(bits: int) -> bytes:
    """One byte per bit, 1 where set, from bit 0 up (to the highest set bit): for itertools.compress, which
    then picks the members of a bitset in C, ~100x faster per member than iterating bits_of."""
    return format(bits, "b").encode().translate(_BITS)[::-1]


def bits_of(x: int) -> Iterator[int]:
    while x:
        low = x & -x
        yield low.bit_length() - 1
        x ^= low


# ------------------------------------------------------------------------------------------------ classes
def class_key(snapshot: Snapshot) -> Callable[[Pod], tuple]:
    """pod -> what the policies of this snapshot can see of it: pods with equal keys get equal answers (with
    every other pod, on every connection, explanations included but for the pods' own names)."""
    blocks = _ip_blocks(snapshot)
    keys = None if snapshot.admin_policies else _selector_keys(snapshot)

    def key(pod: Pod) -> tuple:
        # A pod without an IP follows the address model, not its (absent) address: never one class with pods
        # whose IP no block holds.
        if not blocks:
            sig: tuple | None = ()
        elif pod.ip:
            address = address_bits(pod.ip)
            sig = tuple(i for i, b in enumerate(blocks) if in_block_bits(address, b))
        else:
            sig = None
        # Label keys no selector reads cannot change any answer: leaving them out merges classes.
        labels = pod.labels if keys is None else tuple(kv for kv in pod.labels if kv[0] in keys)
        named = tuple(cp for cp in pod.ports if cp.name)
        return (pod.namespace, labels, named, pod.host_network, sig)

    return key


def pod_classes(snapshot: Snapshot) -> tuple[list[Pod], list[list[Pod]]]:
    key_of = class_key(snapshot)
    index: dict[tuple, int] = {}
    reps: list[Pod] = []
    members: list[list[Pod]] = []
    for pod in snapshot.pods:
        key = key_of(pod)
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


def _ip_blocks(snapshot: Snapshot) -> list[tuple[tuple[int, int, int], ...]]:
    """Every distinct ipBlock (cidr and excepts) and admin-policy network, as block_bits."""
    blocks: dict = {}
    for p in snapshot.policies:
        for rule in (*p.ingress, *p.egress):
            for peer in rule.peers:
                if peer.ip_block is not None:
                    blocks.setdefault((peer.ip_block.cidr, peer.ip_block.except_), None)
    for ap in snapshot.admin_policies:
        for rule in (*ap.ingress, *ap.egress):
            for peer in rule.peers:
                for cidr in peer.networks:
                    blocks.setdefault((cidr, ()), None)
    return [block_bits(cidr, excepts) for cidr, excepts in blocks]


def class_matrix(snapshot: Snapshot, pod_cidrs: Sequence[str] = DEFAULT_POD_CIDRS,
                 members: list[list[Pod]] | None = None) -> ClassMatrix:
    """Pods without an IP follow the address model of Engine (evaluate.py): inside an ipBlock that holds
    all or part of the pod CIDRs of the primary family, outside one that holds none.

    The matrix is over the snapshot's pod classes, or over `members`: groups of pods that are alike in this
    snapshot (a finer grouping than pod_classes, such as pods alike in two snapshots at once)."""
    if members is None:
        reps, members = pod_classes(snapshot)
    else:
        reps = [m[0] for m in members]
    if snapshot.admin_policies:
        return _reference_matrix(snapshot, reps, members, pod_cidrs)
    return _NetworkPolicyMatrix(snapshot, reps, pod_cidrs).build(members)


def comparable_matrices(before: Snapshot, after: Snapshot, pod_cidrs: Sequence[str],
                        members: tuple[list[list[Pod]], list[list[Pod]]]) -> tuple[ClassMatrix, ClassMatrix, bool]:
    """Two matrices over the same classes (members[0][i] in before are members[1][i] in after). With
    NetworkPolicy only, both are cut into the same atoms, so equal rows (row_of) mean equal answers and a
    diff compares rows without grouping them; the flag says whether that holds."""
    if before.admin_policies or after.admin_policies:
        return (class_matrix(before, pod_cidrs, members[0]), class_matrix(after, pod_cidrs, members[1]), False)
    old = _NetworkPolicyMatrix(before, [m[0] for m in members[0]], pod_cidrs)
    new = _NetworkPolicyMatrix(after, [m[0] for m in members[1]], pod_cidrs)
    cut = old.connsets() + new.connsets()
    return old.build(members[0], cut), new.build(members[1], cut), True


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
    def __init__(self, snapshot: Snapshot, reps: list[Pod], pod_cidrs: Sequence[str]) -> None:
        self.snapshot = snapshot
        self.pod_cidrs = primary_cidrs(pod_cidrs)
        self.reps = reps
        self.n = len(reps)
        self.everyone = (1 << self.n) - 1
        self.ns_labels = {ns.name: dict(ns.labels) for ns in snapshot.namespaces}
        # Classes in different namespaces often share labels: a selector is matched once per distinct label
        # set, giving the bitset of every class it selects; a namespace restriction is then one AND.
        self.selectable = 0
        self.kv_bits: dict[tuple[str, str], int] = defaultdict(int)  # label key=value -> classes carrying it
        self.key_bits: dict[str, int] = defaultdict(int)  # label key -> classes carrying it
        for i, p in enumerate(reps):
            if not p.host_network:
                self.selectable |= 1 << i
                for k, v in p.labels:
                    self.kv_bits[(k, v)] |= 1 << i
                    self.key_bits[k] |= 1 << i
        self.by_ns: dict[str, int] = defaultdict(int)  # namespace -> its (non host-network) classes
        for i, p in enumerate(reps):
            if not p.host_network:
                self.by_ns[p.namespace] |= 1 << i
        # The same index over namespace labels: a namespaceSelector becomes the classes of every namespace it
        # selects in a few ANDs, not one selector match per namespace (thousands of namespaces at scale).
        self.ns_kv_bits: dict[tuple[str, str], int] = defaultdict(int)
        self.ns_key_bits: dict[str, int] = defaultdict(int)
        for ns, bits in self.by_ns.items():
            for k, v in self.ns_labels.get(ns, {}).items():
                self.ns_kv_bits[(k, v)] |= bits
                self.ns_key_bits[k] |= bits
        self.port_key = [tuple(cp for cp in p.ports if cp.name) for p in reps]  # what named ports resolve on
        self._named: dict[tuple[str, str], dict[int, int]] | None = None
        self._connsets: list[ConnSet] | None = None
        self._ns_sel: dict[LabelSelector, int] = {}
        self._pod_sel: dict[LabelSelector, int] = {}
        self._ip_block: dict[object, int] = {}
        self._pieces: dict[tuple[int, str, int], list[tuple[int, int, ConnSet]]] = {}

    # selectors -> bitsets of classes (memoised: real clusters repeat the same selectors a lot)
    def ns_bits(self, sel: LabelSelector) -> int:
        r = self._ns_sel.get(sel)
        if r is None:
            r = self._ns_sel[sel] = _select(sel, self.selectable, self.ns_kv_bits, self.ns_key_bits)
        return r

    def filter_pods(self, sel: LabelSelector, candidates: int) -> int:
        if not sel.match_labels and not sel.match_expressions:
            return candidates
        selected = self._pod_sel.get(sel)
        if selected is None:
            selected = self._pod_sel[sel] = _select(sel, self.selectable, self.kv_bits, self.key_bits)
        return selected & candidates

    def peer_bits(self, peer: PolicyPeer, policy_ns: str) -> int:
        if peer.ip_block is not None:
            r = self._ip_block.get(peer.ip_block)
            if r is None:
                block = peer.ip_block
                # Without an IP: inside unless the block holds none of the pod CIDRs (the engine's model).
                unknown = block_coverage(block.cidr, block.except_, self.pod_cidrs) is not False
                bb = block_bits(block.cidr, block.except_)
                r = 0
                for i, p in enumerate(self.reps):
                    if (bool(p.ip) and in_block_bits(address_bits(p.ip), bb)) if p.addresses else unknown:
                        r |= 1 << i
                self._ip_block[block] = r
            return r
        if peer.namespace_selector is None:
            cand = self.by_ns.get(policy_ns, 0)
        else:
            cand = self.ns_bits(peer.namespace_selector)
        return cand if peer.pod_selector is None else self.filter_pods(peer.pod_selector, cand)

    def named_port_bits(self, protocol: str, name: str) -> dict[int, int]:
        """{port number: classes whose container port `name` is that number} for one (protocol, name)."""
        if self._named is None:
            self._named = defaultdict(lambda: defaultdict(int))
            for i, key in enumerate(self.port_key):
                for cp in key:
                    self._named[(cp.protocol, cp.name)][cp.port] |= 1 << i
        return self._named.get((protocol, name), {})

    def rule_pieces(self, policy: NetworkPolicy, direction: str, over: int) -> list[tuple[int, int, ConnSet]]:
        """(peer classes, destination classes, connections) per rule.

        The destination classes are those a rule's connections apply to: for egress the peers themselves,
        for ingress the policy's own pods (`over`). A named port resolves per destination, so it becomes one
        piece per port number that name has anywhere (destinations with that number only): a handful of
        ANDs per rule, however many distinct port layouts the pods have. Kept: the atoms and the rows both
        need them.
        """
        key = (id(policy), direction, over if direction == "ingress" else 0)
        out = self._pieces.get(key)
        if out is not None:
            return out
        out = self._pieces[key] = []
        for rule in policy.ingress if direction == "ingress" else policy.egress:
            peers = self.everyone if not rule.peers else 0
            for peer in rule.peers:
                peers |= self.peer_bits(peer, policy.namespace)
            if not peers:
                continue
            dsts = over if direction == "ingress" else peers
            numeric = np_rule_conns(rule, None)
            if numeric:
                out.append((peers, dsts, numeric))
            for port in rule.ports:
                if not isinstance(port.port, str):
                    continue
                for number, carriers in self.named_port_bits(port.protocol, port.port).items():
                    sub = dsts & carriers
                    if sub:
                        out.append((peers if direction == "ingress" else sub, sub, ConnSet.ports(port.protocol,
                                                                                                 number)))
        return out

    def connsets(self) -> list[ConnSet]:
        """The connection sets of every piece of every rule that applies to some class."""
        if self._connsets is None:
            self._connsets = []
            for policy in self.snapshot.policies:
                sel = self.filter_pods(policy.pod_selector, self.by_ns.get(policy.namespace, 0))
                for direction in ("ingress", "egress"):
                    if sel and direction.capitalize() in policy.policy_types:
                        self._connsets += [c for _, _, c in self.rule_pieces(policy, direction, sel)]
        return self._connsets

    def build(self, members: list[list[Pod]], cut: list[ConnSet] | None = None) -> ClassMatrix:
        """The matrix; its atoms are cut by this snapshot's rules, or by `cut` (which must hold them: see
        comparable_matrices)."""
        n, everyone = self.n, self.everyone
        policies = self.snapshot.policies
        selected_in = [0] * len(policies)
        out_profile: list[list[int]] = [[] for _ in range(n)]  # per class: indexes of its egress policies
        iso_in = 0
        for j, policy in enumerate(policies):
            sel = self.filter_pods(policy.pod_selector, self.by_ns.get(policy.namespace, 0))
            if "Ingress" in policy.policy_types:
                selected_in[j] = sel
                iso_in |= sel
            if "Egress" in policy.policy_types:
                for i in bits_of(sel):
                    out_profile[i].append(j)

        # Every piece of every rule, so that the atoms are cut once.
        ingress_pieces: list[tuple[int, int, ConnSet]] = []
        for j, policy in enumerate(policies):
            if selected_in[j]:
                ingress_pieces += self.rule_pieces(policy, "ingress", selected_in[j])
        egress_pieces: dict[int, list[tuple[int, int, ConnSet]]] = {}
        for prof in out_profile:
            for j in prof:
                if j not in egress_pieces:
                    egress_pieces[j] = self.rule_pieces(policies[j], "egress", 0)
        atoms, masks = atoms_of(self.connsets() if cut is None else cut)
        full_mask = (1 << len(atoms)) - 1

        # A row is (classes reached on every connection, {atom: classes reached on that atom only}): rules
        # without ports, the commonest kind, then cost one OR instead of one per atom.
        def add(row_full: int, row: dict[int, int], bits: int, conns: ConnSet) -> int:
            m = masks[conns]
            if m == full_mask:
                return row_full | bits
            for a in bits_of(m):
                row[a] = row.get(a, 0) | bits
            return row_full

        # Egress: one row per distinct set of egress policies (profile), made when a row needs it.
        profile_ids: dict[tuple[int, ...], int] = {}
        profile_of = [profile_ids.setdefault(tuple(prof), len(profile_ids)) for prof in out_profile]
        profiles = list(profile_ids)

        @lru_cache(maxsize=_ROW_CACHE)
        def egress_row(pid: int) -> Row:
            if not profiles[pid]:
                return everyone, {}
            row_full, sparse = 0, {}
            for j in profiles[pid]:
                for _, dsts, conns in egress_pieces[j]:
                    row_full = add(row_full, sparse, dsts, conns)
            return row_full, sparse

        # Ingress, transposed to rows by source: accumulate per distinct peer bitset (group); a source's row
        # is the union of the groups it belongs to, made once per distinct set of groups (its peer set).
        by_peers: dict[int, list] = {}
        for peers, dsts, conns in ingress_pieces:
            acc = by_peers.get(peers)
            if acc is None:
                acc = by_peers[peers] = [0, {}]
            acc[0] = add(acc[0], acc[1], dsts, conns)
        base_full, base_sparse = everyone & ~iso_in, {}
        if everyone in by_peers:  # rules open to every source: part of every row
            acc_full, base_sparse = by_peers.pop(everyone)
            base_full |= acc_full
        groups = list(by_peers.values())
        # Sources in the same groups have the same ingress row (their peer set). A group's peers can be most
        # of 20,000 classes: its members are picked in C (one selector byte per class), not bit by bit.
        member_of: list[list[int]] = [[] for _ in range(n)]
        for g, peers in enumerate(by_peers):
            for s in itertools.compress(range(n), selector_bytes(peers)):
                member_of[s].append(g)
        peer_set_ids: dict[tuple[int, ...], int] = {}
        peer_set_of = [peer_set_ids.setdefault(tuple(gs), len(peer_set_ids)) for gs in member_of]
        peer_sets = list(peer_set_ids)
        del member_of

        @lru_cache(maxsize=_ROW_CACHE)
        def ingress_row(sid: int) -> Row:
            row_full, sparse = base_full, dict(base_sparse)
            for g in peer_sets[sid]:
                acc_full, acc_sparse = groups[g]
                row_full |= acc_full
                for a, bits in acc_sparse.items():
                    sparse[a] = sparse.get(a, 0) | bits
            return row_full, sparse

        @lru_cache(maxsize=_ROW_CACHE)
        def combined_row(pid: int, sid: int) -> Row:
            e_full, e_sparse = egress_row(pid)
            i_full, i_sparse = ingress_row(sid)
            both = e_full & i_full
            cells = {}
            for a in e_sparse.keys() | i_sparse.keys():
                bits = (e_full | e_sparse.get(a, 0)) & (i_full | i_sparse.get(a, 0)) & ~both
                if bits:
                    cells[a] = bits
            return both, cells

        def row_of(s: int) -> Row:
            return combined_row(profile_of[s], peer_set_of[s])

        return ClassMatrix(tuple(self.reps), tuple(tuple(m) for m in members), tuple(atoms), row_of)


def _select(sel: LabelSelector, universe: int, kv_bits: dict[tuple[str, str], int], key_bits: dict[str, int]) -> int:
    """metav1.LabelSelector over an inverted index (label -> classes carrying it): a few big-integer ANDs."""
    selected = universe
    for kv in sel.match_labels:
        selected &= kv_bits.get(kv, 0)
    for req in sel.match_expressions:
        if req.operator in ("In", "NotIn"):
            any_of = 0
            for v in req.values:
                any_of |= kv_bits.get((req.key, v), 0)
            selected &= any_of if req.operator == "In" else ~any_of
        elif req.operator == "Exists":
            selected &= key_bits.get(req.key, 0)
        else:
            selected &= ~key_bits.get(req.key, 0)
    return selected


# ---------------------------------------------------------------------------------------- reference path
def _reference_matrix(snapshot: Snapshot, reps: list[Pod], members: list[list[Pod]],
                      pod_cidrs: Sequence[str]) -> ClassMatrix:
    engine = Engine(snapshot, pod_cidrs)
    cells = [[engine.connections(s, d) for d in reps] for s in reps]
    atoms, masks = atoms_of([c for row in cells for c in row])
    full_mask = (1 << len(atoms)) - 1
    full, partial = [], []
    for row in cells:
        row_full, sparse = 0, {}
        for d, c in enumerate(row):
            m = masks[c]
            if m == full_mask:
                row_full |= 1 << d
            else:
                for a in bits_of(m):
                    sparse[a] = sparse.get(a, 0) | 1 << d
        full.append(row_full)
        partial.append(sparse)
    rows = list(zip(full, partial, strict=True))
    return ClassMatrix(tuple(reps), tuple(tuple(m) for m in members), tuple(atoms), rows.__getitem__)

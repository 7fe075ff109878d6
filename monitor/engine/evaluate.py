"""Policy evaluation for one flow or one pod pair: the reference semantics, with explanations.

Order of evaluation, per direction (egress at the source, ingress at the destination), per connection:
1. Admin tier (AdminNetworkPolicy v1alpha1, ClusterNetworkPolicy v1alpha2 tier Admin), by priority then rule
   order: the first matching rule decides Allow or Deny; Pass hands the connection to the next tier.
2. NetworkPolicy v1: if any policy of the pod's namespace selects the pod for this direction, the union of
   their rules decides (anything not allowed is denied).
3. Baseline tier (BaselineAdminNetworkPolicy, ClusterNetworkPolicy tier Baseline), first match decides.
4. Otherwise allowed.
A flow is allowed only when both directions allow it. Connections are evaluated as sets (interval algebra),
so a point query and a whole connection set take the same code path. No I/O here.

Ties: policies of one tier at the same priority (AdminNetworkPolicy, ClusterNetworkPolicy) are ordered by the
API only by priority; when two of them match one connection, the spec lets the implementation pick either.
The engine stays deterministic (by kind, then name), says so in `ties()`, and writes "tie" into the
explanation of every connection where the policies it did not apply would have decided otherwise.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from monitor.engine.connset import ALL, EMPTY, ConnSet
from monitor.engine.selectors import (
    block_coverage,
    describe_selector,
    ip_in,
    ip_version,
    primary_cidrs,
    selector_matches,
)
from monitor.models import (
    DEFAULT_POD_CIDRS,
    AdminPolicy,
    AdminRule,
    AdminSelector,
    NetworkPolicy,
    Pod,
    PolicyPeer,
    PolicyRule,
    Snapshot,
)

Endpoint = Pod | str  # a pod, or an IP address outside the cluster's pods


@dataclass(frozen=True, slots=True)
class AdminTie:
    """Two policies of one tier at the same priority that select a common pod: the API leaves their order open."""

    tier: str
    priority: int
    first: str  # the policy the engine applies first (by kind, then name)
    second: str
    pods: tuple[str, ...]  # the pods both select

    def describe(self) -> str:
        shown = ", ".join(self.pods[:3]) + (f" and {len(self.pods) - 3} more pod(s)" if len(self.pods) > 3 else "")
        return (f"{self.first} and {self.second} have the same priority {self.priority} in the {self.tier} tier "
                f"and both select {shown}: the API leaves their order to the implementation; netpol-drift "
                f"applies {self.first} first (by kind and name) and says \"tie\" where that decides a flow")


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer for one connection, with the reasons a person needs to trust or fix it."""

    allowed: bool
    reason: str
    egress_policies: tuple[str, ...] = ()  # policies that select the source for egress
    ingress_policies: tuple[str, ...] = ()  # policies that select the destination for ingress
    egress_allowed: bool = True
    ingress_allowed: bool = True
    # Set when the answer depends on an address the snapshot does not give (a pod without an IP whose place
    # in the pod CIDRs decides an ipBlock): says which, and what each placement gives. `allowed` assumes inside.
    depends_on_ip: str = ""


class Engine:
    """Answers reachability questions for one snapshot. Build once per snapshot; queries are cheap.

    Address model (offline manifests often give no pod IP): a pod without an IP lies somewhere in `pod_cidrs`
    (its primary family: the first CIDR's). An ipBlock or admin `networks` CIDR that holds all of those CIDRs
    selects such a pod, one that holds none does not, and one that holds part of them is assumed to select it;
    `decide` then checks the other placement too and says in `depends_on_ip` when the answer moves.
    """

    def __init__(self, snapshot: Snapshot, pod_cidrs: Sequence[str] = DEFAULT_POD_CIDRS) -> None:
        self.snapshot = snapshot
        self.pod_cidrs = primary_cidrs(pod_cidrs)
        # Per query: the address family of the flow (None: the pods' primary addresses), the placement assumed
        # for pods without an IP, and the uncertain matches seen (pod, CIDR description).
        self._family: int | None = None
        self._assume_inside = True
        self._uncertain: list[tuple[Pod, str]] = []
        self.ns_labels: dict[str, dict[str, str]] = {n.name: dict(n.labels) for n in snapshot.namespaces}
        self.policies_by_ns: dict[str, list[NetworkPolicy]] = defaultdict(list)
        for p in snapshot.policies:
            self.policies_by_ns[p.namespace].append(p)
        order = sorted(snapshot.admin_policies, key=lambda p: (p.priority, p.kind, p.name))
        self.admin_tier = [p for p in order if p.tier == "Admin"]
        self.baseline_tier = [p for p in order if p.tier == "Baseline"]
        # Policies sharing a tier and a priority with another one (a BaselineAdminNetworkPolicy has no priority).
        same: dict[tuple[str, int], list[AdminPolicy]] = defaultdict(list)
        for p in order:
            if p.kind != "BaselineAdminNetworkPolicy":
                same[(p.tier, p.priority)].append(p)
        self._tied_groups = [group for group in same.values() if len(group) > 1]
        self._peers_at_priority = {p.ref: group for group in self._tied_groups for p in group}
        self.pod_by_ip = {ip: p for p in snapshot.pods if not p.host_network for ip in p.addresses}
        self._labels_cache: dict[int, dict[str, str]] = {}

    # ------------------------------------------------------------------------------------------ queries
    def resolve(self, endpoint: Endpoint) -> Endpoint:
        """An IP that belongs to a pod is that pod: policies select it by labels, not by address."""
        if isinstance(endpoint, str):
            return self.pod_by_ip.get(endpoint, endpoint)
        return endpoint

    def connections(self, src: Endpoint, dst: Endpoint) -> ConnSet:
        """Every (protocol, port) on which src may open a connection to dst (pods without an IP: assumed
        inside the ipBlocks that hold part of the pod CIDRs, as the class matrix does)."""
        self._begin(src, dst)
        src, dst = self.resolve(src), self.resolve(dst)
        egress = self._direction(src, dst, dst, "egress", ALL, None)
        if not egress:
            return EMPTY
        return egress & self._direction(dst, src, dst, "ingress", egress, None)

    def decide(self, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP", *,
               template: bool = False) -> Decision:
        """The verdict for one connection. With template=True the reason names the two endpoints by the
        SRC/DST tokens below, so one explanation can serve every pod pair of the same two classes."""
        self._begin(src, dst)
        src, dst = self.resolve(src), self.resolve(dst)
        conn = ConnSet.ports(protocol, port)
        names = {id(src): SRC, id(dst): DST} if template else {}
        etrace, itrace = _Trace(names), _Trace(names)
        egress = bool(self._direction(src, dst, dst, "egress", conn, etrace))
        ingress = bool(self._direction(dst, src, dst, "ingress", conn, itrace))
        allowed = egress and ingress
        verb = "allowed" if allowed else "denied"
        parts = [f"egress: {'; '.join(etrace)}", f"ingress: {'; '.join(itrace)}"]
        if not allowed:
            # Lead with the direction that blocked: that is what a person has to fix.
            parts = [p for p, ok in zip(parts, (egress, ingress), strict=True) if not ok]
        reason = f"{verb} {protocol}/{port}: " + " | ".join(parts)
        depends = self._depends(src, dst, conn, allowed, etrace) if self._uncertain else ""
        if depends:
            reason += f" | {depends}"
        return Decision(allowed, reason,
                        tuple(p.ref for p in self._selecting(src, "Egress")) if isinstance(src, Pod) else (),
                        tuple(p.ref for p in self._selecting(dst, "Ingress")) if isinstance(dst, Pod) else (),
                        egress, ingress, depends)

    # ------------------------------------------------------------------------------------ address model
    def _begin(self, src: Endpoint, dst: Endpoint) -> None:
        # A flow from or to an address runs in that address's family; between pods in their primary one.
        address = dst if isinstance(dst, str) else src if isinstance(src, str) else None
        self._family = ip_version(address) if address is not None else None
        self._assume_inside = True
        self._uncertain = []

    def _depends(self, src: Endpoint, dst: Endpoint, conn: ConnSet, allowed: bool, trace: _Trace) -> str:
        """The other placement of the pods without an IP: empty when it gives the same answer."""
        uncertain = self._uncertain[0]
        self._assume_inside = False
        try:
            other = bool(self._direction(src, dst, dst, "egress", conn, None)) and \
                bool(self._direction(dst, src, dst, "ingress", conn, None))
        finally:
            self._assume_inside = True
        if other == allowed:
            return ""
        pod, block = uncertain
        inside, outside = ("allowed", "denied") if allowed else ("denied", "allowed")
        return (f"DEPENDS ON AN IP THE MANIFESTS DO NOT GIVE: {trace.name(pod)} has no IP and {block} holds only "
                f"part of the pod CIDRs ({', '.join(self.pod_cidrs)}): {inside} if its IP is in it (assumed), "
                f"{outside} if not; give status.podIPs or --pod-cidr")

    def _in_block(self, peer: Endpoint, cidr: str, excepts: tuple[str, ...]) -> bool:
        """Is the peer's address (in the flow's family) in cidr minus excepts; for a pod without any IP, by
        the address model (recording an uncertain answer and assuming the current placement)."""
        if isinstance(peer, str):
            return _in(peer, cidr, excepts)
        if not peer.addresses:
            covered = block_coverage(cidr, excepts, self.pod_cidrs)
            if covered is None:
                self._uncertain.append((peer, f"{cidr}" + (f" except {', '.join(excepts)}" if excepts else "")))
                return self._assume_inside
            return covered
        if self._family is None:
            address = peer.ip
        else:
            address = next((a for a in peer.addresses if ip_version(a) == self._family), None)
        return address is not None and _in(address, cidr, excepts)

    # ------------------------------------------------------------------------------------------ directions
    def _direction(self, subject: Endpoint, peer: Endpoint, dst: Endpoint, direction: str,
                   universe: ConnSet, trace: list[str] | None) -> ConnSet:
        """What `subject` allows in `direction` with `peer`, within `universe`."""
        if not isinstance(subject, Pod) or subject.host_network:
            if trace is not None:
                what = "host-network pod" if isinstance(subject, Pod) else "address outside the pods"
                trace.append(f"{trace.name(subject)} is a {what}, no policy applies")
            return universe
        pending, allowed, passed = universe, EMPTY, EMPTY
        for policy, rule in self._admin_rules(self.admin_tier, subject, peer, direction):
            hit = pending & self._admin_rule_conns(rule, dst)
            if not hit:
                continue
            pending = pending - hit
            if rule.action == "Allow":
                allowed = allowed | hit
            elif rule.action == "Pass":
                passed = passed | hit
            if trace is not None:
                trace.append(f"{policy.ref} rule {rule.name!r} {_VERBS[rule.action]} it"
                             + self._tie_note(policy, rule, subject, peer, dst, direction, hit))
            if not pending:
                break
        rest = pending | passed
        if not rest:
            return allowed
        isolating = self._selecting(subject, "Ingress" if direction == "ingress" else "Egress")
        if isolating:
            np_allowed, rules = self._np_allowed(isolating, peer, dst, direction, rest, trace is not None)
            if trace is not None:
                names = ", ".join(p.ref for p in isolating)
                if np_allowed:
                    trace.append(f"{trace.name(subject)} is isolated by NetworkPolicy {names}; allowed by "
                                 + ", ".join(rules))
                else:
                    trace.append(f"{trace.name(subject)} is isolated by NetworkPolicy {names} and no rule allows "
                                 f"{trace.peer(peer)}")
            return allowed | np_allowed
        for policy, rule in self._admin_rules(self.baseline_tier, subject, peer, direction):
            hit = rest & self._admin_rule_conns(rule, dst)
            if not hit:
                continue
            rest = rest - hit
            if rule.action in ("Allow", "Pass"):
                allowed = allowed | hit
            if trace is not None:
                trace.append(f"{policy.ref} rule {rule.name!r} {_VERBS[rule.action]} it"
                             + self._tie_note(policy, rule, subject, peer, dst, direction, hit))
            if not rest:
                return allowed
        if trace is not None:
            trace.append(f"no NetworkPolicy selects {trace.name(subject)} for {direction}")
        return allowed | rest

    def _selecting(self, pod: Pod, policy_type: str) -> list[NetworkPolicy]:
        if pod.host_network:
            return []
        labels = self._labels(pod)
        return [p for p in self.policies_by_ns.get(pod.namespace, ())
                if policy_type in p.policy_types and selector_matches(p.pod_selector, labels)]

    def _np_allowed(self, policies: Sequence[NetworkPolicy], peer: Endpoint, dst: Endpoint, direction: str,
                    universe: ConnSet, explain: bool) -> tuple[ConnSet, list[str]]:
        allowed, rules = EMPTY, []
        for policy in policies:
            for i, rule in enumerate(policy.ingress if direction == "ingress" else policy.egress):
                if not self._np_peers_match(rule, policy.namespace, peer):
                    continue
                hit = universe & np_rule_conns(rule, dst)
                if hit:
                    allowed = allowed | hit
                    if explain:
                        rules.append(f"{policy.ref} {direction}[{i}]")
        return allowed, rules

    def _np_peers_match(self, rule: PolicyRule, policy_ns: str, peer: Endpoint) -> bool:
        if not rule.peers:
            return True
        return any(self._np_peer_matches(p, policy_ns, peer) for p in rule.peers)

    def _np_peer_matches(self, peer_spec: PolicyPeer, policy_ns: str, peer: Endpoint) -> bool:
        if peer_spec.ip_block is not None:
            # An ipBlock that covers a pod's IP selects that pod (as the upstream e2e suite expects).
            return self._in_block(peer, peer_spec.ip_block.cidr, peer_spec.ip_block.except_)
        if not isinstance(peer, Pod) or peer.host_network:
            return False
        if peer_spec.namespace_selector is None:
            if peer.namespace != policy_ns:
                return False
        elif not selector_matches(peer_spec.namespace_selector, self.ns_labels.get(peer.namespace, {})):
            return False
        return peer_spec.pod_selector is None or selector_matches(peer_spec.pod_selector, self._labels(peer))

    # ------------------------------------------------------------------------------------------ admin
    def _admin_rules(self, tier: list[AdminPolicy], subject: Pod, peer: Endpoint, direction: str):
        for policy in tier:
            if not self._admin_selects(policy.subject, subject):
                continue
            for rule in policy.ingress if direction == "ingress" else policy.egress:
                if any(self._admin_peer_matches(p, peer) for p in rule.peers):
                    yield policy, rule

    def _tie_note(self, policy: AdminPolicy, rule: AdminRule, subject: Pod, peer: Endpoint, dst: Endpoint,
                  direction: str, conns: ConnSet) -> str:
        """" (tie: ...)" when a policy at the same priority also matches these connections with another action."""
        rivals = []
        for other in self._peers_at_priority.get(policy.ref, ()):
            if other is policy or not self._admin_selects(other.subject, subject):
                continue
            for r in other.ingress if direction == "ingress" else other.egress:
                if any(self._admin_peer_matches(p, peer) for p in r.peers) and conns & self._admin_rule_conns(r, dst):
                    if r.action != rule.action:
                        rivals.append(f"{other.ref} rule {r.name!r} {_VERBS[r.action]} it")
                    break  # the first matching rule of a policy is the one that applies
        if not rivals:
            return ""
        return (f" (tie: at the same priority {policy.priority}, {'; '.join(rivals)}; the API leaves the winner to "
                f"the implementation, netpol-drift applies {policy.ref} first)")

    def ties(self) -> tuple[AdminTie, ...]:
        """Pairs of same-tier policies at one priority whose subjects share at least one pod of the snapshot."""
        out = []
        for group in self._tied_groups:
            for i, a in enumerate(group):
                for b in group[i + 1:]:
                    both = tuple(p.ref for p in self.snapshot.pods
                                 if self._admin_selects(a.subject, p) and self._admin_selects(b.subject, p))
                    if both:
                        out.append(AdminTie(a.tier, a.priority, a.ref, b.ref, both))
        return tuple(out)

    def _admin_selects(self, sel: AdminSelector, pod: Pod) -> bool:
        if pod.host_network or sel.networks:
            return False
        if sel.namespace_selector is not None and not selector_matches(
                sel.namespace_selector, self.ns_labels.get(pod.namespace, {})):
            return False
        return sel.pod_selector is None or selector_matches(sel.pod_selector, self._labels(pod))

    def _admin_peer_matches(self, sel: AdminSelector, peer: Endpoint) -> bool:
        if sel.networks:
            return any(self._in_block(peer, c, ()) for c in sel.networks)
        return isinstance(peer, Pod) and self._admin_selects(sel, peer)

    def _admin_rule_conns(self, rule: AdminRule, dst: Endpoint) -> ConnSet:
        if rule.ports is None:
            return ALL
        out = EMPTY
        for p in rule.ports:
            if p.named is not None:
                # A named port matches the destination container port of that name, whatever its protocol.
                if isinstance(dst, Pod):
                    for cp in dst.ports:
                        if cp.name == p.named:
                            out = out | ConnSet.ports(cp.protocol, cp.port)
            else:
                out = out | ConnSet.ports(p.protocol, p.port, p.end_port)
        return out

    def _labels(self, pod: Pod) -> dict[str, str]:
        key = id(pod.labels)
        cached = self._labels_cache.get(key)
        if cached is None:
            cached = self._labels_cache[key] = dict(pod.labels)
        return cached


def _in(ip: str, cidr: str, excepts: tuple[str, ...]) -> bool:
    return ip_in(ip, cidr) and not any(ip_in(ip, e) for e in excepts)


def np_rule_conns(rule: PolicyRule, dst: Endpoint) -> ConnSet:
    """The connections a NetworkPolicy rule's ports allow towards dst (named ports resolve on dst)."""
    if not rule.ports:
        return ALL
    out = EMPTY
    for p in rule.ports:
        if isinstance(p.port, str):
            if isinstance(dst, Pod):
                for cp in dst.ports:
                    if cp.name == p.port and cp.protocol == p.protocol:
                        out = out | ConnSet.ports(p.protocol, cp.port)
        else:
            out = out | ConnSet.ports(p.protocol, p.port, p.end_port)
    return out


# "denies", "passes": not rule.action.lower() + "s", which gave "denys" and "passs" in explanations.
_VERBS = {"Allow": "allows", "Deny": "denies", "Pass": "passes"}


# Tokens that no Kubernetes name, label or policy text can contain: safe to replace after the fact.
SRC, DST = "\x00src\x00", "\x00dst\x00"


class _Trace(list):
    """The steps of one direction's decision; renders endpoints by name, or by token for templates."""

    def __init__(self, names: dict[int, str]) -> None:
        super().__init__()
        self.names = names

    def name(self, endpoint: Endpoint) -> str:
        token = self.names.get(id(endpoint))
        if token:
            return token
        return endpoint.ref if isinstance(endpoint, Pod) else endpoint

    def peer(self, endpoint: Endpoint) -> str:
        token = self.names.get(id(endpoint))
        if token:
            return f"{token} [{token}labels]"
        if isinstance(endpoint, Pod):
            return f"{endpoint.ref} [{describe_selector_labels(endpoint)}]"
        return endpoint


def fill_template(reason: str, src: Endpoint, dst: Endpoint) -> str:
    """A template reason (decide(..., template=True)) for a concrete pair of endpoints."""
    for token, e in ((SRC, src), (DST, dst)):
        reason = reason.replace(f"{token}labels", describe_selector_labels(e) if isinstance(e, Pod) else "")
        reason = reason.replace(token, e.ref if isinstance(e, Pod) else e)
    return reason


def describe_selector_labels(pod: Pod) -> str:
    return ",".join(f"{k}={v}" for k, v in pod.labels) or "no labels"


__all__ = ["AdminTie", "Decision", "Endpoint", "Engine", "describe_selector", "fill_template", "np_rule_conns"]

"""The planner: a suite on a snapshot becomes concrete flows, grouped by source identity, ready to probe.

Selectors and workload names become live pods, a Service becomes its backing pods (and, when asked, its
ClusterIP), named ports become numbers (monitor.suite.expand_case does the per-case expansion). Flows are then
grouped by *source identity* (ns/workload, or ns/pod for bare pods): one probe pod per identity (per node in
per-node mode) probes all of them, wearing the labels of one live pod of that identity, and the engine judges
the same pod, so intent and observation are about the same labels. A case whose source or destination has no
live pod stays in the plan as skipped, with the reason. With a control namespace, every external target (cidr,
host) gets a control flow too, from a bare probe pod there: the last group of the plan.
This module must not talk to a cluster, evaluate policies, or read the clock.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from monitor.models import Pod, Snapshot, Verdict
from monitor.suite import Case, Suite, expand_case, identity, pods_by_namespace
from monitor.topology import service_port


@dataclass(frozen=True, slots=True)
class FlowPlan:
    """One flow to probe (or to report as skipped): a case, a source identity, a destination, a port."""

    case: str
    expected: Verdict
    source: str  # source identity; `identity@node` in per-node mode
    destination: str  # destination identity (ns/workload, ns/pod), `svc/ns/name` for a ClusterIP, or an IP
    address: str | None  # the IP the probe connects to
    port: int | None
    protocol: str
    source_pod: Pod | None = None  # the representative live pod whose labels the probe pod wears
    destination_pod: Pod | None = None
    service: str | None = None  # ns/name when the flow goes to a Service's ClusterIP
    node: str | None = None  # per-node mode: the node the probe pod is pinned to
    skip_reason: str = ""
    control: bool = False  # a control probe of an external target, from the monitor's own namespace

    @property
    def external(self) -> bool:
        """To a cidr/host destination: judged only with a control probe that shows the target answers."""
        return self.address is not None and self.destination_pod is None and self.service is None


@dataclass(frozen=True, slots=True)
class SourceGroup:
    """Every probed flow of one source identity (on one node in per-node mode): one probe pod's work."""

    identity: str
    namespace: str
    representative: Pod
    node: str | None
    flows: tuple[FlowPlan, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    groups: tuple[SourceGroup, ...]  # the control group (if any) is the last one
    skipped: tuple[FlowPlan, ...]  # flows that cannot be probed, with their reason

    @property
    def flow_count(self) -> int:
        return sum(len(g.flows) for g in self.groups)


CONTROL_POD = "netpol-drift-control"


def plan_suite(suite: Suite, snapshot: Snapshot, per_node: bool = False,
               via_cluster_ip: bool = False, control_namespace: str | None = None) -> Plan:
    """With control_namespace, every external target (cidr/host) is probed once more from a bare probe pod
    there (no workload labels): when that control does not reach it either, nothing answers there and a
    blocked probe of a case proves nothing."""
    ns_labels = {n.name: dict(n.labels) for n in snapshot.namespaces}
    by_namespace = pods_by_namespace(snapshot)  # an endpoint looks at its namespaces' pods, not at every pod
    # The representative of an identity: its first live pod by name, the same one for every case.
    representatives: dict[str, Pod] = {}
    for pod in snapshot.pods:
        if not pod.host_network:
            representatives.setdefault(identity(pod), pod)
    nodes = sorted({p.node for p in snapshot.pods if p.node and not p.host_network})

    probed: list[FlowPlan] = []
    skipped: list[FlowPlan] = []
    for case in suite.cases:
        flows = _case_flows(snapshot, case, ns_labels, by_namespace, representatives, via_cluster_ip)
        for f in flows:
            (skipped if f.skip_reason else probed).append(f)

    by_source: dict[str, list[FlowPlan]] = defaultdict(list)
    for f in probed:
        by_source[f.source].append(f)
    groups = []
    for ident in sorted(by_source):
        rep = representatives[ident]
        flows = by_source[ident]
        for node in (nodes if per_node else [None]):
            if node is None:
                groups.append(SourceGroup(ident, rep.namespace, rep, None, tuple(flows)))
            else:
                pinned = tuple(_on_node(f, node) for f in flows)
                groups.append(SourceGroup(ident, rep.namespace, rep, node, pinned))
    if control_namespace:
        control = control_group(control_namespace, [f for f in probed if f.external])
        if control is not None:
            groups.append(control)
    return Plan(tuple(groups), tuple(skipped))


def control_group(namespace: str, external: list[FlowPlan]) -> SourceGroup | None:
    """One control flow per distinct external target, from a label-less probe pod of the monitor."""
    if not external:
        return None
    pod = Pod(namespace, CONTROL_POD)
    ident = f"{namespace}/{CONTROL_POD}"
    targets = dict.fromkeys((f.address, f.port, f.protocol) for f in external)
    flows = tuple(FlowPlan("", Verdict.ALLOW, ident, address, address, port, protocol, pod, control=True)
                  for address, port, protocol in targets)
    return SourceGroup(ident, namespace, pod, None, flows)


def _on_node(f: FlowPlan, node: str) -> FlowPlan:
    return FlowPlan(f.case, f.expected, f"{f.source}@{node}", f.destination, f.address, f.port, f.protocol,
                    f.source_pod, f.destination_pod, f.service, node, f.skip_reason)


def _case_flows(snapshot: Snapshot, case: Case, ns_labels: dict[str, dict[str, str]],
                by_namespace: dict[str, list[Pod]], representatives: dict[str, Pod],
                via_cluster_ip: bool) -> list[FlowPlan]:
    out: dict[tuple, FlowPlan] = {}
    for pf in expand_case(snapshot, case, ns_labels, by_namespace):
        if pf.source is None or pf.skip_reason:
            key = ("skip", pf.source_identity, pf.destination_identity, pf.port, pf.skip_reason)
            out.setdefault(key, FlowPlan(case.name, case.expect, pf.source_identity, pf.destination_identity,
                                         None, pf.port, pf.protocol, skip_reason=pf.skip_reason))
            continue
        src_ident = identity(pf.source)
        rep = representatives.get(src_ident, pf.source)
        dst = pf.destination
        if isinstance(dst, Pod):
            if dst.ip is None:
                reason = f"destination pod {dst.ref} has no IP"
                out.setdefault(("skip", src_ident, dst.ref, pf.port, reason),
                               FlowPlan(case.name, case.expect, src_ident, identity(dst), None, pf.port,
                                        pf.protocol, rep, dst, skip_reason=reason))
                continue
            if dst.ip == rep.ip:
                continue  # a pod to itself never crosses a policy
            # Keyed by destination pod: every replica of a destination is probed (a node-local fault hits one).
            key = ("flow", src_ident, dst.ref, pf.port, pf.protocol)
            out.setdefault(key, FlowPlan(case.name, case.expect, src_ident, identity(dst), dst.ip, pf.port,
                                         pf.protocol, rep, dst))
        else:
            key = ("flow", src_ident, str(dst), pf.port, pf.protocol)
            out.setdefault(key, FlowPlan(case.name, case.expect, src_ident, str(dst), str(dst), pf.port,
                                         pf.protocol, rep, None))
    if via_cluster_ip and case.destination.service:
        out.update(_cluster_ip_flows(snapshot, case, representatives, out))
    return list(out.values())


def _cluster_ip_flows(snapshot: Snapshot, case: Case, representatives: dict[str, Pod],
                      planned: dict[tuple, FlowPlan]) -> dict[tuple, FlowPlan]:
    """The Service's own address too: catches a dataplane that enforces on pod IPs but not after DNAT."""
    svc = next((s for s in snapshot.services if s.ref == case.destination.service), None)
    if svc is None or not svc.cluster_ip:
        return {}
    sources = {f.source for f in planned.values() if not f.skip_reason}
    extra = {}
    for src in sorted(sources):
        rep = representatives[src]
        for p in case.ports:
            sp = service_port(svc, p, case.protocol)
            if sp is None:
                continue
            extra[("svc", src, svc.ref, sp.port)] = FlowPlan(
                case.name, case.expect, src, f"svc/{svc.ref}", svc.cluster_ip, sp.port, case.protocol, rep,
                None, svc.ref)
    return extra


# ----------------------------------------------------------------------------------------- suite generation
@dataclass(frozen=True, slots=True)
class GeneratedCase:
    name: str
    source: dict  # the suite's endpoint mapping
    destination: dict
    port: int
    protocol: str
    expect: Verdict
    port_name: str | None
    why: str  # the engine's explanation, for the reviewer
    depends_on_ip: str = ""  # the expectation turns on a pod IP the manifests do not give


def _endpoint_of(pod: Pod) -> dict:
    if pod.workload:
        return {"namespace": pod.namespace, "workload": pod.workload}
    return {"namespace": pod.namespace, "pod": pod.name}


def _slug(text: str) -> str:
    out = "".join(c if c.isalnum() else "-" for c in text.lower())
    while "--" in out:
        out = out.replace("--", "-")
    return out.strip("-")


def generate_cases(snapshot: Snapshot, namespaces: tuple[str, ...] = (), max_cases: int | None = None,
                   decide=None, progress: Callable[[int, int], None] | None = None) -> list[GeneratedCase]:
    """One case per ordered pair of distinct workload identities per port the destination declares, with
    the engine's verdict (`decide(src, dst, port, protocol) -> Decision`) as the expectation. Both allowed
    and denied pairs are kept; with max_cases, the two kinds are interleaved so that a cut keeps both.
    `progress(done, total)` hears of each source identity done."""
    reps: dict[str, Pod] = {}
    for pod in snapshot.pods:
        if pod.host_network or (namespaces and pod.namespace not in namespaces):
            continue
        reps.setdefault(identity(pod), pod)
    allowed, denied = [], []
    for n, src_id in enumerate(sorted(reps)):
        if progress is not None:
            progress(n, len(reps))
        for dst_id in sorted(reps):
            if src_id == dst_id:
                continue
            src, dst = reps[src_id], reps[dst_id]
            for cp in sorted(dst.ports, key=lambda c: (c.protocol, c.port)):
                d = decide(src, dst, cp.port, cp.protocol)
                name = _slug(f"{src_id}-to-{dst_id}-{cp.protocol}-{cp.port}")
                case = GeneratedCase(name, _endpoint_of(src), _endpoint_of(dst), cp.port, cp.protocol,
                                     Verdict.ALLOW if d.allowed else Verdict.DENY, cp.name, d.reason,
                                     d.depends_on_ip)
                (allowed if d.allowed else denied).append(case)
    merged = []
    for i in range(max(len(allowed), len(denied))):
        merged += [c for c in (allowed[i] if i < len(allowed) else None,
                               denied[i] if i < len(denied) else None) if c]
    if max_cases is not None:
        merged = merged[:max_cases]
    return sorted(merged, key=lambda c: c.name)


def render_suite_yaml(cases: list[GeneratedCase], source: str, name: str = "generated-baseline") -> str:
    """A commented, reviewable suite file; the same cluster state always gives the same text."""
    import json

    def flow(mapping: dict) -> str:
        return "{" + ", ".join(f"{k}: {json.dumps(v)}" for k, v in mapping.items()) + "}"

    lines = [
        f"# netpol-drift connectivity suite, generated from {source}.",
        "# Every `expect` below is what the policies say today (the engine's verdict), not what they should say:",
        "# review each case, fix the expectations that are wrong, then keep this file under version control.",
        "# Case names are stable (source, destination, protocol, port): history aligns runs on them.",
        f"name: {json.dumps(name)}",
        "cases:",
    ]
    for c in cases:
        why = " ".join(c.why.split()).replace("#", "")
        if c.depends_on_ip:
            lines.append("  # WARNING: this expectation depends on a pod IP the manifests do not give "
                         "(--pod-cidr, status.podIPs): check it before you keep it")
        lines.append(f"  # policies say {c.expect.value}: {why}")
        lines.append(f"  - name: {json.dumps(c.name)}")
        lines.append(f"    from: {flow(c.source)}")
        lines.append(f"    to: {flow(c.destination)}")
        lines.append(f"    port: {c.port}" + (f"  # {c.port_name}" if c.port_name else ""))
        lines.append(f"    protocol: {c.protocol}")
        lines.append(f"    expect: {c.expect.value}")
    if not cases:
        lines[-1] = "cases: []  # no workload pairs found"
    return "\n".join(lines) + "\n"

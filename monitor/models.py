"""Frozen dataclasses that the stages pass to each other.

Everything here is plain data: hashable, comparable, JSON-friendly through `to_jsonable`. No stage may pass
a kubernetes object, an ORM row or a mutable dict across a module boundary; it converts to these first.
This module must not import any outside library, nor do I/O.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

# Labels are kept as a sorted tuple of pairs so that objects holding them stay hashable and canonical.
Labels = tuple[tuple[str, str], ...]


def labels_of(mapping: Mapping[str, str] | None) -> Labels:
    return tuple(sorted((str(k), str(v)) for k, v in (mapping or {}).items()))


PROTOCOLS = ("TCP", "UDP", "SCTP")

# Where a pod whose manifest gives no IP is assumed to be (settings cluster.pod_cidrs, --pod-cidr): private
# IPv4 space, where nearly every cluster's pod network lies. The first CIDR's family is the primary one.
DEFAULT_POD_CIDRS = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")


# --------------------------------------------------------------------------------------------- cluster objects
@dataclass(frozen=True, slots=True)
class ContainerPort:
    port: int
    protocol: str = "TCP"
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Namespace:
    name: str
    labels: Labels = ()


@dataclass(frozen=True, slots=True)
class Pod:
    namespace: str
    name: str
    labels: Labels = ()
    ip: str | None = None
    ports: tuple[ContainerPort, ...] = ()
    node: str | None = None
    host_network: bool = False
    # "Kind/name" of the owning workload when known (Deployment/web); the identity that survives restarts.
    workload: str | None = None
    # status.podIPs beyond the primary `ip` (dual stack: the other family's address).
    other_ips: tuple[str, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def addresses(self) -> tuple[str, ...]:
        return ((self.ip,) if self.ip else ()) + self.other_ips


@dataclass(frozen=True, slots=True)
class ServicePort:
    port: int
    target_port: int | str
    protocol: str = "TCP"
    name: str | None = None


@dataclass(frozen=True, slots=True)
class Service:
    namespace: str
    name: str
    selector: Labels | None = None
    cluster_ip: str | None = None
    ports: tuple[ServicePort, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


# ------------------------------------------------------------------------------------------------ selectors
@dataclass(frozen=True, slots=True)
class Requirement:
    key: str
    operator: str  # In, NotIn, Exists, DoesNotExist
    values: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A metav1.LabelSelector; the empty selector matches everything."""

    match_labels: Labels = ()
    match_expressions: tuple[Requirement, ...] = ()


# -------------------------------------------------------------------------------------- NetworkPolicy v1
@dataclass(frozen=True, slots=True)
class IPBlock:
    cidr: str
    except_: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PolicyPeer:
    """One entry of from/to. Exactly one of ip_block or (pod_selector and/or namespace_selector) is set."""

    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    ip_block: IPBlock | None = None


@dataclass(frozen=True, slots=True)
class PolicyPort:
    protocol: str = "TCP"
    port: int | str | None = None  # None: every port of the protocol; str: a named port
    end_port: int | None = None


@dataclass(frozen=True, slots=True)
class PolicyRule:
    # An empty tuple means "every peer" / "every port", as a missing or empty list does in the API.
    peers: tuple[PolicyPeer, ...] = ()
    ports: tuple[PolicyPort, ...] = ()


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    namespace: str
    name: str
    pod_selector: LabelSelector = LabelSelector()
    policy_types: frozenset[str] = frozenset({"Ingress"})
    ingress: tuple[PolicyRule, ...] = ()
    egress: tuple[PolicyRule, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


# ---------------------------------------------------------- AdminNetworkPolicy & co (both API generations)
@dataclass(frozen=True, slots=True)
class AdminSelector:
    """Subject or peer of an admin policy: namespaces, or pods within selected namespaces, or networks."""

    namespace_selector: LabelSelector | None = None
    pod_selector: LabelSelector | None = None  # None: every pod of the selected namespaces
    networks: tuple[str, ...] = ()  # CIDRs (egress peers only)


@dataclass(frozen=True, slots=True)
class AdminPort:
    protocol: str = "TCP"
    port: int | None = None  # None with named None: every port of the protocol
    end_port: int | None = None
    named: str | None = None


@dataclass(frozen=True, slots=True)
class AdminRule:
    name: str
    action: str  # Allow, Deny, Pass (v1alpha2's Accept is normalised to Allow)
    peers: tuple[AdminSelector, ...] = ()
    ports: tuple[AdminPort, ...] | None = None  # None: every connection


@dataclass(frozen=True, slots=True)
class AdminPolicy:
    kind: str  # AdminNetworkPolicy, BaselineAdminNetworkPolicy, ClusterNetworkPolicy
    name: str
    tier: str  # Admin or Baseline
    priority: int
    subject: AdminSelector
    ingress: tuple[AdminRule, ...] = ()
    egress: tuple[AdminRule, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"


# ------------------------------------------------------------------------------------------------- snapshot
@dataclass(frozen=True, slots=True)
class Snapshot:
    """What the engine needs of a cluster, canonical (sorted) so that equal clusters give equal digests."""

    namespaces: tuple[Namespace, ...] = ()
    pods: tuple[Pod, ...] = ()
    services: tuple[Service, ...] = ()
    policies: tuple[NetworkPolicy, ...] = ()
    admin_policies: tuple[AdminPolicy, ...] = ()

    @staticmethod
    def build(namespaces: Iterable[Namespace] = (), pods: Iterable[Pod] = (), services: Iterable[Service] = (),
              policies: Iterable[NetworkPolicy] = (), admin_policies: Iterable[AdminPolicy] = ()) -> Snapshot:
        """Sorted construction; namespaces that pods or policies use but nobody declared are added bare."""
        ns = {n.name: n for n in namespaces}
        pods, services, policies = list(pods), list(services), list(policies)
        for obj in (*pods, *services, *policies):
            ns.setdefault(obj.namespace, Namespace(obj.namespace))
        # Every namespace carries the immutable kubernetes.io/metadata.name label (API server >= 1.21).
        named = []
        for n in ns.values():
            labels = dict(n.labels)
            labels["kubernetes.io/metadata.name"] = n.name
            named.append(Namespace(n.name, labels_of(labels)))
        return Snapshot(
            namespaces=tuple(sorted(named, key=lambda n: n.name)),
            pods=tuple(sorted(pods, key=lambda p: (p.namespace, p.name))),
            services=tuple(sorted(services, key=lambda s: (s.namespace, s.name))),
            policies=tuple(sorted(policies, key=lambda p: (p.namespace, p.name))),
            admin_policies=tuple(sorted(admin_policies, key=lambda p: (p.tier, p.priority, p.kind, p.name))),
        )


# ------------------------------------------------------------------------------------------ runs & results
class Outcome(enum.StrEnum):
    """What a probe saw. `skipped` means the probe could not run: it is never a verdict."""

    CONNECTED = "connected"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    ERROR = "error"
    SKIPPED = "skipped"
    # The probe agent's passes disagreed (a fresh pod racing its CNI rules, or a flapping flow): not a verdict.
    UNSETTLED = "unsettled"


class Verdict(enum.StrEnum):
    ALLOW = "allow"
    DENY = "deny"
    UNKNOWN = "unknown"  # the outcome does not say (UDP without an answer, an ambiguous refusal...)
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class FlowResult:
    """One concrete flow of a suite case, as planned, evaluated and (in live mode) probed."""

    case: str
    source: str  # stable source identity (ns/workload or ns/pod), not a pod name that changes on restart
    destination: str  # ns/workload, ns/pod, Service ns/name or an IP
    port: int
    protocol: str
    expected: Verdict
    intent: Verdict  # the engine's answer from the policies
    outcome: Outcome = Outcome.SKIPPED
    verdict: Verdict = Verdict.SKIPPED  # the observed answer, mapped from the outcome
    latency_ms: float | None = None
    attempts: int = 0
    explanation: str = ""
    reason: str = ""  # why skipped / error detail
    node: str | None = None

    @property
    def key(self) -> str:
        """Aligns the same flow across runs and clusters."""
        return f"{self.case}|{self.source}|{self.destination}|{self.port}/{self.protocol}"

    @property
    def observed(self) -> bool:
        return self.verdict in (Verdict.ALLOW, Verdict.DENY)

    @property
    def violation(self) -> bool:
        """Observed (or, offline, intended) reachability contradicts the suite's expectation."""
        seen = self.verdict if self.observed else None
        return seen is not None and seen != self.expected

    @property
    def enforcement_gap(self) -> bool:
        """The dataplane does not do what the policies say."""
        return self.observed and self.intent in (Verdict.ALLOW, Verdict.DENY) and self.verdict != self.intent


@dataclass(frozen=True, slots=True)
class Run:
    cluster: str
    started_at: str  # ISO 8601 UTC
    finished_at: str | None
    trigger: str  # manual, schedule, watch, import
    snapshot_digest: str
    suite_digest: str
    results: tuple[FlowResult, ...] = ()
    status: str = "ok"  # ok, partial, failed
    error: str | None = None
    id: str | None = None
    trigger_detail: str | None = None  # what triggered it in words, e.g. the changed objects of a `change` run


# Case statuses that say "not verified": nothing contradicted the expectation, but not every flow was judged.
UNVERIFIED_STATUSES = ("partial", "unknown", "skipped")


def suite_exit_code(statuses: Iterable[str], allow_skipped: bool = False) -> int:
    """DESIGN.md's exit codes for `check` and `run`: 0 only when every case was verified and met; 1 when some
    case failed, or (unless allow_skipped) could not be verified. An empty suite verifies nothing."""
    statuses = list(statuses)
    if not statuses or "fail" in statuses:
        return 1
    if allow_skipped:
        return 0
    return 0 if all(s == "pass" for s in statuses) else 1


# ------------------------------------------------------------------------------------------------- helpers
def to_jsonable(obj: Any) -> Any:
    """Dataclasses, enums, tuples and frozensets to JSON-ready values, deterministically."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name.rstrip("_"): to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, frozenset):
        return sorted(to_jsonable(v) for v in obj)
    if isinstance(obj, (tuple, list)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    return obj


"""The connectivity suite: its file format, validation, and expansion of endpoints to pods.

Format (YAML; see config/examples/shop/suite.yaml and docs/suite.md):

    name: shop-baseline          # optional
    defaults: {protocol: TCP}    # optional
    cases:
      - name: frontend-to-api    # unique, stable: history aligns runs and clusters on it
        from: {namespace: shop, workload: frontend}
        to:   {namespace: shop, workload: api}   # or service: shop/api, cidr: 10.0.0.0/8, host: 192.0.2.1
        port: 8080               # or ports: [80, http]; a name resolves on the destination pod
        protocol: TCP            # TCP (default), UDP, SCTP
        expect: allow            # allow | deny

An endpoint selects pods by `namespace` plus one of `pod`, `workload` (name or Kind/name) or `podSelector`
(a label selector; `labels:` is shorthand for its matchLabels), or several namespaces by `namespaceSelector`.
Unknown keys are errors. This module must not evaluate policies (the engine does) nor talk to a cluster.
"""

from __future__ import annotations

import difflib
import hashlib
import ipaddress
import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitor.engine.selectors import selector_matches
from monitor.errors import InputError, syntax_error
from monitor.manifests import parse_selector, read_yaml
from monitor.models import PROTOCOLS, LabelSelector, Pod, Service, Snapshot, Verdict, labels_of
from monitor.topology import backing_pods, owning_workload, pod_port, service_port, workload_matches

_ENDPOINT_KEYS = ("namespace", "pod", "workload", "podSelector", "labels", "namespaceSelector",
                  "service", "cidr", "host")
_CASE_KEYS = ("name", "from", "to", "port", "ports", "protocol", "expect", "description")


@dataclass(frozen=True, slots=True)
class Endpoint:
    namespace: str | None = None
    pod: str | None = None
    workload: str | None = None
    pod_selector: LabelSelector | None = None
    namespace_selector: LabelSelector | None = None
    service: str | None = None  # ns/name
    cidr: str | None = None
    host: str | None = None

    def describe(self) -> str:
        if self.service:
            return f"svc/{self.service}"
        if self.host or self.cidr:
            return self.host or self.cidr or ""
        ns = self.namespace or "*"
        if self.pod:
            return f"{ns}/{self.pod}"
        if self.workload:
            return f"{ns}/{self.workload}"
        if self.pod_selector is not None:
            from monitor.engine.selectors import describe_selector
            return f"{ns}[{describe_selector(self.pod_selector)}]"
        return f"{ns}/*"

    @property
    def is_address(self) -> bool:
        return bool(self.cidr or self.host)


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    source: Endpoint
    destination: Endpoint
    ports: tuple[int | str, ...]
    protocol: str
    expect: Verdict
    description: str = ""
    ports_key: str = "port"  # which key the suite used (port or ports), for error messages

    def port_field(self, index: int) -> str:
        return "port" if self.ports_key == "port" else f"ports[{index}]"


@dataclass(frozen=True, slots=True)
class Suite:
    name: str
    cases: tuple[Case, ...]
    digest: str
    source: str = "<suite>"


class _SuiteCtx:
    def __init__(self, source: str, obj: str) -> None:
        self.source, self.obj = source, obj

    def error(self, field: str, message: str) -> InputError:
        return InputError(message, file=self.source, obj=self.obj, field=field)


def load_suite(path: str | Path) -> Suite:
    import yaml

    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot read suite: {e.strerror}", file=source) from e
    try:
        data = read_yaml(text)
    except yaml.YAMLError as e:
        raise syntax_error(e, "YAML", file=source) from e
    return parse_suite(data, source)


def parse_suite(data: Any, source: str = "<suite>") -> Suite:
    if not isinstance(data, dict):
        raise InputError("a suite must be a mapping with a `cases` list", file=source)
    for key in data:
        if key not in ("name", "defaults", "cases", "apiVersion", "kind"):
            raise InputError("unknown key (expected name, defaults, cases)", file=source, field=str(key))
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict) or set(defaults) - {"protocol"}:
        raise InputError("defaults may only set protocol", file=source, field="defaults")
    raw_cases = data.get("cases")
    if not isinstance(raw_cases, list) or not raw_cases:
        raise InputError("must be a non-empty list", file=source, field="cases")
    cases, seen = [], set()
    for i, raw in enumerate(raw_cases):
        name = raw.get("name") if isinstance(raw, dict) else None
        ctx = _SuiteCtx(source, f"case {name or '#' + str(i + 1)}")
        case = _parse_case(raw, defaults, ctx)
        if case.name in seen:
            raise ctx.error("name", "duplicate case name (names must be unique: history aligns on them)")
        seen.add(case.name)
        cases.append(case)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    digest = hashlib.sha256(canonical.encode()).hexdigest()
    return Suite(str(data.get("name") or Path(source).stem), tuple(cases), digest, source)


def _parse_case(raw: Any, defaults: dict, ctx: _SuiteCtx) -> Case:
    if not isinstance(raw, dict):
        raise ctx.error("", "a case must be a mapping")
    for key in raw:
        if key not in _CASE_KEYS:
            raise ctx.error(str(key), f"unknown key (expected one of: {', '.join(_CASE_KEYS)})")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ctx.error("name", "missing")
    for key in ("from", "to", "expect"):
        if key not in raw:
            raise ctx.error(key, "missing")
    expect = raw["expect"]
    if expect not in ("allow", "deny"):
        raise ctx.error("expect", f"must be allow or deny, got {expect!r}")
    protocol = raw.get("protocol", defaults.get("protocol", "TCP"))
    if protocol not in PROTOCOLS:
        raise ctx.error("protocol", f"must be TCP, UDP or SCTP, got {protocol!r}")
    if "port" in raw and "ports" in raw:
        raise ctx.error("ports", "set port or ports, not both")
    ports_raw = raw.get("ports", [raw["port"]] if "port" in raw else None)
    if not isinstance(ports_raw, list) or not ports_raw:
        raise ctx.error("port", "missing (a port number or name, or a ports list)")
    ports: list[int | str] = []
    for j, p in enumerate(ports_raw):
        field = "port" if "port" in raw else f"ports[{j}]"
        if isinstance(p, bool) or not isinstance(p, (int, str)):
            raise ctx.error(field, f"must be a port number or name, got {p!r}")
        if isinstance(p, str) and p.isdigit():
            p = int(p)
        if isinstance(p, int) and not 1 <= p <= 65535:
            raise ctx.error(field, f"must be 1-65535, got {p}")
        ports.append(p)
    source = _parse_endpoint(raw["from"], ctx, "from", destination=False)
    destination = _parse_endpoint(raw["to"], ctx, "to", destination=True)
    if destination.is_address and any(isinstance(p, str) for p in ports):
        raise ctx.error("port", "a named port needs a pod destination, not an address")
    description = raw.get("description") or ""
    if not isinstance(description, str):
        raise ctx.error("description", f"must be a string, got {type(description).__name__}")
    return Case(name.strip(), source, destination, tuple(ports), protocol, Verdict(expect), description,
                "port" if "port" in raw else "ports")


_TEXT_KEYS = ("namespace", "pod", "workload", "service", "cidr", "host")


def _parse_endpoint(raw: Any, ctx: _SuiteCtx, field: str, destination: bool) -> Endpoint:
    if not isinstance(raw, dict) or not raw:
        raise ctx.error(field, "must be a mapping such as {namespace: shop, workload: api}")
    for key in raw:
        if key not in _ENDPOINT_KEYS:
            raise ctx.error(f"{field}.{key}", f"unknown key (expected one of: {', '.join(_ENDPOINT_KEYS)})")
        if key in _TEXT_KEYS and not (isinstance(raw[key], str) and raw[key]):
            raise ctx.error(f"{field}.{key}", f"must be a non-empty string, got {raw[key]!r}")
    if not destination:
        for key in ("service", "cidr", "host"):
            if key in raw:
                raise ctx.error(f"{field}.{key}", "only a destination can be a Service or an address")
    kinds = [k for k in ("pod", "workload", "podSelector", "labels", "service", "cidr", "host") if k in raw]
    if len(kinds) > 1:
        raise ctx.error(f"{field}.{kinds[1]}", f"cannot be combined with {kinds[0]}")
    if "host" in raw or "cidr" in raw:
        key = "host" if "host" in raw else "cidr"
        try:
            parsed = ipaddress.ip_address(raw[key]) if key == "host" else ipaddress.ip_network(raw[key], strict=False)
        except ValueError as e:
            what = "IP address" if key == "host" else "CIDR"
            raise ctx.error(f"{field}.{key}", f"invalid {what} {raw[key]!r}") from e
        value = str(parsed)
        if set(raw) != {key}:
            raise ctx.error(f"{field}.{key}", "an address cannot be combined with other keys")
        return Endpoint(**{key: value})
    if "service" in raw:
        svc = str(raw["service"])
        if "/" not in svc:
            if not raw.get("namespace"):
                raise ctx.error(f"{field}.service", "give namespace/name or set namespace")
            svc = f"{raw['namespace']}/{svc}"
        return Endpoint(namespace=svc.split("/", 1)[0], service=svc)
    ns = raw.get("namespace")
    ns_selector = None
    if "namespaceSelector" in raw:
        if ns:
            raise ctx.error(f"{field}.namespaceSelector", "cannot be combined with namespace")
        ns_selector = parse_selector(raw["namespaceSelector"], ctx, f"{field}.namespaceSelector")
    elif not isinstance(ns, str) or not ns:
        raise ctx.error(f"{field}.namespace", "missing (or give namespaceSelector)")
    pod_selector = None
    if "podSelector" in raw:
        pod_selector = parse_selector(raw["podSelector"], ctx, f"{field}.podSelector")
    elif "labels" in raw:
        if not isinstance(raw["labels"], dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in raw["labels"].items()):
            raise ctx.error(f"{field}.labels", "must be a mapping of label key to value (strings)")
        pod_selector = LabelSelector(labels_of(raw["labels"]))
    if ns_selector is not None and (raw.get("pod") or raw.get("workload")):
        raise ctx.error(f"{field}.{'pod' if raw.get('pod') else 'workload'}", "needs a single namespace")
    return Endpoint(namespace=ns, pod=raw.get("pod"), workload=raw.get("workload"), pod_selector=pod_selector,
                    namespace_selector=ns_selector)


# ---------------------------------------------------------------------------------------------- expansion
def identity(pod: Pod) -> str:
    """A pod's stable identity: its workload when known (pod names change on every rollout)."""
    workload = owning_workload(pod)
    return f"{pod.namespace}/{workload.partition('/')[2]}" if workload else pod.ref


def pods_by_namespace(snapshot: Snapshot) -> dict[str, list[Pod]]:
    """The snapshot's pods per namespace, in snapshot order: build once per snapshot for many cases."""
    out: dict[str, list[Pod]] = {}
    for pod in snapshot.pods:
        out.setdefault(pod.namespace, []).append(pod)
    return out


def resolve_pods(snapshot: Snapshot, endpoint: Endpoint, ns_labels: dict[str, dict[str, str]] | None = None,
                 by_namespace: dict[str, list[Pod]] | None = None) -> tuple[Pod, ...]:
    """The live (non-host-network) pods an endpoint names; empty when none exist right now."""
    if endpoint.is_address:
        return ()
    if ns_labels is None:
        ns_labels = {n.name: dict(n.labels) for n in snapshot.namespaces}
    if endpoint.service:
        svc = next((s for s in snapshot.services if s.ref == endpoint.service), None)
        if svc is None:
            return ()
        return backing_pods(snapshot, svc, None if by_namespace is None else by_namespace.get(svc.namespace, ()))
    if by_namespace is None:
        candidates: Iterable[Pod] = snapshot.pods
    elif endpoint.namespace_selector is not None:
        candidates = [p for ns, pods in by_namespace.items()
                      if selector_matches(endpoint.namespace_selector, ns_labels.get(ns, {})) for p in pods]
    else:
        candidates = by_namespace.get(endpoint.namespace or "", [])
    out = []
    for pod in candidates:
        if pod.host_network:
            continue
        if endpoint.namespace_selector is not None:
            if not selector_matches(endpoint.namespace_selector, ns_labels.get(pod.namespace, {})):
                continue
        elif pod.namespace != endpoint.namespace:
            continue
        if endpoint.pod and pod.name != endpoint.pod:
            continue
        if endpoint.workload and not workload_matches(pod, endpoint.workload):
            continue
        if endpoint.pod_selector is not None and not selector_matches(endpoint.pod_selector, dict(pod.labels)):
            continue
        out.append(pod)
    return tuple(out)


def suite_namespaces(suite: Suite) -> frozenset[str] | None:
    """The namespaces whose pods the suite can touch; None when a case reaches any (a namespace selector, or a
    selector with no namespace)."""
    names: set[str] = set()
    for case in suite.cases:
        for e in (case.source, case.destination):
            if e.is_address:
                continue
            if e.service:
                names.add(e.service.partition("/")[0])
            elif e.namespace and e.namespace_selector is None:
                names.add(e.namespace)
            else:
                return None
    return frozenset(names)


def validate_suite(suite: Suite, snapshot: Snapshot) -> None:
    """Names that cannot exist are input errors (a missing namespace is a typo, not an empty result)."""
    namespaces = {n.name for n in snapshot.namespaces}
    services = {s.ref: s for s in snapshot.services}
    for case in suite.cases:
        ctx = _SuiteCtx(suite.source, f"case {case.name}")
        for field, ep in (("from", case.source), ("to", case.destination)):
            if ep.namespace and not ep.service and ep.namespace not in namespaces:
                raise ctx.error(f"{field}.namespace", f"namespace {ep.namespace!r} does not exist")
            if ep.service and ep.service not in services:
                raise ctx.error(f"{field}.service", f"Service {ep.service!r} does not exist")
        if case.destination.service:
            _check_service_ports(case, services[case.destination.service], ctx)


def _check_service_ports(case: Case, service: Service, ctx: _SuiteCtx) -> None:
    """A Service case names the Service's own ports: anything else is a typo, never a fallback to pod ports."""
    for j, p in enumerate(case.ports):
        if service_port(service, p, case.protocol) is None:
            have = ", ".join(f"{sp.port}/{sp.protocol}" + (f" ({sp.name})" if sp.name else "")
                             for sp in service.ports) or "none"
            raise ctx.error(case.port_field(j), f"{p!r} is not a {case.protocol} port of Service {service.ref} "
                                                f"(its ports: {have})")


@dataclass(frozen=True, slots=True)
class PlannedFlow:
    """One concrete flow of a case on a snapshot: a source pod, a destination pod or address, a port.

    A flow that cannot be made concrete (no live source pod, no destination, an unknown named port) carries
    `skip_reason` and must end up `skipped`, never as a verdict.
    """

    case: Case
    source: Pod | None
    destination: Pod | str | None
    port: int | None
    protocol: str
    skip_reason: str = ""

    @property
    def source_identity(self) -> str:
        return identity(self.source) if self.source else self.case.source.describe()

    @property
    def destination_identity(self) -> str:
        if isinstance(self.destination, Pod):
            return identity(self.destination)
        return self.destination or self.case.destination.describe()


def expand_case(snapshot: Snapshot, case: Case, ns_labels: dict[str, dict[str, str]] | None = None,
                by_namespace: dict[str, list[Pod]] | None = None) -> list[PlannedFlow]:
    """Source pods x destination pods (or the address) x ports, in a stable order. `by_namespace`
    (pods_by_namespace) saves a scan of every pod per endpoint when expanding many cases."""
    sources = resolve_pods(snapshot, case.source, ns_labels, by_namespace)
    if not sources:
        return [PlannedFlow(case, None, None, None, case.protocol,
                            no_pod_reason(snapshot, case.source, "source", by_namespace))]
    dst = case.destination
    if dst.is_address:
        address = dst.host or _first_host(dst.cidr or "")
        return [PlannedFlow(case, s, address, p, case.protocol) for s in sources for p in case.ports
                if isinstance(p, int)]
    destinations = resolve_pods(snapshot, dst, ns_labels, by_namespace)
    if not destinations:
        reason = no_pod_reason(snapshot, dst, "destination", by_namespace)
        return [PlannedFlow(case, s, None, None, case.protocol, reason) for s in sources]
    service = next((s for s in snapshot.services if s.ref == dst.service), None) if dst.service else None
    flows = []
    for s in sources:
        for d in destinations:
            if d is s:
                continue
            for p in case.ports:
                port: int | str | None = p
                if service is not None:
                    # A Service case names the Service port; the packet reaches the pod on its targetPort.
                    # validate_suite rejects a port the Service does not have: no fallback to the pod port.
                    sp = service_port(service, p, case.protocol)
                    if sp is None:
                        flows.append(PlannedFlow(case, s, d, None, case.protocol,
                                                 f"{p!r} is not a {case.protocol} port of Service {service.ref}"))
                        continue
                    port = sp.target_port
                number = pod_port(d, port, case.protocol) if port is not None else None
                if number is None:
                    flows.append(PlannedFlow(case, s, d, None, case.protocol,
                                             f"{d.ref} declares no {case.protocol} port named {port!r}"))
                else:
                    flows.append(PlannedFlow(case, s, d, number, case.protocol))
    if not flows:
        # Every pair was a pod and itself: nothing crosses a policy, so nothing can be verified.
        only = ", ".join(p.ref for p in sources)
        flows.append(PlannedFlow(case, sources[0], sources[0], None, case.protocol,
                                 f"from a workload to itself: its only pod ({only}) would talk to itself, which no "
                                 f"NetworkPolicy governs (a case needs a second pod or another destination)"))
    return flows


def no_pod_reason(snapshot: Snapshot, endpoint: Endpoint, role: str,
                  by_namespace: dict[str, list[Pod]] | None = None) -> str:
    """Why an endpoint matched no pod, with the likely typo when its namespace does have pods."""
    reason = f"no live pod matches {role} {endpoint.describe()}"
    ns = endpoint.namespace if endpoint.namespace_selector is None and not endpoint.service else None
    if ns is None:
        return reason
    in_ns = snapshot.pods if by_namespace is None else by_namespace.get(ns, ())
    pods = [p for p in in_ns if p.namespace == ns and not p.host_network]
    if not pods:
        return f"{reason} (namespace {ns} has no pods)"
    if endpoint.pod:
        names = sorted({p.name for p in pods})
        wanted = endpoint.pod
    else:
        names = sorted({_workload_name(p, endpoint.workload) for p in pods})
        wanted = endpoint.workload or ""
    close = difflib.get_close_matches(wanted, names, n=3, cutoff=0.6) if wanted else []
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    listed = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "")
    what = "pods" if endpoint.pod else "workloads"
    return f"{reason}, but namespace {ns} has pods: likely a typo; {hint}{what} there: {listed}"


def _workload_name(pod: Pod, wanted: str | None) -> str:
    """How a suite would name this pod's workload, in the same form as `wanted` (name or Kind/name)."""
    workload = owning_workload(pod)
    if workload is None:
        return pod.name
    return workload if wanted and "/" in wanted else workload.partition("/")[2]


def _first_host(cidr: str) -> str:
    net = ipaddress.ip_network(cidr, strict=False)
    return str(net.network_address if net.num_addresses == 1 else next(net.hosts()))

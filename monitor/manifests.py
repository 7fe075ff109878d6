"""Reads Kubernetes manifests (YAML or JSON, multi-document, `kind: List`) into a Snapshot.

Also home of the object parsers shared with live mode: plain dicts in the API's JSON shape -> models. Policy
objects are parsed strictly (an unknown field is an error, since a typo silently changes what a policy
allows); other objects are read for the few fields the engine needs. Every error is an InputError naming the
file, the object (Kind ns/name) and the field path. This module must not evaluate policies.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from monitor.cycles import no_cycle_collection
from monitor.errors import InputError, syntax_error
from monitor.models import (
    PROTOCOLS,
    AdminPolicy,
    AdminPort,
    AdminRule,
    AdminSelector,
    ContainerPort,
    IPBlock,
    LabelSelector,
    Namespace,
    NetworkPolicy,
    Pod,
    PolicyPeer,
    PolicyPort,
    PolicyRule,
    Requirement,
    Service,
    ServicePort,
    Snapshot,
    labels_of,
)
from monitor.topology import owning_workload
from monitor.yamlload import bounded_loader, check_aliases, may_alias

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob",
                  "ReplicationController")
_OPERATORS = ("In", "NotIn", "Exists", "DoesNotExist")


class _Ctx:
    """Where we are while parsing one object, for error messages."""

    def __init__(self, source: str, obj: dict) -> None:
        # Built before anything is validated: any value must render (the fields' own checks say what is wrong).
        meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
        self.source = source
        ns = meta.get("namespace")
        name = meta.get("name") or "<unnamed>"
        self.obj = f"{obj.get('kind') or '<no kind>'} {f'{ns}/' if ns else ''}{name}"

    def error(self, field: str, message: str) -> InputError:
        return InputError(message, file=self.source, obj=self.obj, field=field)


# --------------------------------------------------------------------------------------------- file reading
def iter_manifest_files(directory: str | Path) -> list[Path]:
    root = Path(directory)
    if not root.exists():
        raise InputError("no such directory", file=str(root))
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES)


def iter_documents(path: Path) -> Iterator[dict]:
    """Every object in a file, with `kind: List` (and *List kinds) flattened."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read: {e}", file=str(path)) from e
    try:
        if path.suffix.lower() == ".json":
            docs = [json.loads(text)]
        else:
            docs = _json_document(text)  # `kubectl get -o json > dump.yaml`: JSON is YAML, and 20x faster
            if docs is None:
                docs = list(_load_yaml(text))
    except json.JSONDecodeError as e:
        raise syntax_error(e, "JSON", file=str(path)) from e
    except yaml.YAMLError as e:
        raise syntax_error(e, "YAML", file=str(path)) from e
    for doc in docs:
        yield from _flatten(doc, str(path))


def _json_document(text: str) -> list | None:
    """The document of a YAML file that is one JSON object, or None to read it as YAML."""
    if not text.lstrip().startswith("{"):
        return None
    try:
        return [json.loads(text)]
    except ValueError:
        return None  # a YAML flow mapping, or broken: the YAML reader parses it or says where it is broken


def _load_yaml(text: str) -> Iterator[Any]:
    """yaml.safe_load_all with libyaml, and plain values built without PyYAML's generic constructor.

    libyaml parses in C, but PyYAML then builds every value through Python generators and resolves every
    plain scalar with regular expressions: ~4 s for 10,000 objects. Here a plain scalar's tag is resolved once
    per distinct text, and documents of mappings, sequences and str/int scalars are built directly. Any
    other tag (merge keys, timestamps, sets...) or a document that fails is built by PyYAML itself, so values
    and error messages stay PyYAML's.
    """

    loader = _fast_loader()(text)
    measure = may_alias(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            if measure:
                check_aliases(node)
            try:
                yield _build(node, {})
            except _Generic:
                yield loader.construct_document(node)
    finally:
        loader.dispose()


def read_yaml(text: str) -> Any:
    """One YAML document as yaml.safe_load reads it (None when empty, an error when there are several),
    parsed by libyaml: a 1,000-case suite takes 0.1 s instead of 0.8 s."""
    import yaml

    loader = _bounded_fast_loader() if may_alias(text) else _fast_loader()  # alias bombs: see yamlload.py
    return yaml.load(text, Loader=loader)  # a SafeLoader: plain data only


class _Generic(Exception):
    """A node the direct builder leaves to PyYAML's constructor."""


_STR, _INT = "tag:yaml.org,2002:str", "tag:yaml.org,2002:int"
_MAP, _SEQ = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"
_NULL, _BOOL = "tag:yaml.org,2002:null", "tag:yaml.org,2002:bool"
_BOOLS = {"true": True, "True": True, "TRUE": True, "false": False, "False": False, "FALSE": False}


def _build(node: Any, seen: dict[int, Any]) -> Any:
    tag = node.tag
    if tag == _STR:
        return node.value
    if tag == _MAP:
        if id(node) in seen:  # an alias: the same object, as PyYAML gives
            return seen[id(node)]
        out = seen[id(node)] = {}
        for k, v in node.value:
            if k.tag != _STR:
                raise _Generic  # merge keys, non-string keys: PyYAML's rules and errors
            out[k.value] = v.value if v.tag == _STR else _build(v, seen)
        return out
    if tag == _SEQ:
        if id(node) in seen:
            return seen[id(node)]
        items = seen[id(node)] = []
        items.extend(v.value if v.tag == _STR else _build(v, seen) for v in node.value)
        return items
    if tag == _INT and node.value.isdigit() and (node.value == "0" or node.value[0] != "0"):
        return int(node.value)  # decimal only: 0o17, 0x1f, 1_000 and sexagesimal go to PyYAML
    if tag == _NULL:
        return None
    if tag == _BOOL and node.value in _BOOLS:
        return _BOOLS[node.value]
    raise _Generic


@functools.cache
def _bounded_fast_loader() -> type:
    return bounded_loader(_fast_loader())


@functools.cache
def _fast_loader() -> type:
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    # A plain scalar's tag depends on its text alone (SafeLoader has no path resolvers): one cache for every
    # file read by this process.
    plain: dict[str, str] = {}
    resolve_any = base.resolve

    class FastLoader(base):  # type: ignore[misc, valid-type]
        def resolve(self, kind: type, value: Any, implicit: Any, _scalar: type = yaml.ScalarNode,
                    _get: Any = plain.get) -> str:
            if kind is _scalar and implicit[0]:
                tag = _get(value)
                if tag is None:
                    if len(plain) > 500_000:  # a long-lived process reading many files: keep it bounded
                        plain.clear()
                    tag = plain[value] = resolve_any(self, kind, value, implicit)
                return tag
            return resolve_any(self, kind, value, implicit)

    return FastLoader


def _flatten(doc: Any, source: str) -> Iterator[dict]:
    if doc is None:
        return
    if not isinstance(doc, dict):
        raise InputError(f"a manifest must be a mapping, got {type(doc).__name__}", file=source)
    kind = doc.get("kind", "")
    if isinstance(kind, str) and kind.endswith("List") and isinstance(doc.get("items"), list):
        # The raw API (`kubectl get pods -o json` of a PodList) leaves `kind` out of the items.
        item_kind = kind[: -len("List")] if kind != "List" else None
        for item in doc["items"]:
            if item_kind and isinstance(item, dict) and "kind" not in item:
                item = {"kind": item_kind, **item}
            yield from _flatten(item, source)
    else:
        yield doc


def load_manifests(directory: str | Path) -> Snapshot:
    """All supported objects under a directory; unsupported kinds are ignored (a cluster dump has many).

    A dump holds pods and the workloads that made them: pods that finished (Succeeded, Failed) are no
    endpoint, and a workload's representative pod stands in only where nothing more real does (see
    `_one_per_workload`), so a Deployment, its ReplicaSet and their pods are one workload, not three.
    """
    namespaces, pods, services, policies, admin = [], [], [], [], []
    owners: dict[str, str] = {}  # ns/Kind/name of a workload object -> ns/Kind/name of its controller
    representatives: set[int] = set()  # id() of the pods that stand for a workload object
    with no_cycle_collection():
        for path in iter_manifest_files(directory):
            for obj in iter_documents(path):
                if obj.get("kind") == "Pod" and _finished(obj):
                    continue
                for parsed in parse_object(obj, str(path)):
                    {Namespace: namespaces, Pod: pods, Service: services, NetworkPolicy: policies,
                     AdminPolicy: admin}[type(parsed)].append(parsed)
                    if obj.get("kind") in WORKLOAD_KINDS:
                        representatives.add(id(parsed))
                        _record_owner(obj, owners)
    pods = _one_per_workload(pods, representatives, owners)
    _reject_duplicates(pods, "Pod", str(directory))
    _reject_duplicates(policies, "NetworkPolicy", str(directory))
    _reject_duplicates(admin, "", str(directory))
    return Snapshot.build(namespaces, pods, services, policies, admin)


def _finished(obj: dict) -> bool:
    status = obj.get("status")
    return isinstance(status, dict) and status.get("phase") in ("Succeeded", "Failed")


def _controller(meta: Any) -> str | None:
    """Kind/name of the controller ownerReference (else the first one), None without owners."""
    owners = meta.get("ownerReferences") if isinstance(meta, dict) else None
    if not isinstance(owners, list) or not owners:
        return None
    owner = next((o for o in owners if isinstance(o, dict) and o.get("controller")), owners[0])
    return f"{owner.get('kind')}/{owner.get('name')}" if isinstance(owner, dict) else None


def _record_owner(obj: dict, owners: dict[str, str]) -> None:
    meta = obj.get("metadata")
    owner = _controller(meta)
    if owner is not None and isinstance(meta, dict):
        ns = meta.get("namespace") or "default"
        owners[f"{ns}/{obj['kind']}/{meta.get('name')}"] = f"{ns}/{owner}"


def _one_per_workload(pods: list[Pod], representative: set[int], owners: dict[str, str]) -> list[Pod]:
    """Drops the representative pod of a workload that real pods of the dump stand for (its own pods, or its
    children's: a Deployment's ReplicaSet's pods) or whose controller is in the dump too (the top workload
    stands for it); exactly one representative remains for a chain without pods."""

    def top(ref: str) -> str:
        seen = {ref}
        while ref in owners and owners[ref] not in seen:
            ref = owners[ref]
            seen.add(ref)
        return ref

    def key(pod: Pod) -> str:
        # A Deployment's ReplicaSet's pods name the Deployment even when the ReplicaSet is not in the dump.
        return f"{pod.namespace}/{owning_workload(pod)}"

    real_tops = {top(key(p)) for p in pods if owning_workload(p) and id(p) not in representative}
    kept, chains = [], set()
    # Top-level workloads first, so that a chain keeps its top's own representative when it has one.
    for pod in sorted(pods, key=lambda p: id(p) in representative
                      and f"{p.namespace}/{p.workload}" != top(key(p))):
        if id(pod) in representative:
            chain = top(key(pod))
            if chain in real_tops or chain in chains:
                continue
            chains.add(chain)
        kept.append(pod)
    return kept


def _reject_duplicates(objects: list, kind: str, source: str) -> None:
    """kind "" for admin policies: their ref is Kind/name, named as "Kind name" like in parse errors."""
    seen = set()
    for o in objects:
        if o.ref in seen:
            raise InputError("defined twice", file=source, obj=f"{kind} {o.ref}" if kind else f"{o.kind} {o.name}")
        seen.add(o.ref)


def parse_object(obj: dict, source: str) -> list:
    """The model objects one API object contributes (a workload contributes its representative pod)."""
    kind = obj.get("kind")
    if kind == "Namespace":
        return [parse_namespace(obj, source)]
    if kind == "Pod":
        return [parse_pod(obj, source)]
    if kind in WORKLOAD_KINDS:
        pod = parse_workload(obj, source)
        return [pod] if pod else []
    if kind == "Service":
        return [parse_service(obj, source)]
    if kind == "NetworkPolicy":
        return [parse_network_policy(obj, source)]
    if kind in ("AdminNetworkPolicy", "BaselineAdminNetworkPolicy", "ClusterNetworkPolicy"):
        return [parse_admin_policy(obj, source)]
    return []


# ------------------------------------------------------------------------------------------ small helpers
def _meta(obj: dict, ctx: _Ctx, namespaced: bool = True) -> tuple[str, str, dict]:
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        raise ctx.error("metadata", "missing or not a mapping")
    name = _str(meta.get("name"), ctx, "metadata.name")
    if not name:
        raise ctx.error("metadata.name", "missing")
    ns = (_str(meta.get("namespace"), ctx, "metadata.namespace") or "default") if namespaced else ""
    labels = meta.get("labels") or {}
    _check_labels(labels, ctx, "metadata.labels")
    return ns, name, labels


def _check_labels(labels: Any, ctx: _Ctx, field: str) -> None:
    if not isinstance(labels, dict):
        raise ctx.error(field, "must be a mapping of strings")
    for k, v in labels.items():
        if not isinstance(k, str) or isinstance(v, (dict, list)):
            raise ctx.error(f"{field}.{k}", "label keys and values must be strings")


def _mapping(value: Any, ctx: _Ctx, field: str, allowed: Iterable[str]) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ctx.error(field, f"must be a mapping, got {type(value).__name__}")
    allowed = tuple(allowed)
    for key in value:
        if key not in allowed:
            raise ctx.error(f"{field}.{key}" if field else key,
                            f"unknown field (expected one of: {', '.join(allowed)})")
    return value


def _dict(value: Any, ctx: _Ctx, field: str) -> dict:
    """A mapping of a leniently read object (any keys): absent or null is empty, anything else is an error."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ctx.error(field, f"must be a mapping, got {type(value).__name__}")
    return value


def _str(value: Any, ctx: _Ctx, field: str) -> str | None:
    """A string field: absent or null is None, anything else but a string is an error."""
    if value is not None and not isinstance(value, str):
        raise ctx.error(field, f"must be a string, got {type(value).__name__}")
    return value


def _bool(value: Any, ctx: _Ctx, field: str) -> bool:
    if value is not None and not isinstance(value, bool):
        raise ctx.error(field, f"must be true or false, got {value!r}")
    return bool(value)


def _list(value: Any, ctx: _Ctx, field: str) -> list:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ctx.error(field, f"must be a list, got {type(value).__name__}")
    return value


def _protocol(value: Any, ctx: _Ctx, field: str) -> str:
    proto = "TCP" if value is None else value
    if proto not in PROTOCOLS:
        raise ctx.error(field, f"unsupported protocol {proto!r} (expected TCP, UDP or SCTP)")
    return proto


def _port_number(value: Any, ctx: _Ctx, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ctx.error(field, f"must be a port number 1-65535, got {value!r}")
    return value


def _cidr(value: Any, ctx: _Ctx, field: str) -> str:
    if not isinstance(value, str):
        raise ctx.error(field, f"invalid CIDR {value!r}")
    try:
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError as e:
        raise ctx.error(field, f"invalid CIDR {value!r}") from e


def parse_selector(value: Any, ctx: Any, field: str) -> LabelSelector:
    sel = _mapping(value, ctx, field, ("matchLabels", "matchExpressions"))
    match_labels = sel.get("matchLabels") or {}
    _check_labels(match_labels, ctx, f"{field}.matchLabels")
    reqs = []
    for i, expr in enumerate(_list(sel.get("matchExpressions"), ctx, f"{field}.matchExpressions")):
        f = f"{field}.matchExpressions[{i}]"
        expr = _mapping(expr, ctx, f, ("key", "operator", "values"))
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values")
        if not isinstance(key, str) or not key:
            raise ctx.error(f"{f}.key", "missing")
        if op not in _OPERATORS:
            raise ctx.error(f"{f}.operator", f"invalid operator {op!r} (expected In, NotIn, Exists or DoesNotExist)")
        values = _list(values, ctx, f"{f}.values")
        for j, v in enumerate(values):
            _str(v, ctx, f"{f}.values[{j}]")
        if op in ("In", "NotIn") and not values:
            raise ctx.error(f"{f}.values", f"must be non-empty for operator {op}")
        if op in ("Exists", "DoesNotExist") and values:
            raise ctx.error(f"{f}.values", f"must be empty for operator {op}")
        reqs.append(Requirement(key, op, tuple(sorted(str(v) for v in values))))
    return LabelSelector(labels_of(match_labels), tuple(reqs))


# ------------------------------------------------------------------------------------------ cluster objects
def parse_namespace(obj: dict, source: str) -> Namespace:
    ctx = _Ctx(source, obj)
    _, name, labels = _meta(obj, ctx, namespaced=False)
    return Namespace(name, labels_of(labels))


def _container_ports(spec: dict, ctx: _Ctx, field: str) -> tuple[ContainerPort, ...]:
    ports = []
    for ci, c in enumerate(_list(spec.get("containers"), ctx, f"{field}.containers")):
        c = _dict(c, ctx, f"{field}.containers[{ci}]")
        for pi, p in enumerate(_list(c.get("ports"), ctx, f"{field}.containers[{ci}].ports")):
            pf = f"{field}.containers[{ci}].ports[{pi}]"
            p = _dict(p, ctx, pf)
            if p.get("containerPort") is None:
                # Lenient like the API server's non-strict decoding: a misspelt key leaves the port unset,
                # and such a port cannot be connected to or named by a policy.
                continue
            ports.append(ContainerPort(_port_number(p.get("containerPort"), ctx, f"{pf}.containerPort"),
                                       _protocol(p.get("protocol"), ctx, f"{pf}.protocol"),
                                       _str(p.get("name"), ctx, f"{pf}.name")))
    return tuple(ports)


def parse_pod(obj: dict, source: str) -> Pod:
    ctx = _Ctx(source, obj)
    ns, name, labels = _meta(obj, ctx)
    spec = _dict(obj.get("spec"), ctx, "spec")
    status = _dict(obj.get("status"), ctx, "status")
    owners = [_dict(o, ctx, f"metadata.ownerReferences[{i}]")
              for i, o in enumerate(_list(obj["metadata"].get("ownerReferences"), ctx, "metadata.ownerReferences"))]
    at = next((i for i, o in enumerate(owners) if o.get("controller") is True), 0 if owners else None)
    workload = None
    if at is not None:
        of = f"metadata.ownerReferences[{at}]"
        kind, owner = _str(owners[at].get("kind"), ctx, f"{of}.kind"), _str(owners[at].get("name"), ctx, f"{of}.name")
        workload = f"{kind}/{owner}"
    ips = _pod_ips(status, ctx)
    return Pod(ns, name, labels_of(labels), ips[0] if ips else None, _container_ports(spec, ctx, "spec"),
               _str(spec.get("nodeName"), ctx, "spec.nodeName"),
               _bool(spec.get("hostNetwork"), ctx, "spec.hostNetwork"), workload, ips[1:])


def _pod_ips(status: dict, ctx: _Ctx) -> tuple[str, ...]:
    """status.podIP first (the primary family), then the other addresses of status.podIPs (dual stack)."""
    raw = [(_str(status.get("podIP"), ctx, "status.podIP"), "status.podIP")]
    for i, entry in enumerate(_list(status.get("podIPs"), ctx, "status.podIPs")):
        field = f"status.podIPs[{i}].ip"
        raw.append((_str(_dict(entry, ctx, f"status.podIPs[{i}]").get("ip"), ctx, field), field))
    found: list[str] = []
    for value, field in raw:
        if not value:
            continue
        try:
            ip = str(ipaddress.ip_address(value))
        except ValueError as e:
            raise ctx.error(field, f"invalid IP {value!r}") from e
        if ip not in found:
            found.append(ip)
    return tuple(found)


def parse_workload(obj: dict, source: str) -> Pod | None:
    """One representative pod, named after the workload, with the template's labels and ports."""
    ctx = _Ctx(source, obj)
    ns, name, _ = _meta(obj, ctx)
    spec = _dict(obj.get("spec"), ctx, "spec")
    template_field = "spec.template"
    if obj["kind"] == "CronJob":
        job = _dict(spec.get("jobTemplate"), ctx, "spec.jobTemplate")
        spec = _dict(job.get("spec"), ctx, "spec.jobTemplate.spec")
        template_field = "spec.jobTemplate.spec.template"
    template = spec.get("template")
    if not isinstance(template, dict):
        raise ctx.error(template_field, "missing pod template")
    tmeta = _dict(template.get("metadata"), ctx, f"{template_field}.metadata")
    labels = tmeta.get("labels") or {}
    _check_labels(labels, ctx, f"{template_field}.metadata.labels")
    tspec = _dict(template.get("spec"), ctx, f"{template_field}.spec")
    return Pod(ns, name, labels_of(labels), None, _container_ports(tspec, ctx, f"{template_field}.spec"),
               None, _bool(tspec.get("hostNetwork"), ctx, f"{template_field}.spec.hostNetwork"),
               f"{obj['kind']}/{name}")


def parse_service(obj: dict, source: str) -> Service:
    ctx = _Ctx(source, obj)
    ns, name, _ = _meta(obj, ctx)
    spec = _dict(obj.get("spec"), ctx, "spec")
    selector = spec.get("selector")
    if selector is not None:
        _check_labels(selector, ctx, "spec.selector")
    ports = []
    for i, p in enumerate(_list(spec.get("ports"), ctx, "spec.ports")):
        f = f"spec.ports[{i}]"
        p = _dict(p, ctx, f)
        port = _port_number(p.get("port"), ctx, f"{f}.port")
        target = p.get("targetPort", port)
        if not isinstance(target, str) or not target:
            target = _port_number(target, ctx, f"{f}.targetPort")
        ports.append(ServicePort(port, target, _protocol(p.get("protocol"), ctx, f"{f}.protocol"),
                                 _str(p.get("name"), ctx, f"{f}.name")))
    cluster_ip = _str(spec.get("clusterIP"), ctx, "spec.clusterIP")
    return Service(ns, name, labels_of(selector) if selector is not None else None,
                   cluster_ip if cluster_ip and cluster_ip != "None" else None, tuple(ports))


# ------------------------------------------------------------------------------------ NetworkPolicy v1
_OBJECT_KEYS = ("apiVersion", "kind", "metadata", "spec", "status")


def parse_network_policy(obj: dict, source: str) -> NetworkPolicy:
    ctx = _Ctx(source, obj)
    _mapping(obj, ctx, "", _OBJECT_KEYS)
    ns, name, _ = _meta(obj, ctx)
    spec = _mapping(obj.get("spec"), ctx, "spec", ("podSelector", "policyTypes", "ingress", "egress"))
    if "podSelector" not in spec:
        raise ctx.error("spec.podSelector", "missing (use {} to select every pod of the namespace)")
    pod_selector = parse_selector(spec.get("podSelector"), ctx, "spec.podSelector")
    ingress = tuple(_np_rule(r, ctx, f"spec.ingress[{i}]", "from")
                    for i, r in enumerate(_list(spec.get("ingress"), ctx, "spec.ingress")))
    egress = tuple(_np_rule(r, ctx, f"spec.egress[{i}]", "to")
                   for i, r in enumerate(_list(spec.get("egress"), ctx, "spec.egress")))
    types = spec.get("policyTypes")
    if types is None:
        # API defaulting: Ingress always, Egress only when the policy has egress rules.
        policy_types = frozenset({"Ingress", "Egress"} if egress else {"Ingress"})
    else:
        for i, t in enumerate(_list(types, ctx, "spec.policyTypes")):
            if t not in ("Ingress", "Egress"):
                raise ctx.error(f"spec.policyTypes[{i}]", f"invalid policy type {t!r} (expected Ingress or Egress)")
        policy_types = frozenset(types)
    return NetworkPolicy(ns, name, pod_selector, policy_types, ingress, egress)


def _np_rule(rule: Any, ctx: _Ctx, field: str, peers_key: str) -> PolicyRule:
    rule = _mapping(rule, ctx, field, (peers_key, "ports"))
    peers = []
    for i, peer in enumerate(_list(rule.get(peers_key), ctx, f"{field}.{peers_key}")):
        pf = f"{field}.{peers_key}[{i}]"
        peer = _mapping(peer, ctx, pf, ("podSelector", "namespaceSelector", "ipBlock"))
        if not peer:
            raise ctx.error(pf, "a peer must set podSelector, namespaceSelector or ipBlock")
        if "ipBlock" in peer:
            if len(peer) > 1:
                raise ctx.error(pf, "ipBlock cannot be combined with podSelector or namespaceSelector")
            block = _mapping(peer["ipBlock"], ctx, f"{pf}.ipBlock", ("cidr", "except"))
            if "cidr" not in block:
                raise ctx.error(f"{pf}.ipBlock.cidr", "missing")
            cidr = _cidr(block["cidr"], ctx, f"{pf}.ipBlock.cidr")
            excepts = tuple(_cidr(e, ctx, f"{pf}.ipBlock.except[{j}]")
                            for j, e in enumerate(_list(block.get("except"), ctx, f"{pf}.ipBlock.except")))
            peers.append(PolicyPeer(ip_block=IPBlock(cidr, excepts)))
            continue
        pod_sel = parse_selector(peer["podSelector"], ctx, f"{pf}.podSelector") if "podSelector" in peer else None
        ns_sel = (parse_selector(peer["namespaceSelector"], ctx, f"{pf}.namespaceSelector")
                  if "namespaceSelector" in peer else None)
        peers.append(PolicyPeer(pod_selector=pod_sel, namespace_selector=ns_sel))
    ports = []
    for i, port in enumerate(_list(rule.get("ports"), ctx, f"{field}.ports")):
        pf = f"{field}.ports[{i}]"
        port = _mapping(port, ctx, pf, ("protocol", "port", "endPort"))
        proto = _protocol(port.get("protocol"), ctx, f"{pf}.protocol")
        number = port.get("port")
        end = port.get("endPort")
        if isinstance(number, str):
            if not number:
                raise ctx.error(f"{pf}.port", "must be a port number or name, got ''")
            if number.isascii() and number.isdigit():
                number = _port_number(int(number), ctx, f"{pf}.port")
            elif end is not None:
                raise ctx.error(f"{pf}.endPort", "not allowed with a named port")
        elif number is not None:
            number = _port_number(number, ctx, f"{pf}.port")
        if end is not None:
            if number is None:
                raise ctx.error(f"{pf}.endPort", "needs port")
            end = _port_number(end, ctx, f"{pf}.endPort")
            if end < number:
                raise ctx.error(f"{pf}.endPort", f"must be >= port ({number})")
        ports.append(PolicyPort(proto, number, end))
    return PolicyRule(tuple(peers), tuple(ports))


# ------------------------------------------------------- AdminNetworkPolicy, BANP (v1alpha1), CNP (v1alpha2)
@dataclass(frozen=True, slots=True)
class _AdminAPI:
    """What the published CRD of one admin-policy kind admits (kubernetes-sigs/network-policy-api: v1alpha1 as
    of v0.1.7, the last release that shipped it, standard and experimental channels; v1alpha2 as on main)."""

    spec_keys: tuple[str, ...]
    actions: tuple[str, ...]
    egress_peers: tuple[str, ...]  # ingress peers are namespaces and pods in every API
    ports_key: str
    max_items: int  # rules per direction, peers per rule, ports per rule
    pods_need_namespace_selector: bool  # v1alpha1 requires it; v1alpha2 reads a missing one as {}
    has_priority: bool


_ADMIN_APIS = {
    "AdminNetworkPolicy": _AdminAPI(("priority", "subject", "ingress", "egress"), ("Allow", "Deny", "Pass"),
                                    ("namespaces", "pods", "nodes", "networks", "domainNames"), "ports", 100,
                                    True, True),
    "BaselineAdminNetworkPolicy": _AdminAPI(("subject", "ingress", "egress"), ("Allow", "Deny"),
                                            ("namespaces", "pods", "nodes", "networks"), "ports", 100, True, False),
    "ClusterNetworkPolicy": _AdminAPI(("tier", "priority", "subject", "ingress", "egress"), ("Accept", "Deny", "Pass"),
                                      ("namespaces", "pods", "nodes", "networks", "domainNames"), "protocols", 25,
                                      False, True),
}
_ADDRESS_LIST_MAX = 25  # networks and domainNames of one peer, every API
_RULE_NAME_MAX = 100
_LABEL = r"[a-zA-Z0-9]([-a-zA-Z0-9_]*[a-zA-Z0-9])?"
_DOMAIN_NAME = re.compile(rf"^(\*\.)?({_LABEL}\.)+{_LABEL}\.?$")  # the CRD's pattern


def parse_admin_policy(obj: dict, source: str) -> AdminPolicy:
    """Admits what the kind's CRD admits: every field is required unless the CRD marks it optional."""
    ctx = _Ctx(source, obj)
    _mapping(obj, ctx, "", _OBJECT_KEYS)
    _, name, _ = _meta(obj, ctx, namespaced=False)
    kind = obj["kind"]
    api = _ADMIN_APIS[kind]
    if kind == "BaselineAdminNetworkPolicy" and name != "default":
        raise ctx.error("metadata.name", f"must be 'default', got {name!r} (the CRD admits one "
                                         "BaselineAdminNetworkPolicy per cluster, named default)")
    spec = _admin_mapping(obj.get("spec"), ctx, "spec", api.spec_keys, required=True)
    tier = "Baseline" if kind == "BaselineAdminNetworkPolicy" else "Admin"
    if kind == "ClusterNetworkPolicy":
        tier = spec.get("tier")
        if tier not in ("Admin", "Baseline"):
            raise ctx.error("spec.tier", "missing (Admin or Baseline)" if tier is None
                            else f"must be Admin or Baseline, got {tier!r}")
    priority = 0
    if api.has_priority:
        priority = spec.get("priority")
        if priority is None:
            raise ctx.error("spec.priority", "missing (an integer 0-1000)")
        if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 1000:
            raise ctx.error("spec.priority", f"must be an integer 0-1000, got {priority!r}")
    subject = _admin_subject(spec.get("subject"), ctx, "spec.subject", api)
    ingress, egress = (
        tuple(_admin_rule(r, ctx, f"spec.{direction}[{i}]", peers_key, api) for i, r in enumerate(
            _bounded_list(spec.get(direction), ctx, f"spec.{direction}", api.max_items, "rule", non_empty=False)))
        for direction, peers_key in (("ingress", "from"), ("egress", "to")))
    return AdminPolicy(kind, name, tier, priority, subject, ingress, egress)


def _admin_mapping(value: Any, ctx: _Ctx, field: str, allowed: Iterable[str], required: bool = False) -> dict:
    """A strict mapping whose null entries count as absent, as in the API server, which prunes the nulls of
    fields that are not nullable before it validates."""
    if value is None and required:
        raise ctx.error(field, "missing")
    return {k: v for k, v in _mapping(value, ctx, field, allowed).items() if v is not None}


def _bounded_list(value: Any, ctx: _Ctx, field: str, most: int, what: str, non_empty: bool = True) -> list:
    """A list of at most `most` items; when present, a non-empty one unless the CRD admits an empty list."""
    items = _list(value, ctx, field)
    if non_empty and value is not None and not items:
        raise ctx.error(field, f"must list at least one {what}")
    if len(items) > most:
        raise ctx.error(field, f"at most {most} {what}s, got {len(items)}")
    return items


def _namespaced_pod(value: Any, ctx: _Ctx, field: str, api: _AdminAPI) -> AdminSelector:
    pods = _admin_mapping(value, ctx, field, ("namespaceSelector", "podSelector"))
    if "namespaceSelector" not in pods and api.pods_need_namespace_selector:
        raise ctx.error(f"{field}.namespaceSelector", "missing (use {} to select pods in every namespace)")
    if "podSelector" not in pods:
        raise ctx.error(f"{field}.podSelector", "missing (use {} to select every pod of the namespaces)")
    return AdminSelector(parse_selector(pods.get("namespaceSelector", {}), ctx, f"{field}.namespaceSelector"),
                         parse_selector(pods["podSelector"], ctx, f"{field}.podSelector"))


def _admin_subject(value: Any, ctx: _Ctx, field: str, api: _AdminAPI) -> AdminSelector:
    subject = _admin_mapping(value, ctx, field, ("namespaces", "pods"), required=True)
    if len(subject) != 1:
        raise ctx.error(field, "exactly one of namespaces or pods must be set")
    if "namespaces" in subject:
        return AdminSelector(parse_selector(subject["namespaces"], ctx, f"{field}.namespaces"))
    return _namespaced_pod(subject["pods"], ctx, f"{field}.pods", api)


def _admin_rule(rule: Any, ctx: _Ctx, field: str, peers_key: str, api: _AdminAPI) -> AdminRule:
    rule = _admin_mapping(rule, ctx, field, ("name", "action", peers_key, api.ports_key), required=True)
    name = rule.get("name")
    if name is not None and not isinstance(name, str):
        raise ctx.error(f"{field}.name", "must be a string")
    if name is not None and len(name) > _RULE_NAME_MAX:
        raise ctx.error(f"{field}.name", f"at most {_RULE_NAME_MAX} characters, got {len(name)}")
    action = rule.get("action")
    if action not in api.actions:
        raise ctx.error(f"{field}.action", "missing" if action is None else
                        f"invalid action {action!r} (expected {', '.join(api.actions)})")
    if peers_key not in rule:
        raise ctx.error(f"{field}.{peers_key}", "missing")
    peer_fields = api.egress_peers if peers_key == "to" else ("namespaces", "pods")
    peers = []
    addresses = []  # peers without named ports
    for i, peer in enumerate(_bounded_list(rule[peers_key], ctx, f"{field}.{peers_key}", api.max_items, "peer")):
        pf = f"{field}.{peers_key}[{i}]"
        peer = _admin_mapping(peer, ctx, pf, peer_fields, required=True)
        if len(peer) != 1:
            raise ctx.error(pf, f"exactly one of {', '.join(peer_fields)} must be set")
        (key, value), = peer.items()
        if key == "namespaces":
            peers.append(AdminSelector(parse_selector(value, ctx, f"{pf}.namespaces")))
        elif key == "pods":
            peers.append(_namespaced_pod(value, ctx, f"{pf}.pods", api))
        elif key == "networks":
            cidrs = _bounded_list(value, ctx, f"{pf}.networks", _ADDRESS_LIST_MAX, "CIDR")
            peers.append(AdminSelector(networks=tuple(_cidr(c, ctx, f"{pf}.networks[{j}]")
                                                      for j, c in enumerate(cidrs))))
            addresses.append(key)
        elif key == "nodes":
            parse_selector(value, ctx, f"{pf}.nodes")  # checked only: node IPs are no pod and no pod IP
            addresses.append(key)
        else:
            for j, d in enumerate(_bounded_list(value, ctx, f"{pf}.domainNames", _ADDRESS_LIST_MAX,
                                                "domain name")):
                if not isinstance(d, str) or not _DOMAIN_NAME.match(d):
                    raise ctx.error(f"{pf}.domainNames[{j}]", f"invalid domain name {d!r}")
            addresses.append(key)  # resolved by the dataplane at run time: selects no pod
    pf = f"{field}.{api.ports_key}"
    ports = _admin_ports_v2(rule.get("protocols"), ctx, pf, api) if api.ports_key == "protocols" else \
        _admin_ports_v1(rule.get("ports"), ctx, pf, api)
    if addresses and ports and any(p.named for p in ports):
        raise ctx.error(pf, f"a named port cannot be used with {'/'.join(dict.fromkeys(addresses))} peers "
                            "(they have no named ports)")
    name = name or f"{(peers_key == 'from' and 'ingress') or 'egress'}[{field.rsplit('[', 1)[1]}"
    return AdminRule(name, "Allow" if action == "Accept" else action, tuple(peers), ports)


def _named_port(value: Any, ctx: _Ctx, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise ctx.error(field, f"must be a port name, got {value!r}")
    return value


def _admin_ports_v1(value: Any, ctx: _Ctx, field: str, api: _AdminAPI) -> tuple[AdminPort, ...] | None:
    if value is None:
        return None
    ports = []
    for i, p in enumerate(_bounded_list(value, ctx, field, api.max_items, "port")):
        pf = f"{field}[{i}]"
        p = _admin_mapping(p, ctx, pf, ("portNumber", "namedPort", "portRange"), required=True)
        if len(p) != 1:
            raise ctx.error(pf, "exactly one of portNumber, namedPort or portRange must be set")
        if "namedPort" in p:
            ports.append(AdminPort("TCP", named=_named_port(p["namedPort"], ctx, f"{pf}.namedPort")))
        elif "portNumber" in p:
            n = _admin_mapping(p["portNumber"], ctx, f"{pf}.portNumber", ("protocol", "port"))
            _require(n, "port", ctx, f"{pf}.portNumber")
            ports.append(AdminPort(_protocol(n.get("protocol"), ctx, f"{pf}.portNumber.protocol"),
                                   _port_number(n["port"], ctx, f"{pf}.portNumber.port")))
        else:
            r = _admin_mapping(p["portRange"], ctx, f"{pf}.portRange", ("protocol", "start", "end"))
            _require(r, "start", ctx, f"{pf}.portRange")
            _require(r, "end", ctx, f"{pf}.portRange")
            start = _port_number(r["start"], ctx, f"{pf}.portRange.start")
            end = _port_number(r["end"], ctx, f"{pf}.portRange.end")
            if end < start:
                raise ctx.error(f"{pf}.portRange.end", f"must be >= start ({start})")
            ports.append(AdminPort(_protocol(r.get("protocol"), ctx, f"{pf}.portRange.protocol"), start, end))
    return tuple(ports)


def _admin_ports_v2(value: Any, ctx: _Ctx, field: str, api: _AdminAPI) -> tuple[AdminPort, ...] | None:
    if value is None:
        return None
    ports = []
    for i, p in enumerate(_bounded_list(value, ctx, field, api.max_items, "protocol")):
        pf = f"{field}[{i}]"
        p = _admin_mapping(p, ctx, pf, ("tcp", "udp", "sctp", "destinationNamedPort"), required=True)
        if len(p) != 1:
            raise ctx.error(pf, "exactly one of tcp, udp, sctp or destinationNamedPort must be set")
        (key, _), = p.items()
        if key == "destinationNamedPort":
            ports.append(AdminPort("TCP", named=_named_port(p[key], ctx, f"{pf}.destinationNamedPort")))
            continue
        proto = key.upper()
        spec = _admin_mapping(p[key], ctx, f"{pf}.{key}", ("destinationPort",))
        # The CRD wants at least one property here: "every port of the protocol" is a range 1-65535.
        dest = _admin_mapping(spec.get("destinationPort"), ctx, f"{pf}.{key}.destinationPort", ("number", "range"),
                              required=True)
        if len(dest) != 1:
            raise ctx.error(f"{pf}.{key}.destinationPort", "exactly one of number or range must be set")
        if "number" in dest:
            ports.append(AdminPort(proto, _port_number(dest["number"], ctx, f"{pf}.{key}.destinationPort.number")))
        else:
            rf = f"{pf}.{key}.destinationPort.range"
            r = _admin_mapping(dest["range"], ctx, rf, ("start", "end"))
            _require(r, "start", ctx, rf)
            _require(r, "end", ctx, rf)
            start, end = _port_number(r["start"], ctx, f"{rf}.start"), _port_number(r["end"], ctx, f"{rf}.end")
            if end <= start:
                raise ctx.error(f"{rf}.end", f"must be greater than start ({start})")
            ports.append(AdminPort(proto, start, end))
    return tuple(ports)


def _require(mapping: dict, key: str, ctx: _Ctx, field: str) -> None:
    if key not in mapping:
        raise ctx.error(f"{field}.{key}", "missing")

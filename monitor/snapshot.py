"""Snapshots as data: canonical JSON, content digest, and the readable difference between two snapshots.

A snapshot is what the engine needs of a cluster (models.Snapshot). Here it becomes canonical JSON (sorted keys,
compact, the order of tuples kept: Snapshot.build already sorts the top-level collections, and the order of
rules inside an admin policy means something), goes back to the exact same dataclasses, gets a sha256 digest
so an unchanged cluster is stored once, and is compared with another snapshot object by object.
`take_snapshot(cluster_adapter, now)` (live mode) belongs here too.
This module must not import kubernetes or any database library, nor read the clock: it is pure data work.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import json
import sys
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from monitor import models
from monitor.errors import InputError, syntax_error
from monitor.models import Labels, Pod, Snapshot, to_jsonable
from monitor.suite import identity

# ------------------------------------------------------------------------------------------ canonical JSON


def snapshot_to_json(snap: Snapshot) -> str:
    """Canonical compact JSON: equal snapshots give byte-equal text (and so equal digests)."""
    return json.dumps(to_jsonable(snap), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def snapshot_digest(snap: Snapshot) -> str:
    return "sha256:" + hashlib.sha256(snapshot_to_json(snap).encode("utf-8")).hexdigest()


def snapshot_from_json(text: str | bytes) -> Snapshot:
    """The exact inverse of snapshot_to_json. Raises InputError naming the field that does not fit."""
    try:
        raw = json.loads(text)
    except (ValueError, UnicodeDecodeError) as e:
        raise syntax_error(e, "JSON", obj="snapshot") from e
    return snapshot_from_jsonable(raw)


def snapshot_from_jsonable(raw: Any) -> Snapshot:
    return _decode(Snapshot, raw, "snapshot")


def from_jsonable(cls: type, raw: Any, what: str) -> Any:
    """Any frozen dataclass of ours back from `to_jsonable` output (runs and results in bundles, causes)."""
    return _decode(cls, raw, what)


@functools.cache
def _hints(cls: type) -> tuple[tuple[str, str, Any], ...]:
    # (attribute name, JSON key, type); to_jsonable strips the trailing "_" of `except_`.
    module = sys.modules[cls.__module__]
    hints = typing.get_type_hints(cls, {**vars(models), **vars(module)})
    return tuple((f.name, f.name.rstrip("_"), hints[f.name]) for f in dataclasses.fields(cls))


def _fail(path: str, expected: str, value: Any) -> InputError:
    return InputError(f"expected {expected}, got {json.dumps(value)[:60]}", field=path)


def _decode(tp: Any, value: Any, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None:
            if type(None) in args:
                return None
            raise _fail(path, "a value", value)
        options = [a for a in args if a is not type(None)]
        if len(options) == 1:
            return _decode(options[0], value, path)
        # Scalar unions (int | str ports): JSON already tells them apart.
        for option in options:
            if _is_scalar(option, value):
                return value
        raise _fail(path, " or ".join(getattr(o, "__name__", str(o)) for o in options), value)
    if tp is Any:
        return value
    if origin is tuple:
        if not isinstance(value, list):
            raise _fail(path, "a list", value)
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_decode(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise _fail(path, f"a list of {len(args)}", value)
        return tuple(_decode(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin is frozenset:
        if not isinstance(value, list):
            raise _fail(path, "a list", value)
        (arg,) = typing.get_args(tp)
        return frozenset(_decode(arg, v, f"{path}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise _fail(path, "an object", value)
        fields = _hints(tp)
        known = {key for _, key, _ in fields}
        unknown = sorted(set(value) - known)
        if unknown:
            raise InputError(f"unknown key {unknown[0]!r}", field=path)
        kwargs = {name: _decode(hint, value[key], f"{path}.{key}")
                  for name, key, hint in fields if key in value}
        try:
            return tp(**kwargs)
        except TypeError as e:  # a required field is missing
            raise InputError(f"incomplete: {e}", field=path) from e
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise _fail(path, "one of " + ", ".join(str(m.value) for m in tp), value) from None
    if _is_scalar(tp, value):
        return float(value) if tp is float else value
    raise _fail(path, getattr(tp, "__name__", str(tp)), value)


def _is_scalar(tp: Any, value: Any) -> bool:
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if tp is bool:
        return isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return False


# ------------------------------------------------------------------------------------------------ the diff
KINDS = ("policy", "admin_policy", "namespace", "pod", "service")


@dataclass(frozen=True, slots=True)
class LabelDelta:
    added: Labels = ()
    removed: Labels = ()
    changed: tuple[tuple[str, str, str], ...] = ()  # (key, old value, new value)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed)

    def describe(self) -> str:
        parts = [f"+{k}={v}" for k, v in self.added]
        parts += [f"-{k}={v}" for k, v in self.removed]
        parts += [f"{k}: {a} -> {b}" for k, a, b in self.changed]
        return ", ".join(parts)


def label_delta(old: Labels, new: Labels) -> LabelDelta:
    a, b = dict(old), dict(new)
    return LabelDelta(
        added=tuple(sorted((k, v) for k, v in b.items() if k not in a)),
        removed=tuple(sorted((k, v) for k, v in a.items() if k not in b)),
        changed=tuple(sorted((k, a[k], b[k]) for k in a.keys() & b.keys() if a[k] != b[k])),
    )


@dataclass(frozen=True, slots=True)
class Change:
    """One object that differs: the unit that cause attribution applies to a snapshot on its own."""

    kind: str  # one of KINDS
    key: str  # policy ns/name, admin Kind/name, namespace name, pod identity (ns/workload or ns/name), service
    old: Any = None  # the model object before (None: added)
    new: Any = None  # the model object after (None: removed)

    @property
    def action(self) -> str:
        return "added" if self.old is None else "removed" if self.new is None else "changed"

    @property
    def labels(self) -> LabelDelta:
        if self.kind not in ("namespace", "pod"):
            return LabelDelta()
        return label_delta(self.old.labels if self.old else (), self.new.labels if self.new else ())

    def describe(self) -> str:
        noun = {"policy": "NetworkPolicy", "admin_policy": "", "namespace": "namespace", "pod": "pod",
                "service": "Service"}[self.kind]
        head = f"{noun} {self.key}".strip()
        if self.action != "changed":
            return f"{head} {self.action}"
        if self.kind in ("namespace", "pod"):
            details = []
            delta = self.labels
            if delta:
                details.append(f"labels {delta.describe()}")
            details += [f"{name} changed" for name in _other_fields(self.old, self.new)]
            return f"{head}: {'; '.join(details)}"
        # Which parts moved (ingress, egress, pod_selector, priority...): enough to know where to look.
        return f"{head} changed ({', '.join(_other_fields(self.old, self.new))})"


def _other_fields(old: Any, new: Any) -> list[str]:
    # For pods: which non-label attributes moved (ip, ports, node, name after a restart...).
    skip = {"labels", "namespace"}
    return [f.name for f in dataclasses.fields(old)
            if f.name not in skip and getattr(old, f.name) != getattr(new, f.name)]


@dataclass(frozen=True, slots=True)
class SnapshotDiff:
    changes: tuple[Change, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.changes)

    def _of(self, kind: str, action: str) -> tuple:
        return tuple(c for c in self.changes if c.kind == kind and c.action == action)

    @property
    def policies_added(self) -> tuple[str, ...]:
        return tuple(c.key for c in self._of("policy", "added"))

    @property
    def policies_removed(self) -> tuple[str, ...]:
        return tuple(c.key for c in self._of("policy", "removed"))

    @property
    def policies_changed(self) -> tuple[str, ...]:
        return tuple(c.key for c in self._of("policy", "changed"))

    @property
    def admin_policies_added(self) -> tuple[str, ...]:
        return tuple(c.key for c in self._of("admin_policy", "added"))

    @property
    def admin_policies_removed(self) -> tuple[str, ...]:
        return tuple(c.key for c in self._of("admin_policy", "removed"))

    @property
    def admin_policies_changed(self) -> tuple[str, ...]:
        return tuple(c.key for c in self._of("admin_policy", "changed"))

    @property
    def namespace_labels(self) -> dict[str, LabelDelta]:
        return {c.key: c.labels for c in self._of("namespace", "changed") if c.labels}

    @property
    def pod_labels(self) -> dict[str, LabelDelta]:
        return {c.key: c.labels for c in self._of("pod", "changed") if c.labels}

    @property
    def pods_added(self) -> tuple[str, ...]:
        return tuple(c.key for c in self._of("pod", "added"))

    @property
    def pods_removed(self) -> tuple[str, ...]:
        return tuple(c.key for c in self._of("pod", "removed"))

    def describe(self) -> list[str]:
        return [c.describe() for c in self.changes] or ["no differences"]


def pod_identity(pod: Pod) -> str:
    """ns/workload when the owner is known (survives restarts), else ns/name: the planner's identity."""
    return identity(pod)


def diff_snapshots(old: Snapshot, new: Snapshot) -> SnapshotDiff:
    changes: list[Change] = []
    changes += _keyed("policy", old.policies, new.policies, lambda p: p.ref)
    changes += _keyed("admin_policy", old.admin_policies, new.admin_policies, lambda p: p.ref)
    changes += _keyed("namespace", old.namespaces, new.namespaces, lambda n: n.name)
    changes += _pods(old.pods, new.pods)
    changes += _keyed("service", old.services, new.services, lambda s: s.ref)
    return SnapshotDiff(tuple(changes))


def _keyed(kind: str, old: Iterable, new: Iterable, key: Callable[[Any], str]) -> list[Change]:
    a, b = {key(o): o for o in old}, {key(o): o for o in new}
    return [Change(kind, k, a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)]


def _pods(old: Iterable[Pod], new: Iterable[Pod]) -> list[Change]:
    # Pods are matched by stable identity so that a restarted pod (new name, new IP) is "changed", not
    # "removed + added". Replicas share an identity: pair equal names first, then the rest in name order.
    groups: dict[str, tuple[list[Pod], list[Pod]]] = {}
    for side, pods in ((0, old), (1, new)):
        for p in pods:
            groups.setdefault(pod_identity(p), ([], []))[side].append(p)
    changes = []
    for ident in sorted(groups):
        a, b = (sorted(side, key=lambda p: p.name) for side in groups[ident])
        same = {p.name for p in a} & {p.name for p in b}
        pairs = [(p, next(q for q in b if q.name == p.name)) for p in a if p.name in same]
        rest_a = [p for p in a if p.name not in same]
        rest_b = [p for p in b if p.name not in same]
        pairs += list(zip(rest_a, rest_b, strict=False))
        pairs += [(p, None) for p in rest_a[len(rest_b):]] + [(None, q) for q in rest_b[len(rest_a):]]
        several = len(a) > 1 or len(b) > 1
        for p, q in sorted(pairs, key=lambda pq: (pq[0] or pq[1]).name):
            if p != q:
                key = f"{ident} ({(p or q).name})" if several else ident
                changes.append(Change("pod", key, p, q))
    return changes


def apply_change(snap: Snapshot, change: Change) -> Snapshot:
    """The snapshot with this one difference applied (old object out, new object in), order kept canonical."""
    field, sort_key = _FIELDS[change.kind]
    items = [o for o in getattr(snap, field) if o != change.old] if change.old is not None \
        else list(getattr(snap, field))
    if change.new is not None:
        items.append(change.new)
    return dataclasses.replace(snap, **{field: tuple(sorted(items, key=sort_key))})


_FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "policy": ("policies", lambda p: (p.namespace, p.name)),
    "admin_policy": ("admin_policies", lambda p: (p.tier, p.priority, p.kind, p.name)),
    "namespace": ("namespaces", lambda n: n.name),
    "pod": ("pods", lambda p: (p.namespace, p.name)),
    "service": ("services", lambda s: (s.namespace, s.name)),
}

__all__ = ["Change", "LabelDelta", "SnapshotDiff", "apply_change", "diff_snapshots", "from_jsonable", "label_delta",
           "pod_identity", "snapshot_digest", "snapshot_from_json", "snapshot_to_json"]


# ------------------------------------------------------------------------------------- live mode (issue 4)
class SnapshotSource(typing.Protocol):
    """What take_snapshot needs of a cluster: monitor.cluster.ClusterAdapter is one. A protocol, so that
    this module stays free of kubernetes."""

    server: str

    def list_namespaces(self) -> tuple[models.Namespace, ...]: ...
    def list_pods(self) -> tuple[Pod, ...]: ...
    def list_services(self) -> tuple[models.Service, ...]: ...
    def list_network_policies(self) -> tuple[models.NetworkPolicy, ...]: ...
    def list_admin_policies(self) -> tuple[models.AdminPolicy, ...]: ...


def take_snapshot(adapter: SnapshotSource, now: Any) -> Snapshot:
    """A live cluster as the same canonical Snapshot the manifests reader makes (so digest, store and diff
    treat both alike): policies of every tier, namespaces with labels, running pods (labels, IP, named
    ports, node) and Services. The kinds are read one after the other (the API has no cross-kind
    transaction; a change between two lists shows in the next run). `now` is the run's one clock reading,
    used only for the log line."""
    import logging

    namespaces = adapter.list_namespaces()
    policies = adapter.list_network_policies()
    admin = adapter.list_admin_policies()
    pods = adapter.list_pods()
    services = adapter.list_services()
    snap = Snapshot.build(namespaces, pods, services, policies, admin)
    logging.getLogger(__name__).info(
        "snapshot of %s at %s: %d namespaces, %d pods, %d services, %d policies, %d admin policies",
        adapter.server, getattr(now, "isoformat", lambda: now)(), len(snap.namespaces), len(snap.pods),
        len(snap.services), len(snap.policies), len(snap.admin_policies))
    return snap

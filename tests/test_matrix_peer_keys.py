"""The class matrix splits pod classes on label keys that only a peer podSelector reads (issue 20, item 1).

Pods that agree on everything a policy's own podSelector reads, but differ on a key that only some rule's
peer selector reads, are different for that rule. tests/gen.py's `peer_only_keys` mode makes such pods in
every namespace (twins); the fixed cases below pin the three shapes (ingress peer, egress peer with an
expression, peer with a namespaceSelector). The class matrix must give the reference evaluator's answer for
every pod pair.
"""

from __future__ import annotations

import pytest

from monitor.engine import EMPTY, Engine
from monitor.engine.matrix import class_matrix, pod_classes
from monitor.manifests import parse_object
from monitor.models import (
    ContainerPort,
    LabelSelector,
    Namespace,
    NetworkPolicy,
    Pod,
    PolicyPeer,
    PolicyRule,
    Requirement,
    Snapshot,
    labels_of,
)
from tests.gen import PEER_ONLY_LABELS, generate_cluster


def assert_matrix_equals_reference(snapshot: Snapshot) -> None:
    engine = Engine(snapshot)
    got = {(a.ref, b.ref): c for a, b, c in class_matrix(snapshot).pod_pairs()}
    for a in snapshot.pods:
        for b in snapshot.pods:
            if a is not b:
                assert got.get((a.ref, b.ref), EMPTY) == engine.connections(a, b), (a.ref, b.ref)


def generated(seed: int) -> Snapshot:
    objs = generate_cluster(seed, namespaces=3, pods_per_ns=6, policies=8, workload_kind="Pod",
                            peer_only_keys=True)
    parsed = [m for o in objs for m in parse_object(o, "generated")]
    by_kind = {k: [m for m in parsed if type(m).__name__ == k] for k in ("Namespace", "Pod", "NetworkPolicy")}
    return Snapshot.build(by_kind["Namespace"], by_kind["Pod"], (), by_kind["NetworkPolicy"])


def test_the_generator_mode_makes_keys_that_only_peers_read():
    keys_own, keys_peer = set(), set()
    twins = 0
    for seed in range(40):
        snap = generated(seed)
        for p in snap.policies:
            keys_own |= {k for k, _ in p.pod_selector.match_labels} | {r.key for r in p.pod_selector.match_expressions}
            for rule in (*p.ingress, *p.egress):
                for peer in rule.peers:
                    if peer.pod_selector is not None:
                        keys_peer |= {k for k, _ in peer.pod_selector.match_labels}
                        keys_peer |= {r.key for r in peer.pod_selector.match_expressions}
        pods = {p.ref: p for p in snap.pods}
        for ns in {p.namespace for p in snap.pods}:
            a, b = pods[f"{ns}/w0"], pods[f"{ns}/w1"]
            assert a.ports == b.ports
            strip = [tuple(kv for kv in p.labels if kv[0] not in PEER_ONLY_LABELS) for p in (a, b)]
            assert strip[0] == strip[1]
            twins += a.labels != b.labels
    assert set(PEER_ONLY_LABELS) <= keys_peer and not set(PEER_ONLY_LABELS) & keys_own
    assert twins > 40  # most twins differ on a peer-only key


@pytest.mark.parametrize("seed", range(120))
def test_class_matrix_equals_the_reference_with_peer_only_keys(seed):
    assert_matrix_equals_reference(generated(seed))


# ------------------------------------------------------------------------------------------ fixed cases
HTTP = (ContainerPort(80, "TCP", "http"),)


def _pods(**roles: str | None) -> list[Pod]:
    """Pods of namespace a labelled app=api, and role=<value> when given: equal to every own podSelector."""
    return [Pod("a", name, labels_of({"app": "api", **({"role": role} if role else {})}), f"10.0.0.{i + 1}", HTTP)
            for i, (name, role) in enumerate(roles.items())] + [Pod("a", "db", labels_of({"app": "db"}),
                                                                     "10.0.0.9", HTTP)]


def _snap(pods: list[Pod], *policies: NetworkPolicy) -> Snapshot:
    return Snapshot.build([Namespace("a", labels_of({"team": "x"}))], pods, (), policies)


APP_DB = LabelSelector(labels_of({"app": "db"}))


def test_ingress_peer_key_splits_the_sources():
    """db admits only role=backend: api-1 and api-2 differ on nothing else, one may connect and one may not."""
    snap = _snap(_pods(**{"api-1": "backend", "api-2": "frontend"}), NetworkPolicy(
        "a", "db", APP_DB, frozenset({"Ingress"}),
        ingress=(PolicyRule((PolicyPeer(pod_selector=LabelSelector(labels_of({"role": "backend"}))),)),)))
    reps, _ = pod_classes(snap)
    assert len(reps) == 3
    assert_matrix_equals_reference(snap)


def test_egress_peer_expression_key_splits_the_destinations():
    """db may reach only pods without a role label (DoesNotExist): api-1 (no role) yes, api-2 no."""
    snap = _snap(_pods(**{"api-1": None, "api-2": "batch"}), NetworkPolicy(
        "a", "db-out", APP_DB, frozenset({"Egress"}),
        egress=(PolicyRule((PolicyPeer(pod_selector=LabelSelector(
            match_expressions=(Requirement("role", "DoesNotExist"),))),)),)))
    assert_matrix_equals_reference(snap)
    engine = Engine(snap)
    pods = {p.name: p for p in snap.pods}
    assert engine.connections(pods["db"], pods["api-1"]) and not engine.connections(pods["db"], pods["api-2"])


def test_peer_key_with_a_namespace_selector_splits_the_sources():
    snap = _snap(_pods(**{"api-1": "backend", "api-2": "frontend", "api-3": "backend"}), NetworkPolicy(
        "a", "db", APP_DB, frozenset({"Ingress"}),
        ingress=(PolicyRule((PolicyPeer(pod_selector=LabelSelector(
            match_expressions=(Requirement("role", "In", ("backend",)),)),
            namespace_selector=LabelSelector(labels_of({"team": "x"}))),)),)))
    _, members = pod_classes(snap)
    assert sorted(len(m) for m in members) == [1, 1, 2]  # api-1 and api-3 still share a class
    assert_matrix_equals_reference(snap)

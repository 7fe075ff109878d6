"""The fast class matrix must give exactly the reference evaluator's answer for every pod pair.

Random snapshots (seeded) mix every NetworkPolicy feature: pod/namespace selectors with all operators,
ipBlocks with except that cover pod IPs, named ports on both sides, endPort, UDP/SCTP, egress and ingress.
"""

from __future__ import annotations

import random

import pytest

from monitor.engine import EMPTY, Engine
from monitor.engine.connset import ConnSet
from monitor.engine.matrix import atoms_of, class_matrix
from monitor.models import (
    AdminPolicy,
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
    Snapshot,
    labels_of,
)

APPS = ("web", "api", "db")


def random_selector(rnd: random.Random, keys=("app", "tier")) -> LabelSelector:
    match = {}
    exprs = []
    if rnd.random() < 0.5:
        match[rnd.choice(keys)] = rnd.choice((*APPS, "a", "b"))
    if rnd.random() < 0.4:
        op = rnd.choice(("In", "NotIn", "Exists", "DoesNotExist"))
        values = tuple(sorted(rnd.sample((*APPS, "a", "b"), 2))) if op in ("In", "NotIn") else ()
        exprs.append(Requirement(rnd.choice(keys), op, values))
    return LabelSelector(labels_of(match), tuple(exprs))


def random_snapshot(seed: int, admin: bool = False) -> Snapshot:
    rnd = random.Random(seed)
    namespaces = [Namespace(f"ns{i}", labels_of({"team": rnd.choice("xy"), "tier": rnd.choice("ab")}))
                  for i in range(3)]
    pods = []
    for i in range(rnd.randint(3, 9)):
        ports = [ContainerPort(80, "TCP", "http")] if rnd.random() < 0.7 else [ContainerPort(8080, "TCP", "http")]
        if rnd.random() < 0.5:
            ports.append(ContainerPort(53, "UDP", "dns"))
        labels = {"app": rnd.choice(APPS)}
        if rnd.random() < 0.5:
            labels["tier"] = rnd.choice("ab")
        pods.append(Pod(f"ns{rnd.randrange(3)}", f"p{i}", labels_of(labels), f"10.0.{i // 4}.{i % 4 + 1}",
                        tuple(ports), host_network=rnd.random() < 0.05))
    policies = []
    for j in range(rnd.randint(0, 5)):
        def rule() -> PolicyRule:
            peers = []
            for _ in range(rnd.choice((0, 1, 1, 2))):
                kind = rnd.random()
                if kind < 0.2:
                    peers.append(PolicyPeer(ip_block=IPBlock("10.0.0.0/23", ("10.0.0.0/30",) if rnd.random() < 0.5
                                                             else ())))
                elif kind < 0.5:
                    peers.append(PolicyPeer(pod_selector=random_selector(rnd)))
                elif kind < 0.7:
                    peers.append(PolicyPeer(namespace_selector=random_selector(rnd, ("team", "tier"))))
                else:
                    peers.append(PolicyPeer(pod_selector=random_selector(rnd),
                                            namespace_selector=random_selector(rnd, ("team", "tier"))))
            ports = []
            for _ in range(rnd.choice((0, 1, 2))):
                p = rnd.random()
                if p < 0.3:
                    ports.append(PolicyPort("TCP", "http"))
                elif p < 0.45:
                    ports.append(PolicyPort("UDP", "dns"))
                elif p < 0.6:
                    ports.append(PolicyPort("TCP", 70, 90))
                elif p < 0.7:
                    ports.append(PolicyPort(rnd.choice(("UDP", "SCTP"))))
                else:
                    ports.append(PolicyPort("TCP", rnd.choice((80, 8080, 443))))
            return PolicyRule(tuple(peers), tuple(ports))
        types = rnd.choice(({"Ingress"}, {"Egress"}, {"Ingress", "Egress"}))
        policies.append(NetworkPolicy(f"ns{rnd.randrange(3)}", f"np{j}", random_selector(rnd), frozenset(types),
                                      tuple(rule() for _ in range(rnd.randint(0, 2))) if "Ingress" in types else (),
                                      tuple(rule() for _ in range(rnd.randint(0, 2))) if "Egress" in types else ()))
    admin_policies = []
    if admin:
        admin_policies.append(AdminPolicy("AdminNetworkPolicy", "pass-team-x", "Admin", 5,
                                          AdminSelector(LabelSelector(labels_of({"team": "x"}))),
                                          ingress=(AdminRule("deny-b", rnd.choice(("Deny", "Pass", "Allow")),
                                                             (AdminSelector(LabelSelector(
                                                                 labels_of({"tier": "b"}))),)),)))
    return Snapshot.build(namespaces, pods, (), policies, admin_policies)


@pytest.mark.parametrize("seed", range(150))
def test_class_matrix_equals_the_reference_evaluator(seed):
    snapshot = random_snapshot(seed, admin=seed % 10 == 0)
    engine = Engine(snapshot)
    got = {(a.ref, b.ref): c for a, b, c in class_matrix(snapshot).pod_pairs()}
    for a in snapshot.pods:
        for b in snapshot.pods:
            if a is not b:
                assert got.get((a.ref, b.ref), EMPTY) == engine.connections(a, b), (a.ref, b.ref)


def test_atoms_partition_the_connection_space():
    sets = [ConnSet.ports("TCP", 80), ConnSet.ports("TCP", 70, 90), ConnSet.ports("UDP")]
    atoms, masks = atoms_of(sets)
    union = EMPTY
    for i, a in enumerate(atoms):
        for b in atoms[i + 1:]:
            assert not (a & b)
        union = union | a
    assert union.is_all()
    for c in sets:
        rebuilt = EMPTY
        for i, a in enumerate(atoms):
            if masks[c] >> i & 1:
                rebuilt = rebuilt | a
        assert rebuilt == c

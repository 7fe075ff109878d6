"""The fast class matrix must give exactly the reference evaluator's answer for every pod pair.

Random snapshots (seeded) mix every NetworkPolicy feature: pod/namespace selectors with all operators,
ipBlocks with except that cover pod IPs, named ports on both sides, endPort, UDP/SCTP, egress and ingress.
With admin-tier policies class_matrix itself runs the reference evaluator's connection sets on class
representatives, so comparing it with Engine.connections would compare the engine with itself: those seeds are
checked against the evaluator's other path instead, one Engine.decide call per pod pair and probed port (a
point query with its own trace, no connection-set algebra), on snapshots with every admin-tier feature.
"""

from __future__ import annotations

import random

import pytest

from monitor.engine import EMPTY, Engine
from monitor.engine.connset import ConnSet
from monitor.engine.matrix import atoms_of, class_matrix
from monitor.models import (
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
    admin_policies = random_admin_policies(rnd) if admin else []
    return Snapshot.build(namespaces, pods, (), policies, admin_policies)


def random_admin_policies(rnd: random.Random) -> list[AdminPolicy]:
    """ANPs (Allow/Deny/Pass, priorities, pod and namespace subjects, ports, named ports, ranges, networks) and
    a BANP (Allow/Deny), so that every tier decides some pairs and passes others down."""
    def selector() -> AdminSelector:
        if rnd.random() < 0.5:
            return AdminSelector(random_selector(rnd, ("team", "tier")))
        return AdminSelector(random_selector(rnd, ("team", "tier")), random_selector(rnd))

    def ports() -> tuple[AdminPort, ...] | None:
        choice = rnd.random()
        if choice < 0.4:
            return None
        options = (AdminPort("TCP", 80), AdminPort("TCP", 70, 90), AdminPort("TCP", named="http"),
                   AdminPort("UDP", named="dns"), AdminPort("UDP"), AdminPort("TCP", 8080))
        return tuple(rnd.sample(options, rnd.randint(1, 2)))

    def rules(actions: tuple[str, ...], egress: bool) -> tuple[AdminRule, ...]:
        out = []
        for k in range(rnd.randint(0, 2)):
            peers = [selector() for _ in range(rnd.randint(1, 2))]
            if egress and rnd.random() < 0.2:
                peers.append(AdminSelector(networks=("10.0.0.0/30",)))
            out.append(AdminRule(f"r{k}", rnd.choice(actions), tuple(peers), ports()))
        return tuple(out)

    policies = [AdminPolicy("AdminNetworkPolicy", f"anp{i}", "Admin", rnd.choice((1, 5, 5, 9)), selector(),
                            rules(("Allow", "Deny", "Pass"), False), rules(("Allow", "Deny", "Pass"), True))
                for i in range(rnd.randint(1, 3))]
    if rnd.random() < 0.7:
        policies.append(AdminPolicy("BaselineAdminNetworkPolicy", "default", "Baseline", 0, selector(),
                                    rules(("Allow", "Deny"), False), rules(("Allow", "Deny"), True)))
    return policies


SEEDS = range(150)
ADMIN_SEEDS = [s for s in SEEDS if s % 10 == 0] + list(range(150, 190))
# Probed (protocol, port)s: the ports the snapshots use, both ends of the ranges and just outside them, and
# ports nothing names.
PROBES = (("TCP", 80), ("TCP", 8080), ("TCP", 443), ("TCP", 69), ("TCP", 70), ("TCP", 90), ("TCP", 91),
          ("TCP", 5000), ("UDP", 53), ("UDP", 80), ("SCTP", 80))


@pytest.mark.parametrize("seed", [s for s in SEEDS if s not in ADMIN_SEEDS])
def test_class_matrix_equals_the_reference_evaluator(seed):
    snapshot = random_snapshot(seed)
    engine = Engine(snapshot)
    got = {(a.ref, b.ref): c for a, b, c in class_matrix(snapshot).pod_pairs()}
    for a in snapshot.pods:
        for b in snapshot.pods:
            if a is not b:
                assert got.get((a.ref, b.ref), EMPTY) == engine.connections(a, b), (a.ref, b.ref)


@pytest.mark.parametrize("seed", ADMIN_SEEDS)
def test_admin_tier_class_matrix_agrees_with_per_pair_decisions(seed):
    snapshot = random_snapshot(seed, admin=True)
    engine = Engine(snapshot)
    got = {(a.ref, b.ref): c for a, b, c in class_matrix(snapshot).pod_pairs()}
    for a in snapshot.pods:
        for b in snapshot.pods:
            if a is b:
                continue
            conns = got.get((a.ref, b.ref), EMPTY)
            for protocol, port in PROBES:
                decision = engine.decide(a, b, port, protocol)
                assert conns.contains(protocol, port) == decision.allowed, (a.ref, b.ref, protocol, port,
                                                                            decision.reason)


def test_admin_seeds_exercise_every_admin_action_in_the_decisions():
    """The seeds above must not pass vacuously: the admin tiers decide, and pass down, real pairs."""
    verbs = set()
    for seed in ADMIN_SEEDS:
        snapshot = random_snapshot(seed, admin=True)
        engine = Engine(snapshot)
        for a in snapshot.pods:
            for b in snapshot.pods:
                if a is not b:
                    reason = engine.decide(a, b, 80, "TCP").reason
                    verbs.update(v for v in ("AdminNetworkPolicy", "BaselineAdminNetworkPolicy") if v in reason)
                    verbs.update(v for v in ("allowed", "denied") if reason.startswith(v))
    assert verbs == {"AdminNetworkPolicy", "BaselineAdminNetworkPolicy", "allowed", "denied"}


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


@pytest.mark.parametrize("seed", range(40))
def test_reachability_diff_equals_the_pairwise_reference(seed):
    """diff compares class rows; the answer must be the pair-by-pair one, causes included."""
    from dataclasses import replace

    from monitor.analyze import reachability_diff
    from monitor.snapshot import apply_change, diff_snapshots

    before = random_snapshot(seed, admin=seed % 10 == 0)
    other = random_snapshot(seed + 1000)
    rnd = random.Random(seed)
    pods = list(before.pods)
    if pods:  # one pod relabelled, one gone: pod changes and policy changes together
        i = rnd.randrange(len(pods))
        pods[i] = replace(pods[i], labels=labels_of({"app": rnd.choice(APPS), "tier": "b"}))
        if len(pods) > 2:
            pods.pop(rnd.randrange(len(pods)))
    after = Snapshot.build(before.namespaces, pods, (), other.policies[:2] + before.policies[2:],
                           before.admin_policies)
    # Pods on one side only (`added`/`removed` flows) have their own tests; here the pairs present on both.
    got = {(c.source, c.destination): c for c in reachability_diff(before, after)[0] if c.change == "changed"}
    old_e, new_e = Engine(before), Engine(after)
    new_pods = {p.ref: p for p in after.pods}
    variants = [(c, Engine(v), {p.ref: p for p in v.pods})
                for c in diff_snapshots(before, after).changes for v in [apply_change(before, c)]]
    expected = {}
    for a in before.pods:
        for b in before.pods:
            if a is b or a.ref not in new_pods or b.ref not in new_pods:
                continue
            c_old, c_new = old_e.connections(a, b), new_e.connections(new_pods[a.ref], new_pods[b.ref])
            if c_old != c_new:
                causes = [c.describe() for c, e, vp in variants
                          if a.ref in vp and b.ref in vp and e.connections(vp[a.ref], vp[b.ref]) != c_old]
                expected[(a.ref, b.ref)] = (str(c_old), str(c_new), tuple(causes) or tuple(
                    c.describe() + " (with the others)" for c, _, _ in variants))
    assert {k: (c.before, c.after, c.causes) for k, c in got.items()} == expected


@pytest.mark.parametrize("seed", [s for s in range(60) if s not in ADMIN_SEEDS])
def test_tsv_lines_equal_the_reference_evaluator_with_replicas(seed):
    """`matrix --format tsv` writes a class's lines once with a placeholder for the source and fills it per
    pod: with replicas (classes of several pods, a source's own class among its destinations) every ordered
    pair of distinct pods must still come out once, with the reference evaluator's connection set."""
    from dataclasses import replace

    from monitor.analyze import connection_lines

    base = random_snapshot(seed)
    rnd = random.Random(seed)
    pods = []
    for p in base.pods:
        pods += [p] + [replace(p, name=f"{p.name}-r{k}") for k in range(rnd.randint(0, 3))]
    snapshot = Snapshot.build(base.namespaces, pods, (), base.policies)
    engine = Engine(snapshot)
    lines = b"".join(connection_lines(snapshot)).decode().splitlines()
    got = {}
    for line in lines:
        src, dst, conns = line.split("\t")
        assert (src, dst) not in got and src != dst, line
        got[(src, dst)] = conns
    expected = {(a.ref, b.ref): str(c) for a in snapshot.pods for b in snapshot.pods if a is not b
                for c in [engine.connections(a, b)] if c}
    assert got == expected


@pytest.mark.parametrize("seed", [s for s in range(30) if s not in ADMIN_SEEDS])
def test_check_reuses_decisions_only_between_pods_alike(seed):
    """`check` decides once per pair of pod classes and port and fills the pods' names in: every flow must
    read exactly as its own Engine.decide (verdict, explanation, IP caveat), replicas and IP-less pods too."""
    from dataclasses import replace

    from monitor.analyze import check_suite
    from monitor.suite import parse_suite

    base = random_snapshot(seed)
    rnd = random.Random(seed)
    pods = []
    for p in base.pods:
        pods.append(p if rnd.random() < 0.7 else replace(p, ip=None))
        pods += [replace(p, name=f"{p.name}-r{k}") for k in range(rnd.randint(0, 2))]
    snapshot = Snapshot.build(base.namespaces, pods, (), base.policies)
    ns = sorted({p.namespace for p in snapshot.pods})
    cases = [{"name": f"c{i}-{port}", "from": {"namespace": a}, "to": {"namespace": b}, "port": port,
              "protocol": "TCP", "expect": "allow"} for i, (a, b) in enumerate((a, b) for a in ns for b in ns)
             for port in (80, "http")]
    engine = Engine(snapshot)
    by_ref = {p.ref: p for p in snapshot.pods}
    flows = [f for c in check_suite(snapshot, parse_suite({"cases": cases})) for f in c.flows if f.port]
    assert flows
    for f in flows:
        d = engine.decide(by_ref[f.source], by_ref[f.destination], f.port, f.protocol)
        assert (f.intent.value, f.explanation, f.reason) == (
            "unknown" if d.depends_on_ip else "allow" if d.allowed else "deny", d.reason, d.depends_on_ip)

"""Proof that the lab enforces NetworkPolicies for real (kube-router in the lab's node namespace).

Job: for each basic policy shape, show that allowed traffic connects AND denied traffic does not, with real
packets from pod network namespaces to real listeners. Every destination port has a listener, so "refused"
can only mean "blocked" (kube-router REJECTs). Must not: probe from the node namespace (always allowed there),
or assert a verdict without first showing the same path connects when allowed.
"""

from __future__ import annotations

import time

import pytest

from tests.lab import config as C
from tests.lab.fixtures import Lab, pod_manifest

pytestmark = pytest.mark.lab

BLOCKED = ("refused", "timeout")


def netpol(name: str, spec: dict) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name},
            "spec": spec}


def apply_and_sync(lab: Lab, namespace: str, *policies: dict) -> None:
    t = time.time()
    lab.apply(list(policies), namespace=namespace)
    lab.wait_synced(since=t)


def test_default_deny_ingress(lab: Lab, lab_namespace: str) -> None:
    ns = lab_namespace
    pods = lab.run_pods(ns, [pod_manifest("srv", {"app": "srv"}, tcp=[80], udp=[53]),
                             pod_manifest("cli", {"app": "cli"}, tcp=[80])])
    srv, cli = pods["srv"], pods["cli"]
    assert lab.connect(cli, srv, 80) == "connected"
    assert lab.connect(cli, srv, 53, "UDP") == "connected"

    apply_and_sync(lab, ns, netpol("default-deny", {"podSelector": {}, "policyTypes": ["Ingress"]}))

    assert lab.connect(cli, srv, 80) in BLOCKED
    assert lab.connect(cli, srv, 53, "UDP") in BLOCKED
    assert lab.connect(srv, cli, 80) in BLOCKED  # every pod of the namespace is selected
    # Egress is not restricted: srv still reaches a pod in another namespace-less target, the API server.
    assert lab.connect(srv, C.ROOT_IP, C.APISERVER_PORT) == "connected"


def test_allow_by_pod_selector(lab: Lab, lab_namespace: str) -> None:
    ns = lab_namespace
    pods = lab.run_pods(ns, [pod_manifest("srv", {"app": "srv"}), pod_manifest("a", {"role": "a"}),
                             pod_manifest("b", {"role": "b"})])
    assert lab.connect(pods["b"], pods["srv"], 80) == "connected"

    apply_and_sync(lab, ns, netpol("from-a", {
        "podSelector": {"matchLabels": {"app": "srv"}}, "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"role": "a"}}}]}]}))

    assert lab.connect(pods["a"], pods["srv"], 80) == "connected"
    assert lab.connect(pods["b"], pods["srv"], 80) in BLOCKED
    assert lab.connect(pods["a"], pods["b"], 80) == "connected"  # b is not selected: still open


def test_allow_by_namespace_selector(lab: Lab, lab_namespace: str, make_namespace) -> None:
    ns = lab_namespace
    blue = make_namespace("blue", {"team": "blue"})
    red = make_namespace("red", {"team": "red"})
    srv = lab.run_pods(ns, [pod_manifest("srv", {"app": "srv"}), pod_manifest("local", {"role": "c"})])
    from_blue = lab.run_pods(blue, [pod_manifest("c", {"role": "c"})])["c"]
    from_red = lab.run_pods(red, [pod_manifest("c", {"role": "c"})])["c"]
    assert lab.connect(from_red, srv["srv"], 80) == "connected"

    apply_and_sync(lab, ns, netpol("from-blue", {
        "podSelector": {"matchLabels": {"app": "srv"}}, "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}}}]}]}))

    assert lab.connect(from_blue, srv["srv"], 80) == "connected"
    assert lab.connect(from_red, srv["srv"], 80) in BLOCKED
    assert lab.connect(srv["local"], srv["srv"], 80) in BLOCKED  # own namespace lacks team=blue


def test_named_port(lab: Lab, lab_namespace: str) -> None:
    ns = lab_namespace
    pods = lab.run_pods(ns, [pod_manifest("srv", {"app": "srv"}, tcp=[("http", 8080), 9090]),
                             pod_manifest("cli", {"app": "cli"})])
    srv, cli = pods["srv"], pods["cli"]
    assert lab.connect(cli, srv, 9090) == "connected"

    apply_and_sync(lab, ns, netpol("http-only", {
        "podSelector": {"matchLabels": {"app": "srv"}}, "policyTypes": ["Ingress"],
        "ingress": [{"ports": [{"port": "http", "protocol": "TCP"}]}]}))

    assert lab.connect(cli, srv, 8080) == "connected"
    assert lab.connect(cli, srv, 9090) in BLOCKED


def test_egress_deny(lab: Lab, lab_namespace: str) -> None:
    ns = lab_namespace
    pods = lab.run_pods(ns, [pod_manifest("srv", {"app": "srv"}, tcp=[80, 8080]),
                             pod_manifest("a", {"role": "a"}), pod_manifest("b", {"role": "b"})])
    srv, a, b = pods["srv"], pods["a"], pods["b"]
    assert lab.connect(a, b, 80) == "connected"

    apply_and_sync(lab, ns, netpol("a-egress", {
        "podSelector": {"matchLabels": {"role": "a"}}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "srv"}}}], "ports": [{"port": 80}]}]}))

    assert lab.connect(a, srv, 80) == "connected"
    assert lab.connect(a, srv, 8080) in BLOCKED
    assert lab.connect(a, b, 80) in BLOCKED
    assert lab.connect(b, srv, 8080) == "connected"  # b is not selected


def test_ipblock_ingress_with_except(lab: Lab, lab_namespace: str) -> None:
    ns = lab_namespace
    pods = lab.run_pods(ns, [pod_manifest("srv", {"app": "srv"}), pod_manifest("a", {"role": "a"}),
                             pod_manifest("b", {"role": "b"})])
    srv, a, b = pods["srv"], pods["a"], pods["b"]
    assert lab.connect(b, srv, 80) == "connected"

    apply_and_sync(lab, ns, netpol("cidr", {
        "podSelector": {"matchLabels": {"app": "srv"}}, "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"ipBlock": {"cidr": C.CLUSTER_CIDR, "except": [f"{b['status']['podIP']}/32"]}}]}]}))

    assert lab.connect(a, srv, 80) == "connected"
    assert lab.connect(b, srv, 80) in BLOCKED


def test_ipblock_egress(lab: Lab, lab_namespace: str) -> None:
    ns = lab_namespace
    pods = lab.run_pods(ns, [pod_manifest("srv", {"app": "srv"}), pod_manifest("a", {"role": "a"}),
                             pod_manifest("b", {"role": "b"})])
    srv, a, b = pods["srv"], pods["a"], pods["b"]
    assert lab.connect(a, b, 80) == "connected"

    apply_and_sync(lab, ns, netpol("a-to-srv-ip", {
        "podSelector": {"matchLabels": {"role": "a"}}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"ipBlock": {"cidr": f"{srv['status']['podIP']}/32"}}]}]}))

    assert lab.connect(a, srv, 80) == "connected"
    assert lab.connect(a, b, 80) in BLOCKED
    assert lab.connect(a, C.ROOT_IP, C.APISERVER_PORT) in (*BLOCKED, "unreachable")


def test_many_blocked_connects_are_all_refused_at_once(lab: Lab, lab_namespace: str) -> None:
    """kube-router REJECTs; the lab lifts the kernel's ICMP rate limits in its namespaces, so 60 blocked
    connects at once are all `refused` (not a random mix with slow timeouts), and fast."""
    ns = lab_namespace
    ports = list(range(10000, 10060))
    pods = lab.run_pods(ns, [pod_manifest("srv", {"app": "srv"}, tcp=ports), pod_manifest("cli", {"app": "cli"})])
    srv, cli = pods["srv"], pods["cli"]
    ip = srv["status"]["podIP"]
    assert set(lab.probe(cli, [(ip, p, "TCP") for p in ports[:5]]).values()) == {"connected"}

    apply_and_sync(lab, ns, netpol("deny", {"podSelector": {"matchLabels": {"app": "srv"}},
                                            "policyTypes": ["Ingress"]}))
    t0 = time.monotonic()
    outcomes = lab.probe(cli, [(ip, p, "TCP") for p in ports], timeout=3.0)
    assert sorted(set(outcomes.values())) == ["refused"]
    assert time.monotonic() - t0 < 3.0

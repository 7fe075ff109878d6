"""Where kube-router v2.1.0 departs from the NetworkPolicy spec (found by tests/test_lab_differential.py).

Job: pin each deviation with the smallest reproduction: the engine's answer (the spec's) and what kube-router
really does, side by side, plus a control case where the two agree. The differential generator avoids these
shapes; when a kube-router upgrade fixes one, its test here fails: then drop the test and the exclusion.
Must not: be read as the engine being wrong; each case cites the spec rule the engine follows.
"""

from __future__ import annotations

import time

import pytest

from tests.lab import config as C
from tests.lab.engine import EngineView, lab_pod_object
from tests.lab.fixtures import Lab, pod_manifest

pytestmark = pytest.mark.lab

BLOCKED = ("refused", "timeout")


def setup(lab: Lab, ns: str, pods: list[dict], policies: list[dict]) -> tuple[dict, EngineView]:
    running = lab.run_pods(ns, pods)
    t = time.time()
    for p in policies:
        lab.api.post(f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies", p)
    lab.wait_synced(since=t)
    objs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}]
    objs += [lab_pod_object(m, ns, running[m["metadata"]["name"]]["status"]["podIP"]) for m in pods]
    objs += [{**p, "metadata": {**p["metadata"], "namespace": ns}} for p in policies]
    return running, EngineView(objs)


def netpol(name: str, spec: dict) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name},
            "spec": spec}


def test_k1_two_direction_policy_leaks_ingress_rules_into_egress(lab: Lab, lab_namespace: str) -> None:
    """Spec: a pod selected for Egress may only send what an egress rule allows. One policy selecting both
    pods with `ingress: [{}]` and `egress: []`: a -> b must be denied (a's egress allows nothing). kube-router
    runs a's traffic through the policy's whole chain, whose ingress rule accepts "to pods the policy selects"."""
    ns = lab_namespace
    pods, engine = setup(lab, ns, [pod_manifest("a", {"app": "a"}), pod_manifest("b", {"app": "b"})], [
        netpol("both", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"], "ingress": [{}], "egress": []})])
    assert engine.decide(f"{ns}/a", f"{ns}/b", 80)[0] is False
    assert lab.connect(pods["a"], pods["b"], 80) == "connected"  # the deviation


def test_k1_control_same_rules_in_two_policies_agree(lab: Lab, lab_namespace: str) -> None:
    ns = lab_namespace
    pods, engine = setup(lab, ns, [pod_manifest("a", {"app": "a"}), pod_manifest("b", {"app": "b"})], [
        netpol("in", {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{}]}),
        netpol("out", {"podSelector": {}, "policyTypes": ["Egress"], "egress": []})])
    assert engine.decide(f"{ns}/a", f"{ns}/b", 80)[0] is False
    assert lab.connect(pods["a"], pods["b"], 80) in BLOCKED


def test_k2_egress_named_port_applies_every_number_to_every_destination(lab: Lab, lab_namespace: str) -> None:
    """Spec: a named port in a rule resolves per destination pod. `egress: [{ports: [{port: http}]}]` with
    d1 naming 8080 "http" and d2 naming 80 "http": src -> d2:8080 must be denied. kube-router resolves "http"
    over all pods ({80, 8080}) and allows both numbers to every destination."""
    ns = lab_namespace
    pods, engine = setup(lab, ns, [
        pod_manifest("src", {"app": "src"}),
        pod_manifest("d1", {"app": "d1"}, tcp=[("http", 8080), 80]),
        pod_manifest("d2", {"app": "d2"}, tcp=[("http", 80), 8080])], [
        netpol("out", {"podSelector": {"matchLabels": {"app": "src"}}, "policyTypes": ["Egress"],
                       "egress": [{"ports": [{"port": "http"}]}]})])
    src, d1, d2 = pods["src"], pods["d1"], pods["d2"]
    # Agreement where the spec allows:
    assert engine.decide(f"{ns}/src", f"{ns}/d1", 8080)[0] is True
    assert lab.connect(src, d1, 8080) == "connected"
    assert engine.decide(f"{ns}/src", f"{ns}/d2", 80)[0] is True
    assert lab.connect(src, d2, 80) == "connected"
    # The deviation:
    assert engine.decide(f"{ns}/src", f"{ns}/d2", 8080)[0] is False
    assert lab.connect(src, d2, 8080) == "connected"


def test_k3_second_ipblock_except_cancels_first_ipblock(lab: Lab, lab_namespace: str) -> None:
    """Spec: peers of a rule are ORed. `to: [{ipBlock: 10.244.0.0/16}, {ipBlock: 0.0.0.0/0 except
    10.244.0.0/16}]` allows every pod IP. kube-router puts both blocks in one ipset, where the except entry
    (nomatch) replaces the first block's cidr: pod traffic is blocked."""
    ns = lab_namespace
    manifests = [pod_manifest("a", {"app": "a"}), pod_manifest("srv", {"app": "srv"})]
    two_blocks = [{"ipBlock": {"cidr": C.CLUSTER_CIDR}},
                  {"ipBlock": {"cidr": "0.0.0.0/0", "except": [C.CLUSTER_CIDR]}}]
    pods, engine = setup(lab, ns, manifests, [
        netpol("out", {"podSelector": {"matchLabels": {"app": "a"}}, "policyTypes": ["Egress"],
                       "egress": [{"to": two_blocks}]})])
    assert engine.decide(f"{ns}/a", f"{ns}/srv", 80)[0] is True
    assert lab.connect(pods["a"], pods["srv"], 80) in BLOCKED  # the deviation


def test_k3_control_one_ipblock_agrees(lab: Lab, lab_namespace: str) -> None:
    ns = lab_namespace
    pods, engine = setup(lab, ns, [pod_manifest("a", {"app": "a"}), pod_manifest("srv", {"app": "srv"})], [
        netpol("out", {"podSelector": {"matchLabels": {"app": "a"}}, "policyTypes": ["Egress"],
                       "egress": [{"to": [{"ipBlock": {"cidr": C.CLUSTER_CIDR}}]}]})])
    assert engine.decide(f"{ns}/a", f"{ns}/srv", 80)[0] is True
    assert lab.connect(pods["a"], pods["srv"], 80) == "connected"


def test_k4_unresolvable_named_port_opens_every_port(lab: Lab, lab_namespace: str) -> None:
    """Spec: a named port only matches pods that declare that name; `ingress: [{from: [{namespaceSelector:
    {}}], ports: [{port: dns, protocol: UDP}]}]` on a pod without "dns" allows nothing. kube-router, for a rule
    with peers, drops the port match when the name resolves to nothing and allows every port from the peers.
    (Without peers it gets this right: see the control below.)"""
    ns = lab_namespace
    pods, engine = setup(lab, ns, [pod_manifest("srv", {"app": "srv"}, tcp=[("http", 80)], udp=[53]),
                                   pod_manifest("cli", {"app": "cli"})], [
        netpol("in", {"podSelector": {"matchLabels": {"app": "srv"}}, "policyTypes": ["Ingress"],
                      "ingress": [{"from": [{"namespaceSelector": {}}],
                                   "ports": [{"port": "dns", "protocol": "UDP"}]}]})])
    assert engine.decide(f"{ns}/cli", f"{ns}/srv", 80)[0] is False
    assert engine.decide(f"{ns}/cli", f"{ns}/srv", 53, "UDP")[0] is False
    assert lab.connect(pods["cli"], pods["srv"], 80) == "connected"  # the deviation
    assert lab.connect(pods["cli"], pods["srv"], 53, "UDP") == "connected"


def test_k4_control_without_peers_agrees(lab: Lab, lab_namespace: str) -> None:
    ns = lab_namespace
    pods, engine = setup(lab, ns, [pod_manifest("srv", {"app": "srv"}, tcp=[("http", 80)], udp=[53]),
                                   pod_manifest("cli", {"app": "cli"})], [
        netpol("in", {"podSelector": {"matchLabels": {"app": "srv"}}, "policyTypes": ["Ingress"],
                      "ingress": [{"ports": [{"port": "dns", "protocol": "UDP"}]}]})])
    assert engine.decide(f"{ns}/cli", f"{ns}/srv", 80)[0] is False
    assert lab.connect(pods["cli"], pods["srv"], 80) in BLOCKED


def test_k4_control_named_port_present_agrees(lab: Lab, lab_namespace: str) -> None:
    ns = lab_namespace
    pods, engine = setup(lab, ns, [pod_manifest("srv", {"app": "srv"}, tcp=[("http", 80), 8080]),
                                   pod_manifest("cli", {"app": "cli"})], [
        netpol("in", {"podSelector": {"matchLabels": {"app": "srv"}}, "policyTypes": ["Ingress"],
                      "ingress": [{"ports": [{"port": "http"}]}]})])
    assert engine.decide(f"{ns}/cli", f"{ns}/srv", 80)[0] is True
    assert lab.connect(pods["cli"], pods["srv"], 80) == "connected"
    assert engine.decide(f"{ns}/cli", f"{ns}/srv", 8080)[0] is False
    assert lab.connect(pods["cli"], pods["srv"], 8080) in BLOCKED

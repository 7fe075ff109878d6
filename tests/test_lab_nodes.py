"""The lab's two nodes (issue 18 items 2 and 3): each its own node namespace, pod CIDR, Node object, kube-proxy
and kube-router; the agent schedules pods over them; pods reach each other across nodes and each node's
kube-router enforces the policies of its own pods. Then the test `--per-node` exists for: one node's enforcer
stops, and only the flows probed from that node report enforcement gaps and dataplane drift, naming it.
Must not: leave a node without its kube-router (the fault is undone in `finally`, and waited for).
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.lab import config as C
from tests.lab import control, kube, netns, procs
from tests.lab.fixtures import Lab, deployment, pod_manifest
from tests.test_live_lab import case, netpol, probe_pods, run_monitor, write_config

pytestmark = pytest.mark.lab

FIRST, SECOND = C.NODES


def in_cidr(ip: str, node: C.LabNode) -> bool:
    return ipaddress.ip_address(ip) in ipaddress.ip_network(node.pod_cidr)


def test_each_node_is_registered_ready_with_its_own_cidr_and_enforcer(lab: Lab) -> None:
    for node in C.NODES:
        obj = lab.api.get(f"/api/v1/nodes/{node.name}")
        assert obj["spec"]["podCIDRs"] == [node.pod_cidr]
        assert {"type": "InternalIP", "address": node.ip} in obj["status"]["addresses"]
        assert any(c["type"] == "Ready" and c["status"] == "True" for c in obj["status"]["conditions"])
        assert lab.api.exists(f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node.name}")
        for component in control.NODE_COMPONENTS:  # one of each per node, as their DaemonSets would run them
            assert procs.pid_of(node.proc(component)), f"{node.proc(component)} is not running"
        assert "KUBE-ROUTER-FORWARD" in netns.node_iptables(node=node)
        assert control.kube_proxy_synced(node)
    assert len({n.pod_cidr for n in C.NODES}) == len({n.netns for n in C.NODES}) == len(C.NODES) == 2


def test_scheduling_honours_node_name_and_selector_and_spreads_the_rest(lab: Lab, lab_namespace: str) -> None:
    ns = lab_namespace
    pinned = pod_manifest("pinned", {"app": "pinned"}, nodeName=SECOND.name)
    selected = pod_manifest("selected", {"app": "selected"}, nodeSelector={"kubernetes.io/hostname": FIRST.name})
    free = [pod_manifest(f"free-{i}", {"app": "free"}) for i in range(4)]
    pods = lab.run_pods(ns, [pinned, selected, *free])
    nowhere = pod_manifest("nowhere", {"app": "nowhere"}, nodeSelector={"kubernetes.io/hostname": "no-such-node"})
    lab.api.post(f"/api/v1/namespaces/{ns}/pods", nowhere)

    for name, node in (("pinned", SECOND), ("selected", FIRST)):
        pod = pods[name]
        assert pod["spec"]["nodeName"] == node.name
        assert in_cidr(pod["status"]["podIP"], node) and pod["status"]["hostIP"] == node.ip
        assert netns.link_exists(netns.pod_names(pod["metadata"]["uid"])[1], node.netns)
    spread = {pods[f"free-{i}"]["spec"]["nodeName"] for i in range(4)}
    assert spread == {FIRST.name, SECOND.name}
    for i in range(4):
        pod = pods[f"free-{i}"]
        assert in_cidr(pod["status"]["podIP"], lab.node_of(pod))
    time.sleep(1.5)  # several agent passes: no node fits, so it stays unscheduled (as with kube-scheduler)
    stuck = lab.pod(ns, "nowhere")
    assert stuck["spec"].get("nodeName") is None and stuck["status"]["phase"] == "Pending"
    assert scheduled(lab, ns, "nowhere") == ("False", "Unschedulable", fit_error(
        "2 node(s) didn't match Pod's node affinity/selector"))


def fit_error(histogram: str) -> str:
    """kube-scheduler v1.36's message for a pod no node of the two fits (each reason unresolvable)."""
    return (f"0/2 nodes are available: {histogram}. preemption: 0/2 nodes are available: 2 Preemption is not "
            "helpful for scheduling.")


def scheduled(lab: Lab, ns: str, name: str) -> tuple[str, str | None, str | None] | None:
    """The pod's PodScheduled condition as (status, reason, message), None while it has none."""
    cond = next((c for c in lab.pod(ns, name)["status"].get("conditions") or [] if c["type"] == "PodScheduled"),
                None)
    return None if cond is None else (cond["status"], cond.get("reason"), cond.get("message"))


def test_cordoned_and_tainted_nodes_keep_pods_pending_with_the_schedulers_reason_until_reopened(
        lab: Lab, lab_namespace: str) -> None:
    """The agent schedules as kube-scheduler does: cordoned nodes and NoSchedule taints the pod does not
    tolerate are skipped; a pod no node fits stays Pending with PodScheduled=False/Unschedulable and the
    scheduler's message (on the status subresource), and is bound once a node opens again (uncordon, taint
    removed). A DaemonSet's pods carry the cordon toleration (their controller adds it) and still run."""
    ns = lab_namespace
    pods = f"/api/v1/namespaces/{ns}/pods"
    with lab.nodes_closed(C.NODES):
        lab.api.post(pods, pod_manifest("waits", {"app": "waits"}))
        cond = kube.wait_for("waits to be found unschedulable", lambda: scheduled(lab, ns, "waits"), timeout=20)
        assert cond == ("False", "Unschedulable", fit_error("2 node(s) were unschedulable"))
        daemon = pod_manifest("daemon", {"app": "daemon"}, tcp=[8080])["spec"] | {"restartPolicy": "Always"}
        lab.apply({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "daemon"},
                   "spec": {"selector": {"matchLabels": {"app": "daemon"}},
                            "template": {"metadata": {"labels": {"app": "daemon"}}, "spec": daemon}}}, namespace=ns)
        kube.wait_for("a DaemonSet pod Running on each cordoned node", lambda: {
            p["spec"]["nodeName"] for p in lab.pods(ns, {"app": "daemon"})
            if p["status"].get("phase") == "Running"} == {n.name for n in C.NODES}, timeout=60)
        version = lab.pod(ns, "waits")["metadata"]["resourceVersion"]
        time.sleep(1)  # five more agent passes: still nowhere to go, and the unchanged condition is not rewritten
        waits = lab.pod(ns, "waits")
        assert waits["spec"].get("nodeName") is None and waits["status"]["phase"] == "Pending"
        assert waits["metadata"]["resourceVersion"] == version
    # Uncordoned: a later pass binds it (the binding sets PodScheduled=True) and it runs.
    pod = lab.wait_running(ns, "waits", timeout=30)
    assert pod["spec"]["nodeName"] in {n.name for n in C.NODES}
    assert scheduled(lab, ns, "waits")[0] == "True"

    taint = {"key": "netpol-drift.test/maintenance", "value": "true", "effect": "NoSchedule"}
    with lab.nodes_closed([FIRST, SECOND], cordon=False, taints=[taint]):
        lab.api.post(pods, pod_manifest("kept-off", {"app": "kept-off"}))
        tolerant = pod_manifest("tolerant", {"app": "tolerant"}, tolerations=[
            {"key": "netpol-drift.test/maintenance", "operator": "Equal", "value": "true", "effect": "NoSchedule"}])
        lab.api.post(pods, tolerant)
        lab.wait_running(ns, "tolerant", timeout=30)
        cond = kube.wait_for("kept-off to be found unschedulable", lambda: scheduled(lab, ns, "kept-off"), timeout=20)
        assert cond == ("False", "Unschedulable", fit_error("2 node(s) had untolerated taint(s)"))
        assert lab.pod(ns, "kept-off")["spec"].get("nodeName") is None
    lab.wait_running(ns, "kept-off", timeout=30)


def test_pods_reach_each_other_across_nodes_and_each_node_enforces_its_own(lab: Lab, lab_namespace: str) -> None:
    ns = lab_namespace
    pods = lab.run_pods(ns, [pod_manifest("a", {"app": "a"}, tcp=[80], udp=[53], nodeName=FIRST.name),
                             pod_manifest("b", {"app": "b"}, tcp=[80], udp=[53], nodeName=SECOND.name)])
    a, b = pods["a"], pods["b"]
    for src, dst in ((a, b), (b, a)):
        assert lab.connect(src, dst, 80) == "connected"
        assert lab.connect(src, dst, 53, "UDP") == "connected"

    since = time.time()
    lab.apply(netpol("b-deny-ingress", {"podSelector": {"matchLabels": {"app": "b"}}, "policyTypes": ["Ingress"]}),
              namespace=ns)
    lab.wait_synced(since=since)
    netns.flush_conntrack()
    assert lab.connect(a, b, 80) == "refused"  # REJECTed by the second node's kube-router
    assert lab.connect(a, b, 53, "UDP") == "refused"
    assert lab.connect(b, a, 80) == "connected"  # b's egress is free
    # b's firewall chain lives on its own node only: the other node's kube-router has no rule for it.
    b_ip = re.compile(r"-d " + re.escape(b["status"]["podIP"]) + r"(/32)?\b")
    assert b_ip.search(netns.node_iptables("filter", SECOND))
    assert not b_ip.search(netns.node_iptables("filter", FIRST))


# --------------------------------------------------------------------------------- one node stops enforcing
@contextmanager
def enforcer_stopped(lab: Lab, node: C.LabNode) -> Iterator[None]:
    """Stops the node's kube-router and flushes its top-level chains (the jumps to every pod's firewall), so
    the node forwards everything: a CNI agent that died and took its rules with it. Restarted afterwards."""
    pid = procs.pid_of(node.proc("kube-router"))
    assert pid, f"{node.proc('kube-router')} is not running"
    procs.stop([pid])
    try:
        for chain in ("KUBE-ROUTER-FORWARD", "KUBE-ROUTER-OUTPUT", "KUBE-ROUTER-INPUT"):
            netns.run(["ip", "netns", "exec", node.netns, "iptables", "-F", chain])
        netns.flush_conntrack()
        yield
    finally:
        since = time.time()
        control.start_kube_router(node)
        lab.wait_synced(since=since, nodes=[node], timeout=60)  # its first full sync rebuilds every chain


def per_node_suite(ns: str) -> dict:
    def to(name: str, port: int, protocol: str, expect: str) -> dict:
        return {"name": name, "from": {"namespace": ns, "workload": "client"},
                "to": {"namespace": ns, "workload": "server"}, "port": port, "protocol": protocol, "expect": expect}

    return {"name": "per-node", "cases": [to("http", 8080, "TCP", "allow"), to("admin-denied", 9090, "TCP", "deny"),
                                          to("dns", 5353, "UDP", "allow"), to("dns-alt-denied", 5354, "UDP", "deny")]}


def test_per_node_run_finds_the_node_whose_enforcer_stopped(lab: Lab, lab_namespace: str, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    """Egress policies on the client are enforced by the kube-router of the node the client's packet leaves
    from, so with --per-node the probes from the broken node see what a workload there would see: blocked
    flows get through. The probes from the healthy node keep seeing them blocked."""
    ns = lab_namespace
    lab.run_workloads(ns, [
        deployment("server", tcp=[8080, 9090], udp=[5353, 5354], node=FIRST.name),
        deployment("client", tcp=[], replicas=2),
    ])
    since = time.time()
    lab.apply(netpol("client-egress", {
        "podSelector": {"matchLabels": {"app": "client"}}, "policyTypes": ["Egress"],
        "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "server"}}}],
                    "ports": [{"port": 8080, "protocol": "TCP"}, {"port": 5353, "protocol": "UDP"}]}]}), namespace=ns)
    lab.wait_synced(since=since)
    config = write_config(lab, tmp_path)
    suite = per_node_suite(ns)

    rc, before = run_monitor(config, suite, tmp_path, "--per-node")
    assert rc == 0 and before["known_good"] is True, before
    for c in before["cases"]:
        assert sorted(f["node"] for f in c["flows"]) == [FIRST.name, SECOND.name], c

    with enforcer_stopped(lab, SECOND):
        rc, after = run_monitor(config, suite, tmp_path, "--per-node")
        _, contrast = run_monitor(config, suite, tmp_path, "--no-store")  # the same fault, without --per-node

    assert rc == 1 and after["baseline_run"] == before["stored_run"]
    for name in ("http", "dns"):  # allowed flows stay allowed everywhere
        assert case(after, name)["result"] == "pass" and not case(after, name)["enforcement_gap"]
    for name, protocol in (("admin-denied", "TCP"), ("dns-alt-denied", "UDP")):
        c = case(after, name)
        assert c["result"] == "fail" and c["enforcement_gap"] is True and c["drift"] is True
        flows = {f["node"]: f for f in c["flows"]}
        broken, healthy = flows[SECOND.name], flows[FIRST.name]
        assert broken["source"] == f"{ns}/client@{SECOND.name}" and broken["protocol"] == protocol
        assert (broken["outcome"], broken["verdict"], broken["intent"]) == ("connected", "allow", "deny")
        assert broken["enforcement_gap"] is True
        assert (healthy["outcome"], healthy["verdict"]) == ("refused", "deny") and not healthy["enforcement_gap"]
    drift = {(d["case"], d["source"]): d for d in after["drift"]}
    assert set(drift) == {("admin-denied", f"{ns}/client@{SECOND.name}"),
                          ("dns-alt-denied", f"{ns}/client@{SECOND.name}")}
    for d in drift.values():
        assert (d["known_good"], d["observed"], d["state"]) == ("refused", "connected", "confirmed")
        assert d["cause"]["kind"] == "dataplane"  # the policies did not change: the network did
    assert probe_pods(lab) == []

    # Without --per-node one probe pod per source goes wherever the agent schedules it: the fault shows only
    # if it lands on the broken node (the flow's node says where it ran), and nothing says the other node is fine.
    with capsys.disabled():
        print("\ncontrast without --per-node:", [(c["name"], c["result"], f["node"], f["outcome"])
                                                 for c in contrast["cases"] for f in c["flows"]])
    for c in contrast["cases"]:
        [flow] = c["flows"]
        assert "@" not in flow["source"]
        on_broken = flow["node"] == SECOND.name
        if c["name"] in ("admin-denied", "dns-alt-denied"):
            assert flow["outcome"] == ("connected" if on_broken else "refused"), flow

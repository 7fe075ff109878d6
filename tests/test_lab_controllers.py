"""The lab runs what users deploy: kube-controller-manager's controllers and kube-proxy's Services, for real.

Job: prove that Deployments make and remove real pods (scaling, rolling updates), that a deleted namespace
finishes on its own, and that a ClusterIP Service routes real packets through kube-proxy's rules to its
endpoints, where kube-router's policies still apply; and that `run --once` copes with all of it. Must not:
hand-make what a controller makes, or accept a verdict that did not come from packets.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.lab import config as C
from tests.lab import netns
from tests.lab.fixtures import Lab, deployment, pod_manifest
from tests.lab.kube import wait_for
from tests.test_live_lab import case, netpol, probe_pods, run_monitor, write_config

pytestmark = pytest.mark.lab


def scale(lab: Lab, ns: str, name: str, replicas: int) -> list[dict]:
    lab.api.merge_patch(f"/apis/apps/v1/namespaces/{ns}/deployments/{name}/scale", {"spec": {"replicas": replicas}})
    return lab.wait_rollout(ns, "Deployment", name)


def test_deployment_scaled_1_3_1_makes_and_removes_real_pods(lab: Lab, lab_namespace: str) -> None:
    ns = lab_namespace
    [client] = lab.run_workloads(ns, [deployment("client", tcp=[])])["client"]
    [first] = lab.run_workloads(ns, [deployment("web", tcp=[8080])])["web"]
    owner = first["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "ReplicaSet" and owner["name"] == f"web-{first['metadata']['labels']['pod-template-hash']}"

    three = scale(lab, ns, "web", 3)
    assert len(three) == 3 and first["metadata"]["name"] in {p["metadata"]["name"] for p in three}
    assert len({p["status"]["podIP"] for p in three}) == 3
    for pod in three:  # each one a real network namespace with a real listener behind its IP
        assert lab.netns_of(pod) in netns.pod_netns_list()
        assert lab.connect(client, pod, 8080) == "connected"

    [left] = scale(lab, ns, "web", 1)
    removed = [p for p in three if p["metadata"]["name"] != left["metadata"]["name"]]
    assert len(removed) == 2
    for pod in removed:  # deleted through the API by the ReplicaSet controller, torn down by the agent
        assert not lab.api.exists(f"/api/v1/namespaces/{ns}/pods/{pod['metadata']['name']}")
        assert lab.netns_of(pod) not in netns.pod_netns_list()
    assert lab.connect(client, left, 8080) == "connected"


def test_rolling_update_is_followed_by_a_run_without_skipped_cases(lab: Lab, lab_namespace: str,
                                                                   tmp_path: Path) -> None:
    ns = lab_namespace
    pods = lab.run_workloads(ns, [deployment("frontend", tcp=[]),
                                  deployment("api", tcp=[("http", 9000)], replicas=2)])
    since = time.time()
    lab.apply([netpol("api-from-frontend", {
        "podSelector": {"matchLabels": {"app": "api"}}, "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "frontend"}}}], "ports": [{"port": "http"}]}]}),
    ], namespace=ns)
    lab.wait_synced(since=since)
    suite = {"name": "rollout", "cases": [
        {"name": "frontend-to-api", "from": {"namespace": ns, "workload": "frontend"},
         "to": {"namespace": ns, "workload": "api"}, "port": "http", "expect": "allow"},
        {"name": "api-to-api-denied", "from": {"namespace": ns, "workload": "api"},
         "to": {"namespace": ns, "workload": "api"}, "port": 9000, "expect": "deny"}]}
    config = write_config(lab, tmp_path)
    rc, before = run_monitor(config, suite, tmp_path)
    assert rc == 0, before["cases"]

    # A new pod template (new label, so a new pod-template-hash): the Deployment replaces both api pods.
    old = {p["metadata"]["name"] for p in pods["api"]}
    since = time.time()
    lab.api.merge_patch(f"/apis/apps/v1/namespaces/{ns}/deployments/api",
                        {"spec": {"template": {"metadata": {"labels": {"version": "v2"}}}}})
    new = lab.wait_rollout(ns, "Deployment", "api")
    assert len(new) == 2 and not old & {p["metadata"]["name"] for p in new}
    assert {p["metadata"]["labels"]["pod-template-hash"] for p in new}.isdisjoint(
        {p["metadata"]["labels"]["pod-template-hash"] for p in pods["api"]})
    lab.wait_synced(since=since)

    rc, after = run_monitor(config, suite, tmp_path)
    assert rc == 0, [(c["name"], c["result"], c["explanation"]) for c in after["cases"]]
    assert {c["result"] for c in after["cases"]} == {"pass"}
    [flow] = case(after, "frontend-to-api")["flows"]  # both new replicas probed, one result per identity
    assert flow["outcome"] == "connected" and flow["destination"] == f"{ns}/api"
    assert probe_pods(lab) == []


def test_deleted_namespace_finishes_on_its_own(lab: Lab) -> None:
    ns = f"doomed-{int(time.time() * 1000) % 10**8}"
    lab.create_namespace(ns)
    [pod] = lab.run_workloads(ns, [deployment("web", tcp=[8080])])["web"]
    lab.apply([{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}},
               netpol("deny", {"podSelector": {}, "policyTypes": ["Ingress"]})], namespace=ns)
    started = time.monotonic()
    lab.api.delete(f"/api/v1/namespaces/{ns}")  # no finalizing by hand: the namespace controller does it all
    lab.wait_gone(f"/api/v1/namespaces/{ns}", timeout=60)
    took = time.monotonic() - started
    assert lab.netns_of(pod) not in netns.pod_netns_list()
    assert not lab.api.get("/api/v1/pods", fieldSelector=f"metadata.namespace={ns}")["items"]
    assert took < 60


# ------------------------------------------------------------------------------------------ kube-proxy
def service_chain_packets(ns: str, svc: str) -> int:
    """Packets that kube-proxy's per-endpoint DNAT rules of the Service have handled (nat of every node: the
    source pod's node DNATs)."""
    out = "".join(netns.run(["ip", "netns", "exec", n.netns, "iptables-save", "-c", "-t", "nat"]).stdout
                  for n in C.NODES)
    total = 0
    for line in out.splitlines():
        if line.startswith("[") and "-j DNAT" in line and f'"{ns}/{svc}' in line:
            total += int(re.match(r"\[(\d+):", line).group(1))
    return total


def test_kubernetes_service_reaches_the_api_server(lab: Lab, lab_namespace: str) -> None:
    [client] = lab.run_pods(lab_namespace, [pod_manifest("client", {"app": "client"}, tcp=[])]).values()
    assert lab.connect(client, C.KUBERNETES_SERVICE_IP, 443) == "connected"
    slices = lab.api.get("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices",
                         labelSelector="kubernetes.io/service-name=kubernetes")["items"]
    assert [e["addresses"] for s in slices for e in s["endpoints"]] == [[C.ROOT_IP]]


def test_cluster_ip_case_is_connected_when_allowed_and_blocked_when_denied(lab: Lab, lab_namespace: str,
                                                                           tmp_path: Path) -> None:
    ns = lab_namespace
    pods = lab.run_workloads(ns, [deployment("client", tcp=[]), deployment("api", tcp=[("http", 9000)],
                                                                            replicas=2)])
    lab.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api"},
               "spec": {"selector": {"app": "api"}, "ports": [{"name": "web", "port": 80, "targetPort": "http"}]}},
              namespace=ns)
    svc = lab.api.get(f"/api/v1/namespaces/{ns}/services/api")
    cluster_ip = svc["spec"]["clusterIP"]
    assert cluster_ip.startswith("10.96.0.")
    # The EndpointSlice controller lists both api pods; kube-proxy has one DNAT rule per endpoint.
    want = sorted(p["status"]["podIP"] for p in pods["api"])
    def endpoints() -> list[str] | None:
        items = lab.api.get(f"/apis/discovery.k8s.io/v1/namespaces/{ns}/endpointslices",
                            labelSelector="kubernetes.io/service-name=api")["items"]
        got = sorted(a for s in items for e in s.get("endpoints") or [] if e["conditions"].get("ready")
                     for a in e["addresses"])
        return got if got == want else None

    wait_for("the api Service's EndpointSlice", endpoints, 30)
    wait_for("kube-proxy's rules for the api Service on every node", lambda: all(
        f"--to-destination {ip}:9000" in netns.node_iptables("nat", n) for ip in want for n in C.NODES), 30)

    suite = {"name": "svc", "cases": [{"name": "client-to-api-service", "from": {"namespace": ns, "workload": "client"},
                                       "to": {"service": f"{ns}/api"}, "port": 80, "expect": "allow"}]}
    config = write_config(lab, tmp_path)
    before = service_chain_packets(ns, "api")
    rc, report = run_monitor(config, suite, tmp_path, "--via-cluster-ip")
    flows = case(report, "client-to-api-service")["flows"]
    [via_svc] = [f for f in flows if f["destination"].startswith("svc/")]
    assert via_svc["outcome"] == "connected" and via_svc["verdict"] == "allow", via_svc
    assert rc == 0 and case(report, "client-to-api-service")["result"] == "pass"
    assert service_chain_packets(ns, "api") > before, "the probe did not go through kube-proxy's DNAT rules"
    assert lab.connect(pods["client"][0], cluster_ip, 80) == "connected"

    since = time.time()
    lab.apply(netpol("api-deny", {"podSelector": {"matchLabels": {"app": "api"}}, "policyTypes": ["Ingress"]}),
              namespace=ns)
    lab.wait_synced(since=since)
    netns.flush_conntrack()
    before = service_chain_packets(ns, "api")
    rc, report = run_monitor(config, suite, tmp_path, "--via-cluster-ip")
    flows = case(report, "client-to-api-service")["flows"]
    [via_svc] = [f for f in flows if f["destination"].startswith("svc/")]
    assert via_svc["outcome"] in ("refused", "timeout") and via_svc["verdict"] == "deny", via_svc
    assert rc == 1 and case(report, "client-to-api-service")["result"] == "fail"
    assert not any(f["enforcement_gap"] for f in flows)  # the policies say deny too: drift-free, just a violation
    assert service_chain_packets(ns, "api") > before  # DNATed by kube-proxy, then rejected by kube-router
    assert lab.connect(pods["client"][0], cluster_ip, 80) in ("refused", "timeout")
    assert probe_pods(lab) == []

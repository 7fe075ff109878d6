"""The cluster adapter and take_snapshot against the lab's real API server, as the monitor's ServiceAccount
(the RBAC of deploy/rbac.yaml): what a snapshot holds, admin-policy CRDs absent and present, EndpointSlices,
watches, and that no kubernetes object leaves monitor.cluster."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime

import pytest

from monitor.cluster import ClusterAdapter, ClusterEvent
from monitor.models import AdminPolicy, ContainerPort, Namespace, NetworkPolicy, Pod, Service
from monitor.settings import ClusterSettings
from monitor.snapshot import take_snapshot
from tests.lab import config as C
from tests.lab.fixtures import Lab, deployment, pod_manifest
from tests.test_admin_policies_lab import admin_policy_crds

pytestmark = pytest.mark.lab

ANP_CRD = "adminnetworkpolicies.policy.networking.k8s.io"


@pytest.fixture
def adapter(lab: Lab):
    a = ClusterAdapter.connect(ClusterSettings(name="lab", retries=1), kubeconfig=str(lab.monitor_kubeconfig))
    yield a
    a.close()


def test_snapshot_holds_what_the_engine_needs(lab: Lab, lab_namespace: str, make_namespace, adapter) -> None:
    ns = lab_namespace
    other = make_namespace("blue", {"team": "blue"})
    [web] = lab.run_workloads(ns, [deployment("web", tcp=[("http", 8080)])])["web"]
    probe = pod_manifest("leftover-probe", {"app": "web", "netpol-drift.io/probe": "true"}, tcp=[])
    lab.run_pods(ns, [probe])
    lab.run_pods(other, [pod_manifest("db", {"app": "db"}, tcp=[5432])])
    lab.apply([{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}},
               {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "web"},
                "spec": {"podSelector": {"matchLabels": {"app": "web"}},
                         "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "blue"}}}],
                                      "ports": [{"port": "http"}]}]}}], namespace=ns)

    snap = take_snapshot(adapter, datetime.now(UTC))

    names = {n.name: dict(n.labels) for n in snap.namespaces}
    assert names[other] == {"team": "blue", "kubernetes.io/metadata.name": other}
    [pod] = [p for p in snap.pods if p.namespace == ns]  # the probe-labelled pod is not part of a snapshot
    assert isinstance(pod, Pod)
    assert pod.name == web["metadata"]["name"] and pod.ip == web["status"]["podIP"]
    assert pod.ports == (ContainerPort(8080, "TCP", "http"),)
    assert pod.node == web["spec"]["nodeName"] and pod.node in {n.name for n in C.NODES}
    assert pod.workload == "Deployment/web"  # the ReplicaSet's hash is not part of the identity
    [svc] = [s for s in snap.services if s.namespace == ns]
    assert isinstance(svc, Service) and svc.selector == (("app", "web"),) and svc.cluster_ip
    assert svc.ports[0].target_port == "http"
    [pol] = [p for p in snap.policies if p.namespace == ns]
    assert isinstance(pol, NetworkPolicy) and pol.policy_types == frozenset({"Ingress"})
    assert pol.ingress[0].peers[0].namespace_selector.match_labels == (("team", "blue"),)
    assert all(isinstance(n, Namespace) for n in snap.namespaces)


def _crd_exists(lab: Lab) -> bool:
    return lab.api.exists(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{ANP_CRD}")


def test_absent_admin_policy_crds_are_not_an_error(lab: Lab, adapter) -> None:
    if _crd_exists(lab):
        pytest.fail("the lab serves AdminNetworkPolicy already: this test needs a cluster without the CRD")
    assert adapter.list_admin_policies() == ()


def test_admin_policies_are_read_when_the_crd_exists(lab: Lab, lab_namespace: str, adapter) -> None:
    name = f"deny-{lab_namespace}"[:60]
    with admin_policy_crds(lab, "AdminNetworkPolicy"):
        lab.api.post("/apis/policy.networking.k8s.io/v1alpha1/adminnetworkpolicies", {
            "apiVersion": "policy.networking.k8s.io/v1alpha1", "kind": "AdminNetworkPolicy",
            "metadata": {"name": name},
            "spec": {"priority": 10,
                     "subject": {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": lab_namespace}}},
                     "ingress": [{"name": "deny-all", "action": "Deny",
                                  "from": [{"namespaces": {}}]}]}})
        found = [p for p in adapter.list_admin_policies() if p.name == name]
        assert len(found) == 1 and isinstance(found[0], AdminPolicy)
        assert (found[0].kind, found[0].tier, found[0].priority) == ("AdminNetworkPolicy", "Admin", 10)
        assert found[0].ingress[0].action == "Deny"


def test_endpoint_slices_are_plain_data(lab: Lab, lab_namespace: str, adapter) -> None:
    lab.api.post(f"/apis/discovery.k8s.io/v1/namespaces/{lab_namespace}/endpointslices", {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.244.0.10"], "conditions": {"ready": True}},
                      {"addresses": ["10.244.0.11"], "conditions": {"ready": False}}],
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]})
    # As admin: the monitor's RBAC has no EndpointSlice rule (nothing of the product reads them today).
    admin = ClusterAdapter.connect(ClusterSettings(name="lab", retries=1), kubeconfig=str(lab.kubeconfig))
    try:
        [s] = admin.list_endpoint_slices(lab_namespace)
    finally:
        admin.close()
    assert (s.service, s.addresses, s.ports) == ("web", ("10.244.0.10",), (("http", 8080, "TCP"),))


def test_watch_reports_policy_changes(lab: Lab, lab_namespace: str, adapter) -> None:
    events: list[ClusterEvent] = []

    def watch() -> None:
        for e in adapter.watch_changes("NetworkPolicy", timeout_seconds=5):
            events.append(e)
            if e.namespace == lab_namespace:
                return

    t = threading.Thread(target=watch)
    t.start()
    time.sleep(0.5)
    lab.apply({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "w"},
               "spec": {"podSelector": {}}}, namespace=lab_namespace)
    t.join(timeout=15)
    mine = [e for e in events if e.namespace == lab_namespace]
    assert mine and (mine[0].type, mine[0].kind, mine[0].name) == ("ADDED", "NetworkPolicy", "w")
    assert mine[0].resource_version

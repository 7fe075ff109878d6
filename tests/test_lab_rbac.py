"""deploy/rbac.yaml gives the monitor exactly what it needs in a real API server, and nothing more.

Job: ask the lab's kube-apiserver, as the monitor's ServiceAccount identity (static token), what it may do,
and check both the rights it needs and the ones it must not have. Must not: test as admin.
"""

from __future__ import annotations

import pytest

from tests.lab import config as C
from tests.lab.fixtures import Lab
from tests.lab.rest import Rest

pytestmark = pytest.mark.lab


def can(api: Rest, verb: str, resource: str, namespace: str = "", group: str = "", sub: str = "",
        name: str = "") -> bool:
    review = api.post("/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
        "spec": {"resourceAttributes": {"verb": verb, "resource": resource, "namespace": namespace,
                                        "group": group, "subresource": sub, "name": name}}})
    return bool(review["status"].get("allowed"))


@pytest.mark.parametrize(("verb", "resource", "namespace", "group", "sub", "allowed"), [
    ("list", "namespaces", "", "", "", True),
    ("watch", "pods", "", "", "", True),
    ("list", "services", "any", "", "", True),
    ("watch", "networkpolicies", "", "networking.k8s.io", "", True),
    ("list", "adminnetworkpolicies", "", "policy.networking.k8s.io", "", True),
    ("list", "baselineadminnetworkpolicies", "", "policy.networking.k8s.io", "", True),
    ("watch", "clusternetworkpolicies", "", "policy.networking.k8s.io", "", True),
    ("list", "customresourcedefinitions", "", "apiextensions.k8s.io", "", False),  # absent CRDs are a 404
    ("create", "pods", "some-app", "", "", True),
    ("delete", "pods", "some-app", "", "", True),
    ("list", "leases", C.MONITOR_NAMESPACE, "coordination.k8s.io", "", True),  # run Leases: the sweep
    ("patch", "leases", C.MONITOR_NAMESPACE, "coordination.k8s.io", "", True),  # run Leases: renewal
    # must not
    ("create", "pods", "some-app", "", "exec", False),
    ("get", "pods", "some-app", "", "log", False),
    ("get", "secrets", C.MONITOR_NAMESPACE, "", "", False),
    ("get", "configmaps", "some-app", "", "", False),
    ("get", "configmaps", C.MONITOR_NAMESPACE, "", "", False),  # the suite is mounted, not read
    ("update", "leases", "kube-system", "coordination.k8s.io", "", False),
    ("update", "pods", "some-app", "", "", False),
    ("delete", "networkpolicies", "some-app", "networking.k8s.io", "", False),
    ("create", "customresourcedefinitions", "", "apiextensions.k8s.io", "", False),
    ("list", "endpointslices", "", "discovery.k8s.io", "", False),  # Services resolve through their selector
    ("watch", "services", "", "", "", False),  # serve watches policies, namespaces and pods only
])
def test_monitor_rights(lab: Lab, verb, resource, namespace, group, sub, allowed) -> None:
    assert can(Rest(lab.monitor_kubeconfig), verb, resource, namespace, group, sub) is allowed


@pytest.mark.parametrize(("verb", "name", "allowed"), [
    ("get", "netpol-drift", True), ("update", "netpol-drift", True), ("create", "", True),
    ("update", "someone-elses-lease", False), ("get", "someone-elses-lease", False),
])
def test_monitor_updates_only_its_own_leader_lease(lab: Lab, verb, name, allowed) -> None:
    assert can(Rest(lab.monitor_kubeconfig), verb, "leases", C.MONITOR_NAMESPACE, "coordination.k8s.io",
               name=name) is allowed


def test_monitor_token_really_acts(lab: Lab, lab_namespace: str) -> None:
    """Not only the review: real requests with the monitor's token succeed or get 403."""
    from tests.lab.rest import ApiError

    mon = Rest(lab.monitor_kubeconfig)
    assert mon.get("/api/v1/pods")["kind"] == "PodList"
    with pytest.raises(ApiError) as e:
        mon.get("/api/v1/secrets")
    assert e.value.status == 403

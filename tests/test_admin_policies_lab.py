"""Admin policies in the lab's real API server (issue 17): what a CRD without its validation lets in stops a
snapshot with the one-line error, and a same-priority tie is reported by `run --once` (warning and "tie" in
the explanation). The CRDs are installed schema-less (as an outdated or hand-made CRD would be), so the API
server stores what the upstream schema would refuse; they are removed again after each test, since other
tests need a cluster without them (test_cluster_lab.test_absent_admin_policy_crds_are_not_an_error).
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from monitor.cluster import ClusterAdapter
from monitor.errors import InputError
from monitor.settings import ClusterSettings
from monitor.snapshot import take_snapshot
from tests.lab.fixtures import Lab, pod_manifest
from tests.lab.rest import ApiError
from tests.test_admin_policies import PLURALS, _tie_warning, anp, banp
from tests.test_live_lab import REPO, _env, monitor_command, write_config

pytestmark = pytest.mark.lab

GROUP = "policy.networking.k8s.io"
VERSIONS = {"AdminNetworkPolicy": "v1alpha1", "BaselineAdminNetworkPolicy": "v1alpha1",
            "ClusterNetworkPolicy": "v1alpha2"}


def _path(kind: str, name: str = "") -> str:
    return f"/apis/{GROUP}/{VERSIONS[kind]}/{PLURALS[kind]}" + (f"/{name}" if name else "")


def _crd_path(kind: str) -> str:
    return f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{PLURALS[kind]}.{GROUP}"


def _served(lab: Lab, kind: str) -> bool:
    try:
        lab.api.get(_path(kind))
        return True
    except ApiError:
        return False


def _wait(what: str, check, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.2)


@contextmanager
def admin_policy_crds(lab: Lab, *kinds: str) -> Iterator[None]:
    """Schema-less CRDs for these kinds (every field admitted), served until the block ends."""
    for kind in kinds:
        plural = PLURALS[kind]
        lab.api.post("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", {
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            # *.k8s.io groups need this annotation; the upstream network-policy-api CRDs carry the same one.
            "metadata": {"name": f"{plural}.{GROUP}", "annotations": {
                "api-approved.kubernetes.io": "https://github.com/kubernetes-sigs/network-policy-api/pull/30"}},
            "spec": {"group": GROUP, "scope": "Cluster",
                     "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "listKind": f"{kind}List"},
                     "versions": [{"name": VERSIONS[kind], "served": True, "storage": True,
                                   "schema": {"openAPIV3Schema": {"type": "object",
                                                                  "x-kubernetes-preserve-unknown-fields": True}}}]}})
    try:
        for kind in kinds:
            _wait(f"the {kind} CRD never became served", lambda k=kind: _served(lab, k))
        yield
    finally:
        for kind in kinds:
            for item in (lab.api.get(_path(kind)).get("items") or []) if _served(lab, kind) else []:
                lab.api.delete(_path(kind, item["metadata"]["name"]))
            lab.api.delete(_crd_path(kind))
        for kind in kinds:
            _wait(f"the {kind} CRD was never removed", lambda k=kind: not lab.api.exists(_crd_path(k)))


@pytest.fixture
def adapter(lab: Lab):
    a = ClusterAdapter.connect(ClusterSettings(name="lab", retries=1), kubeconfig=str(lab.monitor_kubeconfig))
    yield a
    a.close()


def test_what_a_schema_less_crd_lets_in_stops_the_snapshot_with_one_line(lab: Lab, adapter) -> None:
    with admin_policy_crds(lab, "BaselineAdminNetworkPolicy", "AdminNetworkPolicy"):
        lab.api.post(_path("BaselineAdminNetworkPolicy"), banp(name="baseline"))
        with pytest.raises(InputError) as e:
            take_snapshot(adapter, datetime.now(UTC))
        assert str(e.value) == (
            f"{adapter.server} (BaselineAdminNetworkPolicy): BaselineAdminNetworkPolicy baseline: metadata.name: "
            "must be 'default', got 'baseline' (the CRD admits one BaselineAdminNetworkPolicy per cluster, named "
            "default)")
        lab.api.delete(_path("BaselineAdminNetworkPolicy", "baseline"))

        lab.api.post(_path("AdminNetworkPolicy"), anp(name="no-ns-selector",
                                                      subject={"pods": {"podSelector": {}}}))
        with pytest.raises(InputError) as e:
            take_snapshot(adapter, datetime.now(UTC))
        assert str(e.value) == (
            f"{adapter.server} (AdminNetworkPolicy): AdminNetworkPolicy no-ns-selector: "
            "spec.subject.pods.namespaceSelector: missing (use {} to select pods in every namespace)")


def test_run_once_reports_a_same_priority_tie(lab: Lab, lab_namespace: str, tmp_path: Path) -> None:
    ns = lab_namespace
    lab.run_pods(ns, [pod_manifest("web", {"app": "web"}, tcp=[80]), pod_manifest("client", {"app": "client"})])
    mine = {"matchLabels": {"kubernetes.io/metadata.name": ns}}
    allow = anp("allow-shop", 10, subject={"namespaces": mine},
                ingress=[{"name": "all", "action": "Allow", "from": [{"namespaces": {}}]}])
    deny = anp("deny-web", 10, subject={"pods": {"namespaceSelector": mine,
                                                 "podSelector": {"matchLabels": {"app": "web"}}}},
               ingress=[{"name": "web-80", "action": "Deny", "from": [{"namespaces": {}}],
                         "ports": [{"portNumber": {"protocol": "TCP", "port": 80}}]}])
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({"name": "tie", "cases": [
        {"name": "client-web", "from": {"namespace": ns, "pod": "client"}, "to": {"namespace": ns, "pod": "web"},
         "port": 80, "expect": "allow"}]}))
    config = write_config(lab, tmp_path)
    with admin_policy_crds(lab, "AdminNetworkPolicy"):
        for policy in (allow, deny):
            lab.api.post(_path("AdminNetworkPolicy"), policy)
        proc = subprocess.run([*monitor_command(config, suite), "--no-store"], cwd=REPO, env=_env(),
                              capture_output=True, text=True, timeout=180)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    tie = _tie_warning("cluster lab").replace("shop/web", f"{ns}/web")
    assert report["warnings"] == [tie.removeprefix("netpol-drift: warning: cluster lab: ").rstrip("\n")]
    assert tie in proc.stderr
    [flow] = report["cases"][0]["flows"]
    assert flow["intent"] == "allow"
    assert ("AdminNetworkPolicy/allow-shop rule 'all' allows it (tie: at the same priority 10, "
            "AdminNetworkPolicy/deny-web rule 'web-80' denies it; the API leaves the winner to the implementation, "
            "netpol-drift applies AdminNetworkPolicy/allow-shop first)") in flow["explanation"]

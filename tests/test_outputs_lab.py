"""Issue 19's outputs against the lab: `run --once --junit` on a real run, and `serve` publishing PolicyReports.

The PolicyReport CRDs (tests/data/policyreport-crds.yaml, written from the API's published types) and
deploy/rbac-policyreports.yaml are installed by the test as admin; serve runs as the monitor's ServiceAccount
identity (deploy/rbac.yaml + rbac-policyreports.yaml). Every assertion reads the objects back from the API server.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema
import yaml

from tests.lab.fixtures import Lab
from tests.lab.rest import ApiError
from tests.test_live_lab import REPO, deploy_three_tier, netpol, run_monitor, three_tier_suite, write_config
from tests.test_service_lab import serve  # noqa: F401 (the fixture)

pytestmark = pytest.mark.lab

DATA = Path(__file__).resolve().parent / "data"
GROUP = "/apis/wgpolicyk8s.io/v1alpha2"

# The three-tier suite on the lab: one case fails (the over-broad policy lets db reach api), one cannot run
# (no batch workload exists), the others hold.
EXPECTED = {"frontend-to-api": "pass", "frontend-to-api-service": "pass", "api-to-db": "pass",
            "frontend-to-db-denied": "pass", "api-to-frontend-denied": "pass", "db-to-api-must-be-denied": "fail",
            "batch-to-db": "skip"}


def test_run_once_writes_junit_case_by_case(lab: Lab, lab_namespace: str, tmp_path: Path) -> None:
    ns = lab_namespace
    deploy_three_tier(lab, ns)
    junit = tmp_path / "junit.xml"
    code, data = run_monitor(write_config(lab, tmp_path), three_tier_suite(ns), tmp_path, "--no-store",
                             "--junit", str(junit))
    assert code == 1  # a case failed; the JSON output is unchanged next to the JUnit file
    assert {c["name"]: c["result"] for c in data["cases"]}["db-to-api-must-be-denied"] == "fail"
    xmlschema.XMLSchema(str(DATA / "junit.xsd")).validate(str(junit))
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("name") == "three-tier" and suite.get("hostname") == "lab"
    props = {p.get("name"): p.get("value") for p in suite.iter("property")}
    assert props["run"] == data["run"] and props["snapshot_digest"] == data["snapshot_digest"]
    cases = {tc.get("name"): tc for tc in suite.findall("testcase")}
    junit_result = {name: "fail" if tc.find("failure") is not None else "skip" if tc.find("skipped") is not None
                    else "pass" for name, tc in cases.items()}
    assert junit_result == EXPECTED
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("7", "1", "1")
    failure = cases["db-to-api-must-be-denied"].find("failure")
    assert failure.get("message").startswith("expected deny, observed allow")
    assert f"{ns}/db -> {ns}/api 9000/TCP: expected deny, observed allow (connected), policies say allow" \
        in failure.text
    assert "api-from-namespace" in failure.text  # the explanation names the policy that lets it through
    assert cases["batch-to-db"].find("skipped").get("message").startswith("not verified: ")


# --------------------------------------------------------------------------------------------- PolicyReports
@pytest.fixture
def policy_report_crds(lab: Lab):
    crds = yaml.safe_load((DATA / "policyreport-crds.yaml").read_text())["items"]
    rbac = list(yaml.safe_load_all((REPO / "deploy" / "rbac-policyreports.yaml").read_text()))
    lab.apply(crds)
    lab.apply(rbac)
    deadline = time.monotonic() + 30
    while True:  # served once the CRDs are established
        try:
            lab.api.get(f"{GROUP}/clusterpolicyreports")
            lab.api.get(f"{GROUP}/policyreports")
            break
        except ApiError:
            assert time.monotonic() < deadline, "the PolicyReport CRDs were not established in 30s"
            time.sleep(0.3)
    yield
    lab.api.delete(f"{GROUP}/clusterpolicyreports/netpol-drift")
    lab.delete(rbac)
    lab.delete(crds)


def _report_of_run(lab: Lab, path: str, run: str, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    seen = None
    while time.monotonic() < deadline:
        try:
            seen = lab.api.get(path)
            if all(r["properties"]["run"] == run for r in seen.get("results", [])) and seen.get("results"):
                return seen
        except ApiError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{path}: no report of run {run} in {timeout}s; last seen: {seen}")


def test_serve_publishes_policy_reports_updated_in_place(lab: Lab, lab_namespace: str, serve,  # noqa: F811
                                                          policy_report_crds) -> None:
    ns = lab_namespace
    deploy_three_tier(lab, ns)
    s = serve(report={"policy_reports": True})
    [first] = s.wait_runs(1)
    path = f"{GROUP}/namespaces/{ns}/policyreports/netpol-drift"
    report = _report_of_run(lab, path, first.id)
    assert report["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "netpol-drift"}
    assert report["scope"] == {"apiVersion": "v1", "kind": "Namespace", "name": ns}
    results = {r["rule"]: r for r in report["results"]}
    assert {rule: r["result"] for rule, r in results.items()} == EXPECTED
    assert report["summary"] == {"pass": 5, "fail": 1, "warn": 0, "error": 0, "skip": 1}
    bad = results["db-to-api-must-be-denied"]
    assert (bad["source"], bad["policy"], bad["category"], bad["severity"]) == \
        ("netpol-drift", "three-tier", "NetworkPolicy", "high")
    assert "api-from-namespace" in bad["message"]  # the explanation is the message
    assert bad["properties"]["observed"] == "allow" and bad["properties"]["expected"] == "deny"
    assert results["batch-to-db"]["message"]  # why it was skipped
    cluster = _report_of_run(lab, f"{GROUP}/clusterpolicyreports/netpol-drift", first.id)
    assert cluster["summary"] == report["summary"] and len(cluster["results"]) == 7

    # The fix: api accepts only the frontend. The policy change starts a run; the same objects are updated.
    since = time.time()
    lab.apply([netpol("api-from-namespace", {
        "podSelector": {"matchLabels": {"app": "api"}}, "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "frontend"}}}], "ports": [{"port": "http"}]}],
    })], namespace=ns)
    lab.wait_synced(since=since)
    runs = s.wait_runs(2)
    fixed = _report_of_run(lab, path, runs[-1].id)
    assert {r["rule"]: r["result"] for r in fixed["results"]} == EXPECTED | {"db-to-api-must-be-denied": "pass"}
    assert fixed["summary"] == {"pass": 6, "fail": 0, "warn": 0, "error": 0, "skip": 1}
    assert fixed["metadata"]["uid"] == report["metadata"]["uid"]  # updated in place
    assert fixed["metadata"]["resourceVersion"] != report["metadata"]["resourceVersion"]
    listed = lab.api.get(f"{GROUP}/namespaces/{ns}/policyreports")["items"]
    assert [i["metadata"]["name"] for i in listed] == ["netpol-drift"]  # never one object per run
    clusters = lab.api.get(f"{GROUP}/clusterpolicyreports")["items"]
    assert [i["metadata"]["name"] for i in clusters] == ["netpol-drift"]
    fixed_cluster = _report_of_run(lab, f"{GROUP}/clusterpolicyreports/netpol-drift", runs[-1].id)
    assert fixed_cluster["metadata"]["uid"] == cluster["metadata"]["uid"]
    assert fixed_cluster["summary"]["fail"] == 0
    assert "PolicyReports netpol-drift in 1 namespace(s)" in s.log


def test_the_policy_reports_rule_is_needed(lab: Lab, lab_namespace: str, policy_report_crds) -> None:
    """deploy/rbac-policyreports.yaml's one rule, proven needed like deploy/rbac.yaml's (tests/test_helm_lab.py):
    as the monitor's identity, publishing works with it and is refused with a 403 naming the resource without it."""
    from monitor.cluster import ClusterAdapter, ClusterError
    from monitor.settings import ClusterSettings

    adapter = ClusterAdapter.connect(ClusterSettings(name="lab", retries=0), kubeconfig=str(lab.monitor_kubeconfig))
    labels = {"app.kubernetes.io/managed-by": "netpol-drift"}

    def report(kind: str, **meta) -> dict:
        return {"apiVersion": "wgpolicyk8s.io/v1alpha2", "kind": kind,
                "metadata": {"name": "netpol-drift", "labels": labels, **meta},
                "summary": {"pass": 0, "fail": 0, "warn": 0, "error": 0, "skip": 0}, "results": []}

    namespaced = [report("PolicyReport", namespace=lab_namespace)]
    assert adapter.publish_policy_reports(namespaced, report("ClusterPolicyReport"), labels) == 1
    assert adapter.publish_policy_reports(namespaced, report("ClusterPolicyReport"), labels) == 1  # in place

    rbac = list(yaml.safe_load_all((REPO / "deploy" / "rbac-policyreports.yaml").read_text()))
    role = next(d for d in rbac if d and d["kind"] == "ClusterRole")
    lab.apply({**role, "rules": []})
    try:
        time.sleep(0.5)  # the authorizer's informer
        with pytest.raises(ClusterError) as e:
            adapter.publish_policy_reports(namespaced, report("ClusterPolicyReport"), labels)
        assert "403" in str(e.value) and "policyreports" in str(e.value), e.value
    finally:
        lab.apply(rbac)
    lab.api.delete(f"{GROUP}/namespaces/{lab_namespace}/policyreports/netpol-drift")

"""The Helm chart in the lab's real API server: every rendered object accepted (server-side apply, dry run and
real, strict field validation; the Prometheus Operator kinds against minimal CRDs), the Deployment's pod passing
PodSecurity "restricted"; `serve` from `helm template` output running as a real Deployment pod with the
in-cluster config and exactly the rendered RBAC and NetworkPolicy, completing a run, and a policy edit reaching
the Slack stand-in (outside the cluster, through the NetworkPolicy's Slack egress) as a drift alert naming the
policy; and every RBAC rule needed: without it, a named request fails.

Must not: give the monitor any identity other than the rendered ServiceAccount.
"""

from __future__ import annotations

import copy
import json
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from monitor.cluster import ClusterAdapter, LeaseRecord
from monitor.errors import ClusterError
from monitor.settings import ClusterSettings
from tests.lab import config as C
from tests.lab.fixtures import Lab, deployment
from tests.slack_standin import TOKEN, SlackStandin
from tests.test_helm_chart import CHART, FULL, helm
from tests.test_live_lab import netpol, probe_pods

pytestmark = pytest.mark.lab

RBAC = C.REPO / "deploy" / "rbac.yaml"
CORE = {"ConfigMap", "Service", "ServiceAccount", "PersistentVolumeClaim", "Namespace", "Secret"}
GROUPS = {"Deployment": "apps/v1", "NetworkPolicy": "networking.k8s.io/v1",
          "ClusterRole": "rbac.authorization.k8s.io/v1", "ClusterRoleBinding": "rbac.authorization.k8s.io/v1",
          "Role": "rbac.authorization.k8s.io/v1", "RoleBinding": "rbac.authorization.k8s.io/v1",
          "ServiceMonitor": "monitoring.coreos.com/v1", "PrometheusRule": "monitoring.coreos.com/v1"}


def path_of(doc: dict) -> str:
    kind = doc["kind"]
    plural = "networkpolicies" if kind == "NetworkPolicy" else kind.lower() + "s"
    base = "/api/v1" if kind in CORE else f"/apis/{GROUPS[kind]}"
    ns = doc["metadata"].get("namespace")
    return f"{base}/namespaces/{ns}/{plural}" if ns else f"{base}/{plural}"


def server_side_apply(lab: Lab, doc: dict, dry_run: bool) -> dict:
    query = {"fieldManager": "netpol-drift-test", "force": "true", "fieldValidation": "Strict"}
    if dry_run:
        query["dryRun"] = "All"
    return lab.api.request("PATCH", f"{path_of(doc)}/{doc['metadata']['name']}", doc, query=query,
                           content_type="application/apply-patch+yaml")


def template(namespace: str, *args: str, release: str = "netpol-drift") -> list[dict]:
    out = helm("template", release, str(CHART), "--namespace", namespace, *args).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def crd(group: str, kind: str) -> dict:
    plural = kind.lower() + "s"
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {"group": group, "scope": "Namespaced",
                     "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "listKind": f"{kind}List"},
                     "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                         "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}}


@pytest.fixture
def prometheus_operator_crds(lab: Lab):
    """The two Prometheus Operator kinds the chart renders, as minimal CRDs (any spec), removed afterwards."""
    crds = [crd("monitoring.coreos.com", "ServiceMonitor"), crd("monitoring.coreos.com", "PrometheusRule")]
    lab.apply(crds)
    deadline = time.monotonic() + 30
    for c in crds:
        while not any(cond["type"] == "Established" and cond["status"] == "True" for cond in lab.api.get(
                f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{c['metadata']['name']}").get(
                "status", {}).get("conditions", [])):
            assert time.monotonic() < deadline, f"CRD {c['metadata']['name']} not established"
            time.sleep(0.2)
    time.sleep(1)  # discovery of the new group
    yield
    lab.delete(crds)


@pytest.mark.parametrize("values", [[], ["-f", str(FULL)]], ids=["default", "full"])
def test_api_server_accepts_every_rendered_object(lab: Lab, make_namespace, prometheus_operator_crds, values):
    ns = make_namespace("chart", {"pod-security.kubernetes.io/enforce": "restricted"})
    for extra in ("shop", "payments", "monitoring"):
        if values:
            make_namespace(extra)
    release = f"chart{secrets.token_hex(2)}"
    docs = template(ns, *values, release=release)
    if values:  # the full values' probed namespaces and dashboard namespace, made unique for this test
        text = yaml.safe_dump_all(docs)
        for extra in ("shop", "payments", "monitoring"):
            text = text.replace(f"namespace: {extra}\n", f"namespace: {ns.rsplit('-', 1)[0]}-{extra}\n")
        docs = [d for d in yaml.safe_load_all(text) if d]
    assert {d["kind"] for d in docs} >= ({"Deployment", "NetworkPolicy", "ClusterRole", "Role", "ConfigMap",
                                         "ServiceAccount", "Service"} | ({"ServiceMonitor", "PrometheusRule"}
                                                                         if values else set()))
    cluster_scoped = [d for d in docs if "namespace" not in d["metadata"]]
    try:
        for dry_run in (True, False):
            for doc in docs:
                applied = server_side_apply(lab, doc, dry_run)
                assert applied["metadata"]["name"] == doc["metadata"]["name"]
        # The pod the Deployment would make, in a namespace enforcing PodSecurity "restricted".
        [dep] = [d for d in docs if d["kind"] == "Deployment"]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "serve-dry-run"},
               "spec": dep["spec"]["template"]["spec"]}
        lab.api.request("POST", f"/api/v1/namespaces/{ns}/pods", pod, query={"dryRun": "All"})
    finally:
        for doc in cluster_scoped:
            lab.api.delete(f"{path_of(doc)}/{doc['metadata']['name']}")


# --------------------------------------------------------------------------------------- end to end
def metrics(ip: str) -> str:
    with urllib.request.urlopen(f"http://{ip}:8080/metrics", timeout=5) as r:
        return r.read().decode()


def sample(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def metrics_when(ip: str, name: str, **labels: str) -> str | None:
    """The pod's /metrics once the sample is at least 1, else None."""
    text = metrics(ip)
    return text if sample(text, name, **labels) >= 1 else None


def wait_for(what: str, check, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except OSError:
            value = None
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def test_chart_serves_in_a_pod_completes_a_run_and_alerts_slack_on_a_policy_edit(lab: Lab, lab_namespace: str,
                                                                                  tmp_path: Path):
    """The whole install: `helm template` output applied as-is (its PVC, Secret reference, RBAC, NetworkPolicy),
    serve in a Deployment pod on its ServiceAccount token, Slack reached through the egress a user configures
    for a proxy (slack.baseUrl + networkPolicy.slack), the drift alert naming the edited policy."""
    ns = lab_namespace
    lab.run_workloads(ns, [deployment("client", tcp=[]), deployment("web", tcp=[8080])])
    # The stand-in on the root end of the node link: outside the cluster, as Slack (or a proxy) is.
    slack = SlackStandin(host=C.ROOT_IP).start()
    values = {
        "clusterName": "lab",
        "suite": {"inline": {"name": "e2e", "cases": [
            {"name": "client-to-web", "from": {"namespace": ns, "workload": "client"},
             "to": {"namespace": ns, "workload": "web"}, "port": 8080, "expect": "allow"}]}},
        "schedule": {"intervalSeconds": 3600, "jitterSeconds": 0, "debounceSeconds": 1},
        "probe": {"timeoutSeconds": 1, "runDeadlineSeconds": 60},
        "slack": {"existingSecret": "netpol-drift-slack", "channel": "#netpol-alerts", "baseUrl": slack.base_url},
        "networkPolicy": {"apiServer": {"cidrs": [f"{C.ROOT_IP}/32"], "ports": [C.APISERVER_PORT]},
                          "slack": {"cidrs": [f"{C.ROOT_IP}/32"], "ports": [slack.port]}},
    }
    (tmp_path / "values.yaml").write_text(yaml.safe_dump(values))
    docs = template(C.MONITOR_NAMESPACE, "-f", str(tmp_path / "values.yaml"))
    rendered_rbac = [d for d in yaml.safe_load_all(RBAC.read_text()) if d and d["kind"] != "Namespace"]
    # Exactly the rendered RBAC (what the lab applied at `up`): the same objects with the same rules.
    key = lambda d: (d["kind"], d["metadata"]["name"], json.dumps(d.get("rules"), sort_keys=True))  # noqa: E731
    assert sorted(map(key, [d for d in docs if d["kind"] in {"ServiceAccount", "ClusterRole",
                                                             "ClusterRoleBinding", "Role", "RoleBinding"}])
                  ) == sorted(map(key, rendered_rbac))
    workload = [d for d in docs if d["kind"] in {"ConfigMap", "Deployment", "Service", "NetworkPolicy",
                                                 "PersistentVolumeClaim"}]
    secret = {"apiVersion": "v1", "kind": "Secret", "stringData": {"token": TOKEN},
              "metadata": {"name": "netpol-drift-slack", "namespace": C.MONITOR_NAMESPACE}}
    [claim] = [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    shutil.rmtree(lab.paths.root / "pvc" / C.MONITOR_NAMESPACE / claim["metadata"]["name"], ignore_errors=True)
    lab.api.delete(f"/apis/coordination.k8s.io/v1/namespaces/{C.MONITOR_NAMESPACE}/leases/netpol-drift")
    try:
        lab.apply([secret])
        for doc in docs:
            server_side_apply(lab, doc, dry_run=False)
        try:
            # Running, not Ready: the lab's agent never runs readiness probes (a pod with one is never Ready);
            # /readyz is read below through the pod's own port instead.
            [pod] = wait_for("the serve pod Running", lambda: [
                p for p in lab.pods(C.MONITOR_NAMESPACE, {"app.kubernetes.io/component": "serve"})
                if p.get("status", {}).get("phase") == "Running" and p["status"].get("podIP")], 90)
        except AssertionError:
            pods = lab.pods(C.MONITOR_NAMESPACE, {"app.kubernetes.io/component": "serve"})
            logs = [(lab.paths.root / "agent" / p["metadata"]["uid"] / "serve.log") for p in pods]
            pytest.fail("serve did not roll out: " + json.dumps([p.get("status") for p in pods])[-3000:] + "\n"
                        + "\n".join(f.read_text()[-4000:] for f in logs if f.exists()))
        assert pod["spec"]["serviceAccountName"] == "netpol-drift"
        assert not any(e.get("name") == "KUBECONFIG" for e in pod["spec"]["containers"][0].get("env") or [])
        ip = pod["status"]["podIP"]
        # The start-up run: as leader, migrated its SQLite store on the claim, probed with the in-cluster token.
        log = lab.paths.root / "agent" / pod["metadata"]["uid"] / "serve.log"
        try:
            text = wait_for("a completed run", lambda: metrics_when(ip, "netpol_drift_runs_total", status="ok"), 90)
        except AssertionError:
            pytest.fail("no completed run; serve's log:\n" + log.read_text()[-5000:])
        with urllib.request.urlopen(f"http://{ip}:8080/readyz", timeout=5) as r:
            assert r.status == 200  # store, API server and scheduler, as the kubelet would ask
        assert sample(text, "netpol_drift_leader") == 1 and sample(text, "netpol_drift_cases", state="pass") == 1
        assert sample(text, "netpol_drift_drift_open") == 0
        db = lab.paths.root / "pvc" / C.MONITOR_NAMESPACE / claim["metadata"]["name"] / "netpol-drift.db"
        assert db.exists() and db.stat().st_gid == 65532  # on the claim, through fsGroup (the root is read-only)
        assert slack.of("chat.postMessage") == []  # the first run is the baseline: nothing to say
        # A policy edit: web no longer accepts anyone. The watch triggers a run that confirms the drift.
        lab.apply(netpol("deny-web", {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"]}),
                  namespace=ns)
        text = wait_for("the drift", lambda: metrics_when(ip, "netpol_drift_drift_open"), 90)
        assert sample(text, "netpol_drift_runs_total", trigger="change") >= 1
        assert sample(text, "netpol_drift_cases", state="fail") == 1
        try:
            [msg] = wait_for("the Slack alert", lambda: [
                r for r in slack.of("chat.postMessage") if not r.body.get("thread_ts")], 60)
        except AssertionError:
            pytest.fail(f"no alert at the stand-in ({slack.requests} requests, rejected {slack.rejected}); "
                        "serve's log:\n" + log.read_text()[-5000:])
        assert msg.body["channel"] == "#netpol-alerts" and slack.rejected == []
        assert f"Cause: NetworkPolicy {ns}/deny-web added" in msg.text, msg.text
        assert f"{ns}/client -> {ns}/web 8080/TCP  allowed -> blocked" in msg.text, msg.text
        assert probe_pods(lab) == [] or wait_for("probe pods deleted", lambda: probe_pods(lab) == [], 30)
    finally:
        slack.stop()
        for doc in [*workload, secret]:
            lab.api.delete(f"{path_of(doc)}/{doc['metadata']['name']}")
        lab.api.delete(f"/apis/coordination.k8s.io/v1/namespaces/{C.MONITOR_NAMESPACE}/leases/netpol-drift")
        wait_for("the serve pod gone", lambda: not lab.pods(C.MONITOR_NAMESPACE,
                                                             {"app.kubernetes.io/component": "serve"}), 60)


# ------------------------------------------------------------------------------- each RBAC rule is needed
def rbac_rules() -> list[tuple[str, int, dict]]:
    """(object name, index, rule) of every rule of deploy/rbac.yaml."""
    return [(f"{d['kind']}/{d['metadata']['name']}", i, r) for d in yaml.safe_load_all(RBAC.read_text())
            if d and "rules" in d for i, r in enumerate(d["rules"])]


RULES = rbac_rules()


def without(rule_id: str, index: int) -> dict:
    kind, _, name = rule_id.partition("/")
    doc = copy.deepcopy(next(d for d in yaml.safe_load_all(RBAC.read_text())
                             if d and d["kind"] == kind and d["metadata"]["name"] == name))
    del doc["rules"][index]
    return doc


def run_once(lab: Lab, tmp_path: Path, suite: dict) -> subprocess.CompletedProcess:
    from tests.test_live_lab import _env, write_config

    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    config = write_config(lab, tmp_path)
    return subprocess.run([sys.executable, "-m", "monitor", "--config", str(config), "run", "--once", "--suite",
                           str(tmp_path / "suite.yaml"), "--format", "json"], cwd=C.REPO, env=_env(),
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(("rule_id", "index", "rule"), RULES,
                         ids=[f"{o}-{'+'.join(r['resources'])}-{'+'.join(r['verbs'])}" for o, _, r in RULES])
def test_every_rbac_rule_is_needed(lab: Lab, lab_namespace: str, tmp_path: Path, rule_id, index, rule):
    """Without the rule, what needs it fails with a 403 that names the resource; nothing passes."""
    [resource] = rule["resources"][:1]
    lab.apply(without(rule_id, index))
    try:
        time.sleep(0.5)  # the authorizer's informer
        # Creating a Lease, and the leader's own: asked directly (`run --once` has no leader, and a run goes on
        # without its run Lease). The run Leases' list/patch/delete: `run --once`'s start-up sweep lists them.
        if rule["apiGroups"] == ["coordination.k8s.io"] and ("create" in rule["verbs"] or "resourceNames" in rule):
            adapter = ClusterAdapter.connect(ClusterSettings(name="lab", retries=0),
                                             kubeconfig=str(lab.monitor_kubeconfig))
            lease_ns, name = C.MONITOR_NAMESPACE, rule.get("resourceNames", [f"rbac-{secrets.token_hex(3)}"])[0]
            with pytest.raises(ClusterError) as e:
                if "create" in rule["verbs"]:
                    adapter.write_lease(lease_ns, name, LeaseRecord("me", 15, 0.0, 0.0, 0, None))
                else:
                    adapter.read_lease(lease_ns, name)
            assert "403" in str(e.value) and "leases" in str(e.value)
            return
        lab.run_workloads(lab_namespace, [deployment("client", tcp=[]), deployment("web", tcp=[("http", 8080)])])
        lab.apply({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
                   "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]}},
                  namespace=lab_namespace)
        suite = {"name": "rbac", "cases": [
            {"name": "client-to-web-service", "from": {"namespace": lab_namespace, "workload": "client"},
             "to": {"service": f"{lab_namespace}/web"}, "port": 80, "expect": "allow"}]}
        result = run_once(lab, tmp_path, suite)
        if "create" in rule["verbs"]:  # probe pods: the run goes on, the case is not verified (never a pass)
            assert result.returncode == 1, result.stderr[-2000:]
            report = json.loads(result.stdout)
            [case] = report["cases"]
            assert case["result"] == "skipped", case
            assert "403" in json.dumps(case) or "forbidden" in json.dumps(case).lower(), case
        else:
            assert result.returncode == 2, result.stdout[-2000:] + result.stderr[-2000:]
            [line] = result.stderr.strip().splitlines()[-1:]
            assert "HTTP 403" in line and f'"{resource}"' in line, line
    finally:
        lab.apply(RBAC.read_text())
    assert probe_pods(lab) == []

"""netpol-drift inside a lab pod, as users run it: no kubeconfig, only what a kubelet gives a pod.

Job: prove that the node agent mounts a real projected ServiceAccount token (TokenRequest, bound to the pod,
the audience and expiry a kubelet asks for), ca.crt and namespace, sets KUBERNETES_SERVICE_HOST/_PORT, honours
automountServiceAccountToken, and that `netpol-drift run --once` in such a pod works through the `kubernetes`
Service (kube-proxy) with exactly deploy/rbac.yaml, fails with a clear message when a rule is missing, and is
subject to the NetworkPolicies that select its pod. Must not: give the pod any other credential.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from pathlib import Path

import pytest
import yaml

from tests.lab import config as C
from tests.lab.fixtures import Lab, deployment, pod_manifest
from tests.test_live_lab import netpol, probe_pods

pytestmark = pytest.mark.lab

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
RBAC = C.REPO / "deploy" / "rbac.yaml"


def claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def run_in_pod(lab: Lab, script: str, *, namespace: str = C.MONITOR_NAMESPACE, name: str = "",
               labels: dict | None = None, timeout: float = 120, **spec) -> dict:
    """Runs `sh -c script` in a fresh pod (the monitor's ServiceAccount in its namespace unless told
    otherwise), waits until it ends, deletes it; returns the finished pod."""
    name = name or f"in-cluster-{secrets.token_hex(3)}"
    pod = pod_manifest(name, labels or {"app": name}, tcp=[], command=["sh", "-c", script])
    pod["spec"].update({"serviceAccountName": C.MONITOR_SA, **spec})
    pod["spec"]["containers"][0]["terminationMessagePolicy"] = "FallbackToLogsOnError"
    lab.api.post(f"/api/v1/namespaces/{namespace}/pods", pod)
    try:
        return lab.wait_finished(namespace, name, timeout)
    finally:
        lab.api.delete(f"/api/v1/namespaces/{namespace}/pods/{name}")


def exit_code(pod: dict) -> int:
    return pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"]


def test_pod_gets_a_kubelet_style_service_account_token(lab: Lab, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    pod = run_in_pod(lab, f"cp {SA_DIR}/token {SA_DIR}/ca.crt {SA_DIR}/namespace {out}/ && env > {out}/env")
    assert exit_code(pod) == 0, pod["status"]
    spec = pod["spec"]
    # The ServiceAccount admission plugin (enabled now) added the volume; the agent honoured it like a kubelet.
    [vol] = [v for v in spec["volumes"] if v["name"].startswith("kube-api-access-")]
    [mount] = spec["containers"][0]["volumeMounts"]
    assert mount["mountPath"] == SA_DIR and mount["readOnly"] is True
    token_source = vol["projected"]["sources"][0]["serviceAccountToken"]
    c = claims((out / "token").read_text())
    assert c["sub"] == f"system:serviceaccount:{C.MONITOR_NAMESPACE}:{C.MONITOR_SA}"
    assert c["aud"] == [C.SA_ISSUER] and c["iss"] == C.SA_ISSUER
    assert c["kubernetes.io"]["pod"] == {"name": pod["metadata"]["name"], "uid": pod["metadata"]["uid"]}
    assert c["exp"] - c["iat"] >= token_source["expirationSeconds"]  # 3607 s asked; the server may extend it
    assert (out / "namespace").read_text() == C.MONITOR_NAMESPACE
    root_ca = lab.api.get(f"/api/v1/namespaces/{C.MONITOR_NAMESPACE}/configmaps/kube-root-ca.crt")
    assert (out / "ca.crt").read_text() == root_ca["data"]["ca.crt"]
    env = dict(line.split("=", 1) for line in (out / "env").read_text().splitlines() if "=" in line)
    assert (env["KUBERNETES_SERVICE_HOST"], env["KUBERNETES_SERVICE_PORT"]) == (C.KUBERNETES_SERVICE_IP, "443")
    assert "KUBECONFIG" not in env


def test_automount_false_mounts_nothing(lab: Lab, tmp_path: Path) -> None:
    pod = run_in_pod(lab, f"test ! -e {SA_DIR}/token", automountServiceAccountToken=False)
    assert not any(v["name"].startswith("kube-api-access-") for v in pod["spec"].get("volumes") or [])
    assert exit_code(pod) == 0, pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"]


@pytest.fixture
def app(lab: Lab, lab_namespace: str) -> dict:
    """client -> web:8080 allowed, suite and config for a monitor without kubeconfig (in-cluster)."""
    lab.run_workloads(lab_namespace, [deployment("client", tcp=[]), deployment("web", tcp=[8080])])
    return {"name": "in-cluster", "cases": [
        {"name": "client-to-web", "from": {"namespace": lab_namespace, "workload": "client"},
         "to": {"namespace": lab_namespace, "workload": "web"}, "port": 8080, "expect": "allow"}]}


def monitor_script(tmp_path: Path, suite: dict, tag: str) -> str:
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(suite))
    # No kubeconfig anywhere: the pod's env has no KUBECONFIG and HOME has no ~/.kube.
    (tmp_path / "netpol-drift.yaml").write_text(yaml.safe_dump({
        "cluster": {"name": "lab", "request_timeout_seconds": 5, "retries": 0},
        "probe": {"namespace": C.MONITOR_NAMESPACE, "timeout_seconds": 1.0, "run_deadline_seconds": 60},
        "store": {"url": f"sqlite:///{tmp_path / 'history.db'}"}}))
    return (f"netpol-drift --config {tmp_path}/netpol-drift.yaml run --once --suite {tmp_path}/suite.yaml "
            f"--format json >{tmp_path}/{tag}.json 2>{tmp_path}/{tag}.err")


def test_run_once_in_a_pod_with_only_its_mounted_token(lab: Lab, app: dict, tmp_path: Path) -> None:
    pod = run_in_pod(lab, monitor_script(tmp_path, app, "ok"))
    err = (tmp_path / "ok.err").read_text()
    assert exit_code(pod) == 0, err[-3000:]
    report = json.loads((tmp_path / "ok.json").read_text())
    assert [(c["name"], c["result"]) for c in report["cases"]] == [("client-to-web", "pass")]
    assert report["cases"][0]["flows"][0]["outcome"] == "connected"
    assert probe_pods(lab) == []

    # One rule less than deploy/rbac.yaml: the run stops with a one-line error naming what was refused.
    role = yaml.safe_load_all(RBAC.read_text())
    cluster_role = next(d for d in role if d["kind"] == "ClusterRole")
    cluster_role["rules"] = [r for r in cluster_role["rules"] if "namespaces" not in r["resources"]]
    lab.apply(cluster_role)
    try:
        pod = run_in_pod(lab, monitor_script(tmp_path, app, "forbidden"))
    finally:
        lab.apply(RBAC.read_text())
    err = (tmp_path / "forbidden.err").read_text().strip()
    assert exit_code(pod) == 2, err
    [line] = err.splitlines()
    assert line.startswith("netpol-drift: error: ") and "HTTP 403" in line
    assert f"system:serviceaccount:{C.MONITOR_NAMESPACE}:{C.MONITOR_SA}" in line and '"namespaces"' in line


def test_the_monitor_pod_is_subject_to_the_policies_that_select_it(lab: Lab, app: dict, tmp_path: Path) -> None:
    """An egress default-deny selecting the monitor's pod cuts it off from the API server (kube-router
    rejects its packets to the `kubernetes` Service's endpoint): the run fails, it never passes."""
    label = f"monitor-{secrets.token_hex(3)}"
    since = time.time()
    lab.apply(netpol(label, {"podSelector": {"matchLabels": {"app": label}}, "policyTypes": ["Egress"]}),
              namespace=C.MONITOR_NAMESPACE)
    try:
        lab.wait_synced(since=since)
        pod = run_in_pod(lab, monitor_script(tmp_path, app, "cut"), name=label, labels={"app": label})
    finally:
        lab.api.delete(f"/apis/networking.k8s.io/v1/namespaces/{C.MONITOR_NAMESPACE}/networkpolicies/{label}")
    err = (tmp_path / "cut.err").read_text()
    assert exit_code(pod) == 2, err[-3000:]
    assert "netpol-drift: error: " in err and C.KUBERNETES_SERVICE_IP in err and "unreachable" in err

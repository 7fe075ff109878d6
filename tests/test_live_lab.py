"""`netpol-drift run --once` against the lab: a real API server, real kube-router enforcement, real probe pods.

Every run here uses the monitor's own ServiceAccount token (the lab's monitor kubeconfig, bound to the RBAC of
deploy/rbac.yaml), never the admin one; the harness uses admin only to build the app, inject faults and look
at the probe pod objects.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.lab import config as C
from tests.lab import netns
from tests.lab.fixtures import Lab, deployment, pod_manifest, statefulset
from tests.lab.rest import ApiError, Rest

pytestmark = pytest.mark.lab

REPO = Path(__file__).resolve().parents[1]
PROBE_SELECTOR = "netpol-drift.io/probe=true"


# ------------------------------------------------------------------------------------------------ the app
def netpol(name: str, spec: dict) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name},
            "spec": spec}


def deploy_three_tier(lab: Lab, ns: str) -> dict[str, dict]:
    """frontend (Deployment, 1 replica) -> api (Deployment, 2 replicas, Service api:80 -> http) -> db
    (StatefulSet, 1 replica), default-deny ingress, and one over-broad policy: api accepts `http` from every
    pod of the namespace. Returns pod name -> pod (the controllers' pods: db-0, api-<hash>-<id>, ...)."""
    workloads = lab.run_workloads(ns, [
        deployment("frontend", tcp=[("http", 8080)]),
        deployment("api", tcp=[("http", 9000)], replicas=2),
        # Selected by its own label, so a test may relabel `app` without the StatefulSet letting the pod go.
        statefulset("db", {"app": "db", "workload": "db"}, selector={"workload": "db"}, tcp=[("postgres", 5432)]),
    ])
    pods = {p["metadata"]["name"]: p for ps in workloads.values() for p in ps}
    since = time.time()
    lab.apply([
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api"},
         "spec": {"selector": {"app": "api"}, "ports": [{"port": 80, "targetPort": "http"}]}},
        netpol("default-deny", {"podSelector": {}, "policyTypes": ["Ingress"]}),
        netpol("api-from-namespace", {"podSelector": {"matchLabels": {"app": "api"}}, "policyTypes": ["Ingress"],
                                      "ingress": [{"from": [{"podSelector": {}}], "ports": [{"port": "http"}]}]}),
        netpol("db-from-api", {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress"],
                               "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "api"}}}],
                                            "ports": [{"port": 5432}]}]}),
    ], namespace=ns)
    lab.wait_synced(since=since)
    return pods


def three_tier_suite(ns: str) -> dict:
    def w(name: str) -> dict:
        return {"namespace": ns, "workload": name}

    return {"name": "three-tier", "cases": [
        {"name": "frontend-to-api", "from": w("frontend"), "to": w("api"), "port": "http", "expect": "allow"},
        {"name": "frontend-to-api-service", "from": w("frontend"), "to": {"service": f"{ns}/api"}, "port": 80,
         "expect": "allow"},
        {"name": "api-to-db", "from": w("api"), "to": w("db"), "port": 5432, "expect": "allow"},
        {"name": "frontend-to-db-denied", "from": w("frontend"), "to": w("db"), "port": 5432, "expect": "deny"},
        {"name": "api-to-frontend-denied", "from": w("api"), "to": w("frontend"), "port": 8080, "expect": "deny"},
        # The suite says deny, the over-broad policy allows it: a violation, and the dataplane agrees (no gap).
        {"name": "db-to-api-must-be-denied", "from": w("db"), "to": w("api"), "port": 9000, "expect": "deny"},
        {"name": "batch-to-db", "from": w("batch"), "to": w("db"), "port": 5432, "expect": "deny"},
    ]}


# ------------------------------------------------------------------------------------------- running it
def write_config(lab: Lab, tmp_path: Path, **probe: Any) -> Path:
    settings = {"cluster": {"name": "lab", "kubeconfig": str(lab.monitor_kubeconfig),
                            "request_timeout_seconds": 10, "retries": 2},
                "probe": {"namespace": "netpol-drift", "timeout_seconds": 1.0, "concurrency": 10,
                          "run_deadline_seconds": 60, "refused_means": "deny", **probe},
                # Each test its own history: the default (netpol-drift.db in the working directory) is the repo.
                "store": {"url": f"sqlite:///{tmp_path / 'history.db'}"}}
    path = tmp_path / "netpol-drift.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def monitor_command(config: Path, suite: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "monitor", "--config", str(config), "run", "--once", "--suite", str(suite),
            "--format", "json", *extra]


def _env() -> dict[str, str]:
    # Nothing may leak the admin identity into the monitor: no KUBECONFIG, no NETPOL_DRIFT_* overrides.
    return {k: v for k, v in os.environ.items() if k != "KUBECONFIG" and not k.startswith("NETPOL_DRIFT_")}


def run_monitor(config: Path, suite: dict, tmp_path: Path, *extra: str) -> tuple[int, dict]:
    suite_path = tmp_path / "suite.yaml"
    suite_path.write_text(yaml.safe_dump(suite))
    proc = subprocess.run(monitor_command(config, suite_path, *extra), cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode in (0, 1), f"exit {proc.returncode}: {proc.stderr[-3000:]}"
    return proc.returncode, json.loads(proc.stdout)


def probe_pods(lab: Lab) -> list[dict]:
    return lab.api.get("/api/v1/pods", labelSelector=PROBE_SELECTOR)["items"]


class PodRecorder:
    """Polls (as admin) the probe pods while a run goes on and keeps every version it saw of each."""

    def __init__(self, lab: Lab, namespace: str) -> None:
        self.api = Rest(lab.kubeconfig)
        self.path = f"/api/v1/namespaces/{namespace}/pods"
        self.seen: dict[str, list[dict]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for pod in self.api.get(self.path, labelSelector=PROBE_SELECTOR)["items"]:
                    self.seen.setdefault(pod["metadata"]["name"], []).append(pod)
            except (ApiError, OSError):
                pass
            self._stop.wait(0.05)

    def __enter__(self) -> PodRecorder:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def case(report: dict, name: str) -> dict:
    return next(c for c in report["cases"] if c["name"] == name)


# ------------------------------------------------------------------------------------------------- tests
def test_monitor_identity_is_the_least_privileged_service_account(lab: Lab) -> None:
    monitor = Rest(lab.monitor_kubeconfig)
    with pytest.raises(ApiError) as e:
        monitor.get("/api/v1/secrets")
    assert e.value.status == 403
    with pytest.raises(ApiError) as e:
        monitor.get("/api/v1/namespaces/netpol-drift/pods/x/log")
    assert e.value.status in (403, 404) and (e.value.status == 403 or "forbidden" in str(e.value).lower())


def test_run_once_reports_every_case_with_locked_down_probe_pods(lab: Lab, lab_namespace: str,
                                                                  tmp_path: Path) -> None:
    ns = lab_namespace
    pods = deploy_three_tier(lab, ns)
    # From now on the API server itself rejects any pod in this namespace that is not PodSecurity "restricted".
    lab.api.merge_patch(f"/api/v1/namespaces/{ns}", {"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"}}})
    config = write_config(lab, tmp_path)

    with PodRecorder(lab, ns) as recorder:
        rc, report = run_monitor(config, three_tier_suite(ns), tmp_path)

    assert rc == 1 and report["ok"] is False  # the violation fails the run
    expected = {  # case: (result, policies say, observed, verdict)
        "frontend-to-api": ("pass", "allow", "connected", "allow"),
        "frontend-to-api-service": ("pass", "allow", "connected", "allow"),
        "api-to-db": ("pass", "allow", "connected", "allow"),
        "frontend-to-db-denied": ("pass", "deny", "refused", "deny"),
        "api-to-frontend-denied": ("pass", "deny", "refused", "deny"),
        "db-to-api-must-be-denied": ("fail", "allow", "connected", "allow"),
        "batch-to-db": ("skipped", "-", "skipped", "skipped"),
    }
    got = {c["name"]: (c["result"], c["intent"], c["observed"], c["verdict"]) for c in report["cases"]}
    assert got == expected
    assert not any(c["enforcement_gap"] for c in report["cases"])
    violation = case(report, "db-to-api-must-be-denied")
    assert "api-from-namespace" in violation["explanation"]
    assert all(f["violation"] for f in violation["flows"])
    skipped = case(report, "batch-to-db")
    assert "no live pod matches source" in skipped["explanation"]
    # Both api replicas were probed and folded into one result per source identity.
    [to_api] = case(report, "frontend-to-api")["flows"]
    assert to_api["source"] == f"{ns}/frontend" and to_api["destination"] == f"{ns}/api"
    assert to_api["port"] == 9000 and to_api["latency_ms"] is not None

    # One probe pod per source identity (frontend, api, db), and none left behind.
    assert report["probe_pods"] == 3
    assert probe_pods(lab) == []
    assert len(recorder.seen) == 3, sorted(recorder.seen)
    by_source = {v[0]["metadata"]["annotations"]["netpol-drift.io/source"]: v for v in recorder.seen.values()}
    assert set(by_source) == {f"{ns}/frontend", f"{ns}/api", f"{ns}/db"}
    owner_uid = lab.api.get("/api/v1/namespaces/netpol-drift")["metadata"]["uid"]
    for source, versions in by_source.items():
        pod = versions[0]
        meta, spec = pod["metadata"], pod["spec"]
        live = next(p for p in pods.values() if source.endswith("/" + p["metadata"]["labels"]["app"]))
        owner = meta["labels"]["netpol-drift.io/owner"]
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*\.\d+", owner), owner  # host.pid of the run
        assert meta["labels"] == {**live["metadata"]["labels"], "netpol-drift.io/probe": "true",
                                  "netpol-drift.io/run": report["run"], "netpol-drift.io/owner": owner}
        assert meta["ownerReferences"] == [{"apiVersion": "v1", "kind": "Namespace", "name": "netpol-drift",
                                            "uid": owner_uid, "controller": True, "blockOwnerDeletion": False}]
        assert spec["restartPolicy"] == "Never" and spec["activeDeadlineSeconds"] == 60
        assert spec["automountServiceAccountToken"] is False and spec["enableServiceLinks"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        [c] = spec["containers"]
        assert c["command"] == ["netpol-drift", "probe-agent"]
        assert c["readinessProbe"]["exec"]["command"] == ["false"]
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert c["resources"]["requests"] == {"cpu": "10m", "memory": "16Mi"}
        # Never Ready in any version we saw, so no Service ever routes to a probe pod.
        for v in versions:
            ready = [cond for cond in v.get("status", {}).get("conditions", []) if cond["type"] == "Ready"]
            assert all(cond["status"] != "True" for cond in ready)
    # The Service's endpoints are the api pods only: the probe pod wearing app=api was never selected as Ready.
    assert any(v[-1].get("status", {}).get("phase") in ("Running", "Succeeded") for v in recorder.seen.values())


FAULT_COMMENT = "netpol-drift-lab-test-fault"


def _fault_rule(db_ip: str) -> list[str]:
    # Accept frontend->db before kube-router's per-pod chains: a node-local dataplane that stopped enforcing.
    # kube-router keeps foreign rules in its chains across syncs, so the fault holds for the whole run.
    return ["-d", f"{db_ip}/32", "-p", "tcp", "--dport", "5432", "-m", "comment", "--comment", FAULT_COMMENT,
            "-j", "ACCEPT"]


def test_dataplane_fault_is_an_enforcement_gap(lab: Lab, lab_namespace: str, tmp_path: Path) -> None:
    ns = lab_namespace
    pods = deploy_three_tier(lab, ns)
    db_ip = pods["db-0"]["status"]["podIP"]
    suite = {"name": "gap", "cases": [c for c in three_tier_suite(ns)["cases"]
                                      if c["name"] in ("frontend-to-db-denied", "api-to-db")]}
    config = write_config(lab, tmp_path)

    rc, before = run_monitor(config, suite, tmp_path)
    assert rc == 0
    assert case(before, "frontend-to-db-denied")["observed"] == "refused"

    db_node = lab.node_of(pods["db-0"])  # the node whose kube-router enforces db's ingress policies
    netns.run(["ip", "netns", "exec", db_node.netns, "iptables", "-I", "KUBE-ROUTER-FORWARD", "1",
               *_fault_rule(db_ip)])
    try:
        rc, after = run_monitor(config, suite, tmp_path)
        still_there = FAULT_COMMENT in netns.node_iptables(node=db_node)
    finally:
        netns.run(["ip", "netns", "exec", db_node.netns, "iptables", "-D", "KUBE-ROUTER-FORWARD",
                   *_fault_rule(db_ip)])
    assert still_there, "kube-router removed the injected fault during the run: the test proves nothing"
    assert rc == 1
    gap = case(after, "frontend-to-db-denied")
    assert (gap["result"], gap["intent"], gap["observed"], gap["verdict"]) == ("fail", "deny", "connected", "allow")
    assert gap["enforcement_gap"] is True and gap["flows"][0]["enforcement_gap"] is True
    assert case(after, "api-to-db")["result"] == "pass" and not case(after, "api-to-db")["enforcement_gap"]
    assert probe_pods(lab) == []


def _wait_for_probe_pod(lab: Lab, ns: str, proc: subprocess.Popen, timeout: float = 30) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = lab.api.get(f"/api/v1/namespaces/{ns}/pods", labelSelector=PROBE_SELECTOR)["items"]
        if found:
            return found
        assert proc.poll() is None, f"the run ended before creating a probe pod: {proc.stderr.read()}"
        time.sleep(0.02)
    raise AssertionError("no probe pod appeared")


def test_killed_run_leaves_pods_that_the_next_start_sweeps(lab: Lab, lab_namespace: str, tmp_path: Path) -> None:
    ns = lab_namespace
    deploy_three_tier(lab, ns)
    config = write_config(lab, tmp_path, concurrency=1, lease_seconds=3)
    suite = three_tier_suite(ns)
    suite_path = tmp_path / "suite.yaml"
    suite_path.write_text(yaml.safe_dump(suite))

    proc = subprocess.Popen(monitor_command(config, suite_path), cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_probe_pod(lab, ns, proc)
    finally:
        proc.kill()  # SIGKILL: no cleanup code runs
        proc.communicate(timeout=30)
    leftovers = {p["metadata"]["name"] for p in probe_pods(lab)}
    assert leftovers, "the killed run left nothing behind: the test did not kill it mid-way"
    leases = lab.api.get("/apis/coordination.k8s.io/v1/namespaces/netpol-drift/leases",
                         labelSelector="netpol-drift.io/run-lease=true")["items"]
    assert leases, "the killed run held no Lease"
    time.sleep(3.5)  # the killed run's Lease lapses (lease_seconds=3): nothing renews it any more

    rc, report = run_monitor(config, suite, tmp_path)
    assert rc == 1 and case(report, "frontend-to-api")["result"] == "pass"
    assert probe_pods(lab) == []
    assert lab.api.get("/apis/coordination.k8s.io/v1/namespaces/netpol-drift/leases",
                       labelSelector="netpol-drift.io/run-lease=true")["items"] == []


def test_concurrent_runs_leave_each_others_probe_pods_alone(lab: Lab, lab_namespace: str, tmp_path: Path) -> None:
    """Issue 8 item 8: a manual run started while another one probes must not sweep the other's pods."""
    ns = lab_namespace
    deploy_three_tier(lab, ns)
    first_dir, second_dir = tmp_path / "first", tmp_path / "second"
    first_dir.mkdir()
    second_dir.mkdir()
    suite = three_tier_suite(ns)
    suite_path = tmp_path / "suite.yaml"
    suite_path.write_text(yaml.safe_dump(suite))
    first = subprocess.Popen(monitor_command(write_config(lab, first_dir, concurrency=1), suite_path), cwd=REPO,
                             env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_probe_pod(lab, ns, first)  # the first run is probing now: its pods exist
        _, second = run_monitor(write_config(lab, second_dir), suite, second_dir)
        out, err = first.communicate(timeout=180)
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate(timeout=30)
    assert first.returncode in (0, 1), err[-3000:]
    for report in (json.loads(out), second):
        got = {c["name"]: c["result"] for c in report["cases"]}
        assert got == {"frontend-to-api": "pass", "frontend-to-api-service": "pass", "api-to-db": "pass",
                       "frontend-to-db-denied": "pass", "api-to-frontend-denied": "pass",
                       "db-to-api-must-be-denied": "fail", "batch-to-db": "skipped"}, report["cases"]
    assert "was deleted before it finished" not in out
    assert probe_pods(lab) == []


def test_sigterm_mid_run_deletes_its_probe_pods(lab: Lab, lab_namespace: str, tmp_path: Path) -> None:
    ns = lab_namespace
    deploy_three_tier(lab, ns)
    config = write_config(lab, tmp_path, concurrency=1)
    suite_path = tmp_path / "suite.yaml"
    suite_path.write_text(yaml.safe_dump(three_tier_suite(ns)))

    proc = subprocess.Popen(monitor_command(config, suite_path), cwd=REPO, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    _wait_for_probe_pod(lab, ns, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert probe_pods(lab) == []


def test_probe_pod_that_cannot_run_gives_skipped_never_a_verdict(lab: Lab, lab_namespace: str,
                                                                 tmp_path: Path) -> None:
    """Per-node mode with a second node that never runs anything: its probe pods stay Pending until the
    run deadline, and their flows are skipped with the reason while the real node's flows are observed."""
    ns = lab_namespace
    deploy_three_tier(lab, ns)
    ghost = pod_manifest("ghost-0", {"app": "ghost"}, tcp=[])
    ghost["spec"]["nodeName"] = "ghost-node"  # the lab agent only runs pods of its own nodes
    path = f"/api/v1/namespaces/{ns}/pods"
    lab.api.post(path, ghost)
    try:
        # Make the API believe ghost-0 runs there, so that the snapshot knows a second node.
        lab.api.merge_patch(f"{path}/ghost-0/status", {"status": {
            "phase": "Running", "podIP": "10.245.0.1", "podIPs": [{"ip": "10.245.0.1"}]}})
        config = write_config(lab, tmp_path, run_deadline_seconds=8)
        suite = {"name": "per-node", "cases": [c for c in three_tier_suite(ns)["cases"]
                                               if c["name"] == "frontend-to-api"]}
        started = time.monotonic()
        rc, report = run_monitor(config, suite, tmp_path, "--per-node")
        elapsed = time.monotonic() - started
    finally:
        lab.api.delete(f"{path}/ghost-0", {"gracePeriodSeconds": 0})
    flows = {f["node"]: f for f in case(report, "frontend-to-api")["flows"]}
    real = sorted(n for n in flows if n != "ghost-node")
    assert real == [n.name for n in C.NODES]  # the three-tier pods run on both lab nodes
    for node in real:
        assert flows[node]["outcome"] == "connected" and flows[node]["verdict"] == "allow"
        assert flows[node]["source"] == f"{ns}/frontend@{node}"
    ghost_flow = next(f for f in case(report, "frontend-to-api")["flows"] if "@ghost-node" in f["source"])
    assert ghost_flow["outcome"] == "skipped" and ghost_flow["verdict"] == "skipped"
    assert "still Pending" in ghost_flow["reason"] and "run deadline (8s)" in ghost_flow["reason"]
    # A case some of whose flows could not be probed is not verified: exit 1 (issue 8 item 2).
    assert case(report, "frontend-to-api")["result"] == "partial" and rc == 1 and report["ok"] is False
    assert report["probe_pods"] == len(real) + 1 and elapsed < 30
    assert probe_pods(lab) == []


def test_generated_suite_from_the_live_cluster_passes_a_live_run(lab: Lab, lab_namespace: str,
                                                                 tmp_path: Path) -> None:
    """`suite generate` reads the cluster as the monitor; its expectations are the engine's verdicts, so on a
    correctly enforcing dataplane a live run of the generated suite meets every one of them."""
    ns = lab_namespace
    deploy_three_tier(lab, ns)
    config = write_config(lab, tmp_path)
    out = tmp_path / "generated.yaml"
    cmd = [sys.executable, "-m", "monitor", "--config", str(config), "suite", "generate", "--namespace", ns,
           "--output", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    text = out.read_text()
    assert text.startswith("# netpol-drift connectivity suite, generated from cluster lab")
    suite = yaml.safe_load(text)
    names = [c["name"] for c in suite["cases"]]
    # frontend, api, db: 6 ordered pairs, each on the destination's one declared port
    assert names == sorted(names) and len(names) == 6
    assert f"{ns}-frontend-to-{ns}-db-tcp-5432" in names
    assert {c["expect"] for c in suite["cases"]} == {"allow", "deny"}
    # Generating again gives the same file (stable names, stable order): reviewable diffs.
    subprocess.run([*cmd[:-1], str(tmp_path / "again.yaml")], cwd=REPO, env=_env(), check=True, timeout=60,
                   capture_output=True)
    assert (tmp_path / "again.yaml").read_text() == text

    rc, report = run_monitor(config, suite, tmp_path)
    assert rc == 0, [(c["name"], c["result"], c["explanation"]) for c in report["cases"] if c["result"] != "pass"]
    assert all(c["result"] == "pass" for c in report["cases"])
    assert probe_pods(lab) == []


def test_many_targets_fit_the_termination_message(lab: Lab, lab_namespace: str, tmp_path: Path) -> None:
    """1,200 targets for one source: split over two probe pods (at most 1,000 each), every outcome comes back
    through a termination message of at most 4 KiB."""
    ns = lab_namespace
    lab.run_pods(ns, [pod_manifest("src", {"role": "src"}, tcp=[], command=["sleep", "3600"])]
                 + [pod_manifest(f"dst-{i}", {"role": "dst"}, tcp=[], command=["sleep", "3600"])
                    for i in range(3)])
    ports = list(range(20001, 20401))  # nothing listens there: every connect is reset by the pod's kernel
    suite = {"name": "wide", "cases": [{"name": "src-to-everything", "from": {"namespace": ns, "pod": "src"},
                                        "to": {"namespace": ns, "labels": {"role": "dst"}}, "ports": ports,
                                        "expect": "deny"}]}
    with PodRecorder(lab, ns) as recorder:
        # A reset read as blocked (tcp_reset_means: deny), so that the run verifies every case (exit 0).
        rc, report = run_monitor(write_config(lab, tmp_path, tcp_reset_means="deny"), suite, tmp_path)
    flows = case(report, "src-to-everything")["flows"]
    assert len(flows) == 1200 and {f["outcome"] for f in flows} == {"refused"}
    assert rc == 0 and report["probe_pods"] == 2
    # Every outcome came back (above), which a message cut at 4 KiB would not allow. The recorder polls, so it
    # may miss a pod's last version before deletion; the messages it did see are checked directly.
    messages = {}
    for name, versions in recorder.seen.items():
        for v in versions:
            for cs in v.get("status", {}).get("containerStatuses", []):
                if "terminated" in cs.get("state", {}):
                    messages[name] = cs["state"]["terminated"]["message"]
    assert messages, "the recorder saw no finished probe pod"
    assert all(len(m.encode()) <= 4096 for m in messages.values())
    assert {m.split()[1] for m in messages.values()} <= {"1000", "200"}
    assert probe_pods(lab) == []


def test_external_targets_need_a_control_probe_that_reaches_them(lab: Lab, lab_namespace: str,
                                                                 tmp_path: Path) -> None:
    """Issue 8 item 7: `cidr: 0.0.0.0/0` probes 0.0.0.1, which nothing answers, so every deny case to it passed
    whatever the policies said. Now a control probe from the monitor's namespace (no policy there) probes the
    same target: the API server's address answers it, so a block there is real; 0.0.0.1 does not, so that case
    is `unknown` and the run exits 1."""
    ns = lab_namespace
    lab.run_pods(ns, [pod_manifest("src", {"app": "src"}, tcp=[], command=["sleep", "3600"])])
    since = time.time()
    lab.apply([netpol("src-no-egress", {"podSelector": {"matchLabels": {"app": "src"}}, "policyTypes": ["Egress"]})],
              namespace=ns)
    lab.wait_synced(since=since)
    suite = {"name": "external", "cases": [
        {"name": "no-internet", "from": {"namespace": ns, "pod": "src"}, "to": {"cidr": "0.0.0.0/0"},
         "port": 443, "expect": "deny"},
        {"name": "no-apiserver", "from": {"namespace": ns, "pod": "src"}, "to": {"host": C.ROOT_IP},
         "port": C.APISERVER_PORT, "expect": "deny"},
    ]}
    rc, report = run_monitor(write_config(lab, tmp_path), suite, tmp_path, "--no-store")
    internet, apiserver = case(report, "no-internet"), case(report, "no-apiserver")
    assert apiserver["result"] == "pass", apiserver
    assert f"control probe from netpol-drift/netpol-drift-control reached {C.ROOT_IP}:{C.APISERVER_PORT}/TCP" in \
        apiserver["flows"][0]["reason"]
    assert internet["result"] == "unknown" and internet["flows"][0]["verdict"] == "unknown", internet
    assert "nothing is known to answer at 0.0.0.1:443/TCP" in internet["flows"][0]["reason"]
    assert rc == 1 and report["ok"] is False
    assert report["probe_pods"] == 2  # the source's and the control's
    assert probe_pods(lab) == []

"""deploy/run-once-cronjob.yaml: its embedded settings and suite load with our own loaders, the API server
accepts the objects (server-side dry run in the lab), including PodSecurity "restricted" for its pods, and the
Job's pod really runs: its exact command, user, volumes and read-only root filesystem in a lab pod."""

from __future__ import annotations

import copy
import shutil

import pytest
import yaml

from monitor.store import Store
from tests.deploy_manifests import DEPLOY, dry_run_under_restricted, embedded_settings_and_suite, manifest_docs
from tests.lab.fixtures import Lab, deployment

MANIFEST = DEPLOY / "run-once-cronjob.yaml"


def _docs() -> list[dict]:
    return manifest_docs(MANIFEST)


def test_embedded_settings_and_suite_load(tmp_path):
    settings, suite = embedded_settings_and_suite(_docs(), tmp_path)
    assert settings.suite == "/etc/netpol-drift/suite.yaml" and settings.probe.namespace == "netpol-drift"
    assert suite.cases[0].name == "example-frontend-to-api"
    job = next(d for d in _docs() if d["kind"] == "CronJob")["spec"]
    assert job["jobTemplate"]["spec"]["activeDeadlineSeconds"] > settings.probe.run_deadline_seconds


@pytest.mark.lab
def test_api_server_accepts_the_manifests(lab):
    template = next(d for d in _docs() if d["kind"] == "CronJob")["spec"]["jobTemplate"]["spec"]["template"]
    dry_run_under_restricted(lab, _docs(), template, "netpol-drift-run-dry")


# ---------------------------------------------------------------------------- the Job's pod, run in the lab
# What the lab realizes of the pod (tests/lab/README.md): the exact command (mapped to this host's console
# script), runAsUser/runAsGroup/fsGroup (setpriv), readOnlyRootFilesystem (`/` read-only in the command's own
# mount namespace: working directory, HOME and /tmp included), the configMap, emptyDir and
# persistentVolumeClaim volumes and their mounts, and the ServiceAccount token the admission plugin adds
# (kube-api-access-*: a TokenRequest token for netpol-drift, read by uid 65532 under the read-only root): the
# run takes the in-cluster path, as in a real cluster. What it cannot: the image's own filesystem (the host's
# files stand in for it), capabilities and seccomp.
DATA_DIR = "netpol-drift-data"


def _job_pod(name: str, docs: list[dict], lab_ns: str) -> tuple[dict, dict]:
    """The ConfigMap (suite pointed at the lab's app) and the pod the CronJob's Job would create."""
    config = copy.deepcopy(next(d for d in docs if d["kind"] == "ConfigMap"))
    config["data"]["suite.yaml"] = yaml.safe_dump({"name": "baseline", "cases": [
        {"name": "frontend-to-api", "from": {"namespace": lab_ns, "workload": "frontend"},
         "to": {"namespace": lab_ns, "workload": "api"}, "port": "http", "expect": "allow"}]})
    template = next(d for d in docs if d["kind"] == "CronJob")["spec"]["jobTemplate"]["spec"]["template"]
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, **copy.deepcopy(template["metadata"])},
           "spec": copy.deepcopy(template["spec"])}
    return config, pod


def _run_job_pod(lab: Lab, pod: dict) -> tuple[str, int, str]:
    created = lab.api.post("/api/v1/namespaces/netpol-drift/pods", pod)
    # Its only credential is the one the admission plugin mounts: the run must take the in-cluster path.
    assert [v["name"] for v in created["spec"]["volumes"] if v["name"].startswith("kube-api-access-")], created
    name = pod["metadata"]["name"]
    try:
        done = lab.wait_finished("netpol-drift", name, timeout=150)
    finally:
        lab.api.delete(f"/api/v1/namespaces/netpol-drift/pods/{name}", {"gracePeriodSeconds": 0})
    term = done["status"]["containerStatuses"][0]["state"]["terminated"]
    return done["status"]["phase"], term["exitCode"], term.get("message") or ""


def _deploy_two_workloads(lab: Lab, ns: str) -> None:
    """Real Deployments: the lab's controller-manager garbage-collects pods whose owner does not exist."""
    lab.run_workloads(ns, [deployment("frontend", tcp=[("http", 8080)]), deployment("api", tcp=[("http", 9000)])])


@pytest.mark.lab
def test_the_job_pod_runs_with_its_read_only_root_and_keeps_history_on_its_claim(lab: Lab, lab_namespace: str):
    """Issue 8 item 11: the shipped CronJob's pod stores its run on the claim, and the next Job's pod finds it.
    A control run without the claim (the manifest as it was: the default store in the working directory) must
    fail, or the lab would not be simulating the read-only root filesystem at all."""
    docs = _docs()
    _deploy_two_workloads(lab, lab_namespace)
    config, pod = _job_pod("netpol-drift-run-1", docs, lab_namespace)
    lab.apply([config, next(d for d in docs if d["kind"] == "PersistentVolumeClaim")])
    claim_dir = lab.paths.root / "pvc" / "netpol-drift" / DATA_DIR
    shutil.rmtree(claim_dir, ignore_errors=True)  # what an earlier test session left on the lab's "disk"
    try:
        # Control first: no claim, no store setting. The run must fail on the read-only working directory.
        broken_config = copy.deepcopy(config)
        settings = yaml.safe_load(broken_config["data"]["netpol-drift.yaml"])
        del settings["store"]
        broken_config["data"]["netpol-drift.yaml"] = yaml.safe_dump(settings)
        lab.apply([broken_config])
        broken = copy.deepcopy(pod)
        broken["metadata"]["name"] = "netpol-drift-run-control"
        [c] = broken["spec"]["containers"]
        c["volumeMounts"] = [m for m in c["volumeMounts"] if m["name"] != "data"]
        broken["spec"]["volumes"] = [v for v in broken["spec"]["volumes"] if v["name"] != "data"]
        phase, code, message = _run_job_pod(lab, broken)
        assert (phase, code) == ("Failed", 2), message
        assert "netpol-drift.db" in message and ("read-only" in message or "unable to open" in message), message

        lab.apply([config])
        phase, code, message = _run_job_pod(lab, pod)
        assert (phase, code) == ("Succeeded", 0), message
        db = claim_dir / "netpol-drift.db"
        assert db.exists() and db.stat().st_gid == 65532
        second = copy.deepcopy(pod)
        second["metadata"]["name"] = "netpol-drift-run-2"
        phase, code, message = _run_job_pod(lab, second)
        assert (phase, code) == ("Succeeded", 0), message
        with Store.open(f"sqlite:///{db}") as store:
            runs = store.history("production")
            assert len(runs) == 2 and all(r.known_good for r in runs), runs
        assert lab.api.get("/api/v1/pods", labelSelector="netpol-drift.io/probe=true")["items"] == []
    finally:
        lab.api.delete("/api/v1/namespaces/netpol-drift/configmaps/netpol-drift-config", {})
        lab.api.delete(f"/api/v1/namespaces/netpol-drift/persistentvolumeclaims/{DATA_DIR}", {})

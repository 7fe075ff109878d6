"""The manifests under deploy/ as the tests read them: a file's documents, its ConfigMap's settings and suite
through our own loaders, and a server-side dry run of every object in the lab's `netpol-drift` namespace with
PodSecurity "restricted" enforced (strict field validation; the pod its controller would create dry-run too,
since PodSecurity judges pods, not a Deployment's or a Job's template).
Each deploy test keeps its own assertions about what a manifest must hold; this module must not make any.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from monitor.settings import Settings, load_settings
from monitor.suite import Suite, load_suite

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
NAMESPACE = "netpol-drift"
# Where each kind the manifests hold is created (namespaced, in NAMESPACE).
COLLECTIONS = {
    "ConfigMap": f"/api/v1/namespaces/{NAMESPACE}/configmaps",
    "Service": f"/api/v1/namespaces/{NAMESPACE}/services",
    "PersistentVolumeClaim": f"/api/v1/namespaces/{NAMESPACE}/persistentvolumeclaims",
    "Deployment": f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments",
    "CronJob": f"/apis/batch/v1/namespaces/{NAMESPACE}/cronjobs",
}


def manifest_docs(path: Path) -> list[dict]:
    """The non-empty YAML documents of a manifest file."""
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def embedded_settings_and_suite(docs: list[dict], tmp_path: Path) -> tuple[Settings, Suite]:
    """The ConfigMap's netpol-drift.yaml and suite.yaml, written out and read as the monitor reads them."""
    config = next(d for d in docs if d["kind"] == "ConfigMap")
    (tmp_path / "netpol-drift.yaml").write_text(config["data"]["netpol-drift.yaml"])
    (tmp_path / "suite.yaml").write_text(config["data"]["suite.yaml"])
    return load_settings(tmp_path / "netpol-drift.yaml", env={}), load_suite(tmp_path / "suite.yaml")


def dry_run_under_restricted(lab, docs: list[dict], pod_template: dict, pod_name: str) -> None:
    """Every document dry-run created (the API server must accept it as written, by name), then a pod of
    `pod_template`'s spec; the namespace's PodSecurity label is put back as it was afterwards."""
    ns_path = f"/api/v1/namespaces/{NAMESPACE}"
    labels = lab.api.get(ns_path)["metadata"].get("labels") or {}
    lab.api.merge_patch(ns_path, {"metadata": {"labels": {
        **labels, "pod-security.kubernetes.io/enforce": "restricted"}}})
    try:
        for doc in docs:
            created = lab.api.request("POST", COLLECTIONS[doc["kind"]], doc,
                                      query={"dryRun": "All", "fieldValidation": "Strict"})
            assert created["metadata"]["name"] == doc["metadata"]["name"]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": pod_name}, "spec": pod_template["spec"]}
        lab.api.request("POST", f"{ns_path}/pods", pod, query={"dryRun": "All"})
    finally:
        lab.api.merge_patch(ns_path, {"metadata": {"labels": {
            "pod-security.kubernetes.io/enforce": labels.get("pod-security.kubernetes.io/enforce")}}})

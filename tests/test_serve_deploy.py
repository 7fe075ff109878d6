"""deploy/serve.yaml: its settings and suite load with our own loaders, and the API server accepts the objects
(server-side dry run in the lab, strict field validation), the pod passing PodSecurity "restricted"."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from monitor.settings import load_settings
from monitor.suite import load_suite

MANIFEST = Path(__file__).resolve().parents[1] / "deploy" / "serve.yaml"


def _docs() -> list[dict]:
    return [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d]


def test_embedded_settings_and_suite_load(tmp_path):
    config = next(d for d in _docs() if d["kind"] == "ConfigMap")
    (tmp_path / "netpol-drift.yaml").write_text(config["data"]["netpol-drift.yaml"])
    (tmp_path / "suite.yaml").write_text(config["data"]["suite.yaml"])
    settings = load_settings(tmp_path / "netpol-drift.yaml", env={})
    assert settings.suite == "/etc/netpol-drift/suite.yaml" and settings.leader.enabled
    assert load_suite(tmp_path / "suite.yaml").cases
    pod = next(d for d in _docs() if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    # The kubelet's SIGKILL must not cut the grace period plus the abort's cleanup.
    assert pod["terminationGracePeriodSeconds"] >= settings.schedule.shutdown_grace_seconds + 10
    port = int(settings.web.listen.rpartition(":")[2])
    assert pod["containers"][0]["ports"][0]["containerPort"] == port


@pytest.mark.lab
def test_api_server_accepts_the_manifests(lab):
    ns = lab.api.get("/api/v1/namespaces/netpol-drift")
    labels = ns["metadata"].get("labels") or {}
    restricted = {**labels, "pod-security.kubernetes.io/enforce": "restricted"}
    lab.api.merge_patch("/api/v1/namespaces/netpol-drift", {"metadata": {"labels": restricted}})
    try:
        for doc in _docs():
            plural = {"ConfigMap": "/api/v1/namespaces/netpol-drift/configmaps",
                      "Service": "/api/v1/namespaces/netpol-drift/services",
                      "Deployment": "/apis/apps/v1/namespaces/netpol-drift/deployments"}[doc["kind"]]
            created = lab.api.request("POST", plural, doc, query={"dryRun": "All", "fieldValidation": "Strict"})
            assert created["metadata"]["name"] == doc["metadata"]["name"]
        template = next(d for d in _docs() if d["kind"] == "Deployment")["spec"]["template"]
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "netpol-drift-serve-dry"},
               "spec": template["spec"]}
        lab.api.request("POST", "/api/v1/namespaces/netpol-drift/pods", pod, query={"dryRun": "All"})
    finally:
        lab.api.merge_patch("/api/v1/namespaces/netpol-drift", {"metadata": {"labels": {
            "pod-security.kubernetes.io/enforce": labels.get("pod-security.kubernetes.io/enforce")}}})

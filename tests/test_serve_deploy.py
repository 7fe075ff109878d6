"""deploy/serve.yaml: its settings and suite load with our own loaders, and the API server accepts the objects
(server-side dry run in the lab, strict field validation), the pod passing PodSecurity "restricted"."""

from __future__ import annotations

import pytest

from tests.deploy_manifests import DEPLOY, dry_run_under_restricted, embedded_settings_and_suite, manifest_docs

MANIFEST = DEPLOY / "serve.yaml"


def _docs() -> list[dict]:
    return manifest_docs(MANIFEST)


def test_embedded_settings_and_suite_load(tmp_path):
    settings, suite = embedded_settings_and_suite(_docs(), tmp_path)
    assert settings.suite == "/etc/netpol-drift/suite.yaml" and settings.leader.enabled
    assert suite.cases
    pod = next(d for d in _docs() if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    # The kubelet's SIGKILL must not cut the grace period plus the abort's cleanup.
    assert pod["terminationGracePeriodSeconds"] >= settings.schedule.shutdown_grace_seconds + 10
    port = int(settings.web.listen.rpartition(":")[2])
    assert pod["containers"][0]["ports"][0]["containerPort"] == port


@pytest.mark.lab
def test_api_server_accepts_the_manifests(lab):
    template = next(d for d in _docs() if d["kind"] == "Deployment")["spec"]["template"]
    dry_run_under_restricted(lab, _docs(), template, "netpol-drift-serve-dry")

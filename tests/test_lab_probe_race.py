"""Issue 8 item 4 in the lab: probe pods start before their network rules exist (LAB_START_BEFORE_RULES=probe,
the lab's default, as with a real kubelet), so their first packets race kube-router. One pass per target (what
the agent did before) can give a wrong verdict; passes a settle time apart until two agree give the right one.

Truth of the two flows, checked from a long-lived pod whose rules are in place: web -> db:5432 connects (db
admits app=web), web -> cache:6379 is refused (web may only talk to db). A fresh probe pod wearing web's labels
is not yet in db's allow-list (early refusal of an allowed flow) and has no egress chain yet (early success of
a denied one).
"""

from __future__ import annotations

import re
import time

import pytest

from monitor.probe.wire import decode_result
from tests.lab.fixtures import Lab, pod_manifest

pytestmark = pytest.mark.lab


def netpol(name: str, spec: dict) -> dict:
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": name},
            "spec": spec}


def probe_pod(name: str, targets: str, *args: str) -> dict:
    m = pod_manifest(name, {"app": "web", "netpol-drift.io/probe": "true"},
                     command=["netpol-drift", "probe-agent", "--timeout", "1", "--targets", targets, *args])
    m["spec"]["containers"][0].pop("ports")
    return m


def agent_log_for(lab: Lab, ns: str, name: str) -> str:
    text = lab.paths.log("agent").read_text(errors="replace")
    lines = [line for line in text.splitlines() if f" {ns}/{name}: starting before kube-router's rules" in line]
    return lines[-1] if lines else ""


def test_fresh_probe_pods_race_their_rules_and_settled_passes_still_give_the_right_verdict(
        lab: Lab, lab_namespace: str) -> None:
    ns = lab_namespace
    pods = lab.run_pods(ns, [pod_manifest("web", {"app": "web"}, tcp=[80]),
                             pod_manifest("db", {"app": "db"}, tcp=[5432]),
                             pod_manifest("cache", {"app": "cache"}, tcp=[6379])])
    since = time.time()
    lab.apply([
        netpol("db-from-web", {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress"],
                               "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}],
                                            "ports": [{"port": 5432}]}]}),
        netpol("web-to-db-only", {"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"],
                                  "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "db"}}}],
                                              "ports": [{"port": 5432}]}]}),
    ], namespace=ns)
    lab.wait_synced(since=since)
    db, cache = pods["db"]["status"]["podIP"], pods["cache"]["status"]["podIP"]
    truth = {"db": "connected", "cache": "refused"}
    assert lab.connect(pods["web"], db, 5432) == truth["db"]
    assert lab.connect(pods["web"], cache, 6379) == truth["cache"]

    targets = f"T{db}:5432,T{cache}:6379"
    n = 4
    one_pass = [f"one-pass-{i}" for i in range(n)]
    settled = [f"settled-{i}" for i in range(n)]
    for name in one_pass:
        lab.api.post(f"/api/v1/namespaces/{ns}/pods", probe_pod(name, targets, "--passes", "1"))
    for name in settled:
        lab.api.post(f"/api/v1/namespaces/{ns}/pods", probe_pod(name, targets))  # default passes and settle

    def outcomes(name: str) -> dict[str, str]:
        pod = lab.wait_finished(ns, name, timeout=60)
        message = pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
        _, got = decode_result(message)
        return {"db": got[0].outcome, "cache": got[1].outcome}

    results = {name: outcomes(name) for name in one_pass + settled}
    # The mode is real: each probe pod's command started while kube-router had no rule for its IP.
    starts = {name: agent_log_for(lab, ns, name) for name in results}
    assert all(re.search(r"rules absent$", line) for line in starts.values()), (starts, results)
    # Without passes, the first packet decides, and the race makes it wrong.
    wrong = {name: r for name, r in results.items() if name in one_pass and r != truth}
    assert wrong, f"no single-pass probe pod saw the race: {results}"
    # With them, every fresh pod reports the truth.
    assert all(results[name] == truth for name in settled), results

"""One replica of a destination broken by a dataplane fault, in the lab (issue 20, item 2): `run --once` reports
the replica that contradicts the policies, with "replicas disagree". The fault is an iptables DROP in that
replica's own network namespace, where kube-router never looks (tests/lab/README.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lab.fixtures import Lab
from tests.test_live_history_lab import pod_fault
from tests.test_live_lab import deploy_three_tier, run_monitor, three_tier_suite, write_config

pytestmark = pytest.mark.lab


def test_one_broken_replica_is_the_reported_one(lab: Lab, lab_namespace: str, tmp_path: Path) -> None:
    ns = lab_namespace
    pods = deploy_three_tier(lab, ns)
    config = write_config(lab, tmp_path)
    suite = {"name": "replicas", "cases": [c for c in three_tier_suite(ns)["cases"] if c["name"] == "frontend-to-api"]}
    # The Deployment's two api pods, in name order (the order the reason lists them in): break the second.
    healthy, broken = sorted(name for name in pods if name.startswith("api-"))
    with pod_fault(lab, pods[broken], "-p", "tcp", "--dport", "9000", "-j", "DROP"):
        rc, report = run_monitor(config, suite, tmp_path, "--no-store")
    [case] = report["cases"]
    [flow] = case["flows"]
    assert flow["intent"] == "allow"  # api-from-namespace admits http from every pod of the namespace
    assert (flow["outcome"], flow["verdict"]) == ("timeout", "deny")
    assert flow["reason"] == f"replicas disagree: {ns}/{healthy}=connected, {ns}/{broken}=timeout"
    assert flow["violation"] and flow["enforcement_gap"]
    assert rc == 1 and case["result"] == "fail" and case["enforcement_gap"]

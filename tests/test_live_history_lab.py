"""`run --once` with a store, against the lab: known-good baselines, confirmed drift and its cause, in history.

Every run uses the monitor's ServiceAccount (the lab's monitor kubeconfig) and a SQLite file of the test; the
harness (admin) builds the app, edits policies and labels, and injects dataplane faults inside the
destination pod's own network namespace (kube-router never rewrites that one, see tests/lab/README.md).
Assertions read the stored data back through the Store API and `history`/`show --format json`.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from monitor.snapshot import diff_snapshots
from monitor.store import Store
from tests.lab import netns
from tests.lab.fixtures import Lab
from tests.test_live_lab import REPO, _env, deploy_three_tier, netpol, run_monitor, three_tier_suite, write_config

pytestmark = pytest.mark.lab

API_TO_DB = "api-to-db"
FAULT_COMMENT = "netpol-drift-history-test-fault"


def suite_of(ns: str, *names: str) -> dict:
    return {"name": "history", "cases": [c for c in three_tier_suite(ns)["cases"] if c["name"] in names]}


def history_db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'history.db'}"


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "monitor", "--config", str(config), *args], cwd=REPO, env=_env(),
                          capture_output=True, text=True, timeout=60)


def drift_of(report: dict, case: str) -> dict:
    return next(d for d in report["drift"] if d["case"] == case)


@contextmanager
def pod_fault(lab: Lab, pod: dict, *rule: str) -> Iterator[None]:
    """An iptables rule in the pod's own INPUT chain: a dataplane fault no policy or label explains."""
    ns = lab.netns_of(pod)
    spec = ["INPUT", *rule, "-m", "comment", "--comment", FAULT_COMMENT]
    netns.run(["ip", "netns", "exec", ns, "iptables", "-I", *spec])
    try:
        yield
    finally:
        netns.run(["ip", "netns", "exec", ns, "iptables", "-D", *spec])


def first_run_is_known_good(lab: Lab, ns: str, tmp_path: Path, *cases: str) -> tuple[Path, dict, dict]:
    pods = deploy_three_tier(lab, ns)
    config = write_config(lab, tmp_path)
    rc, first = run_monitor(config, suite_of(ns, *cases), tmp_path)
    assert rc == 0, first
    assert first["stored"] is True and first["known_good"] is True and first["baseline_run"] is None
    assert first["drift"] == []
    return config, pods, first


# ------------------------------------------------------------------------------------------------ tests
def test_policy_edit_is_drift_caused_by_that_policy(lab: Lab, lab_namespace: str, tmp_path: Path) -> None:
    ns = lab_namespace
    config, _, first = first_run_is_known_good(lab, ns, tmp_path, API_TO_DB, "frontend-to-api")

    # (a) stored, and the baseline of this cluster and suite
    with Store.open(history_db(tmp_path)) as store:
        [summary] = store.history("lab")
        assert summary.id == first["stored_run"] and summary.known_good
        baseline = store.known_good("lab", first["suite_digest"])
        assert baseline is not None and baseline.id == first["stored_run"]
        assert {r.case: r.outcome.value for r in baseline.results} == {API_TO_DB: "connected",
                                                                       "frontend-to-api": "connected"}

    # (b) db-from-api now admits another port only: api -> db:5432 is blocked by the edited policy
    since = time.time()
    lab.apply(netpol("db-from-api", {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress"],
                                     "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "api"}}}],
                                                  "ports": [{"port": 5433}]}]}), namespace=ns)
    lab.wait_synced(since=since)
    rc, second = run_monitor(config, suite_of(ns, API_TO_DB, "frontend-to-api"), tmp_path)

    assert rc == 1  # api-to-db expects allow: the drift is also a violation
    assert second["baseline_run"] == first["stored_run"] and second["known_good"] is False
    assert second["reprobe_rounds"] == 1
    [d] = second["drift"]
    assert (d["case"], d["known_good"], d["observed"], d["state"]) == (API_TO_DB, "connected", "refused",
                                                                       "confirmed")
    assert d["cause"]["kind"] == "config" and d["cause"]["intent_before"] is True
    assert d["cause"]["intent_after"] is False
    assert d["cause"]["changes"] == [f"NetworkPolicy {ns}/db-from-api changed (ingress)"]

    with Store.open(history_db(tmp_path)) as store:
        events = store.events("lab")
        drift = [e for e in events if e.kind == "drift"]
        assert len(drift) == 1 and drift[0].open and drift[0].opened_run == second["stored_run"]
        assert drift[0].flow_key.startswith(f"{API_TO_DB}|{ns}/api|{ns}/db|5432/TCP")
        assert drift[0].cause.kind == "config" and f"{ns}/db-from-api" in drift[0].cause.changes[0]
        assert {e.kind for e in events} == {"drift", "violation"}
        assert len(store.pending_alerts()) == 2  # one outbox row per opened event, none per run

    proc = cli(config, "history", "--db", history_db(tmp_path), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    runs = json.loads(proc.stdout)["runs"]
    assert [(r["id"], r["known_good"], r["violations"]) for r in runs] == [
        (second["stored_run"], False, 1), (first["stored_run"], True, 0)]
    proc = cli(config, "show", second["stored_run"], "--db", history_db(tmp_path), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)
    [event] = [e for e in shown["events"] if e["kind"] == "drift"]
    assert event["cause"]["changes"] == [f"NetworkPolicy {ns}/db-from-api changed (ingress)"]
    proc = cli(config, "show", second["stored_run"], "--db", history_db(tmp_path))
    assert f"cause: config (each): NetworkPolicy {ns}/db-from-api changed (ingress)" in proc.stdout

    # A third, unchanged run: the drift stays one open event (no second alert), nothing new opens.
    rc, third = run_monitor(config, suite_of(ns, API_TO_DB, "frontend-to-api"), tmp_path)
    assert third["baseline_run"] == first["stored_run"] and third["events_opened"] == []
    with Store.open(history_db(tmp_path)) as store:
        assert len(store.events("lab")) == 2 and len(store.pending_alerts()) == 2


def test_pod_relabel_is_drift_caused_by_the_label_change(lab: Lab, lab_namespace: str, tmp_path: Path) -> None:
    ns = lab_namespace
    config, _, first = first_run_is_known_good(lab, ns, tmp_path, API_TO_DB)

    # (c) db-0 loses app=db: db-from-api no longer selects it, default-deny does. Same workload identity.
    since = time.time()
    lab.api.merge_patch(f"/api/v1/namespaces/{ns}/pods/db-0", {"metadata": {"labels": {"app": "db-old"}}})
    lab.wait_synced(since=since)
    rc, second = run_monitor(config, suite_of(ns, API_TO_DB), tmp_path)

    assert rc == 1 and second["baseline_run"] == first["stored_run"]
    [d] = second["drift"]
    assert (d["known_good"], d["observed"], d["state"]) == ("connected", "refused", "confirmed")
    assert d["cause"]["kind"] == "config"
    assert d["cause"]["changes"] == [f"pod {ns}/db: labels app: db -> db-old"]
    with Store.open(history_db(tmp_path)) as store:
        [event] = [e for e in store.open_events("lab") if e.kind == "drift"]
        assert event.cause.changes == (f"pod {ns}/db: labels app: db -> db-old",)
        assert event.opened_run == second["stored_run"]


def test_dataplane_fault_without_config_change_is_dataplane_drift(lab: Lab, lab_namespace: str,
                                                                  tmp_path: Path) -> None:
    ns = lab_namespace
    config, pods, first = first_run_is_known_good(lab, ns, tmp_path, API_TO_DB)

    # (d) db's own firewall rejects 5432 (ICMP, as kube-router does: a reset would read as "no listener"): the
    # policies did not change, the network did.
    with pod_fault(lab, pods["db-0"], "-p", "tcp", "--dport", "5432", "-j", "REJECT", "--reject-with",
                   "icmp-port-unreachable"):
        rc, second = run_monitor(config, suite_of(ns, API_TO_DB), tmp_path)
    with Store.open(history_db(tmp_path)) as store:
        before, after = store.snapshot(first["snapshot_digest"]), store.snapshot(second["snapshot_digest"])
    # Nothing of this app moved in config (other tests sharing the lab may change their own namespaces).
    assert [c.describe() for c in diff_snapshots(before, after).changes if c.key.startswith(ns)] == []
    [d] = second["drift"]
    assert (d["known_good"], d["observed"], d["state"]) == ("connected", "refused", "confirmed")
    assert d["cause"]["kind"] == "dataplane" and d["cause"]["changes"] == []
    assert d["cause"]["intent_before"] is True and d["cause"]["intent_after"] is True
    with Store.open(history_db(tmp_path)) as store:
        [event] = [e for e in store.open_events("lab") if e.kind == "drift"]
        assert event.cause.kind == "dataplane" and event.opened_run == second["stored_run"]

    # Fault removed: the next run sees the known-good outcome again and resolves the event.
    rc, third = run_monitor(config, suite_of(ns, API_TO_DB), tmp_path)
    assert rc == 0 and third["drift"] == [] and third["events_resolved"] >= 1
    with Store.open(history_db(tmp_path)) as store:
        assert [e for e in store.open_events("lab") if e.kind == "drift"] == []
        [resolved] = [e for e in store.events("lab") if e.kind == "drift"]
        assert resolved.resolved_run == third["stored_run"]
        assert resolved.resolution == "back to the known-good outcome"


def test_a_change_seen_once_is_not_confirmed(lab: Lab, lab_namespace: str, tmp_path: Path) -> None:
    """(e) The fault rejects exactly one SYN (an iptables quota just over one SYN's size): the run's probe
    sees `refused`, the confirmation re-probe sees `connected` again, so no drift is opened."""
    ns = lab_namespace
    config, pods, first = first_run_is_known_good(lab, ns, tmp_path, API_TO_DB)

    # A SYN with options is 60 bytes: the quota lets the rule match the first one only.
    with pod_fault(lab, pods["db-0"], "-p", "tcp", "--dport", "5432", "--syn", "-m", "quota", "--quota", "100",
                   "-j", "REJECT", "--reject-with", "icmp-port-unreachable"):
        rc, second = run_monitor(config, suite_of(ns, API_TO_DB), tmp_path)

    assert rc == 1  # the run's own observation is stored as seen: refused, a violation of `allow`
    [d] = second["drift"]
    assert (d["known_good"], d["observed"], d["state"]) == ("connected", "refused", "blip")
    assert d["cause"] is None and second["reprobe_rounds"] == 1
    assert second["known_good"] is False
    with Store.open(history_db(tmp_path)) as store:
        assert store.events("lab") == []  # neither drift nor the unconfirmed violation opened an event
        assert not store.summary(second["stored_run"]).known_good
        assert store.known_good("lab", second["suite_digest"]).id == first["stored_run"]
        [r] = store.get_run(second["stored_run"]).results
        assert r.outcome.value == "refused"

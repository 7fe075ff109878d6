"""`netpol-drift serve` as a subprocess against the lab: change-triggered runs, watches, the Lease, SIGTERM,
reload and readiness, as the monitor's least-privileged ServiceAccount.

The harness (admin) builds the three-tier app and edits policies; every assertion reads what serve exposes
(/metrics, /readyz, its log) or what it stored (the Store API on the test's own database).
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.errors import StoreError
from monitor.store import RunSummary, Store
from tests.lab.fixtures import Lab
from tests.test_live_lab import REPO, _env, deploy_three_tier, netpol, probe_pods, three_tier_suite, write_config

pytestmark = pytest.mark.lab


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Serve:
    """One `serve` process: its config, log, HTTP port; stopped (SIGTERM) at the end of the test."""

    def __init__(self, lab: Lab, tmp_path: Path, ns: str, name: str = "serve", suite: dict | None = None,
                 schedule: dict | None = None, env: dict[str, str] | None = None, **extra: Any) -> None:
        self.tmp, self.port = tmp_path, free_port()
        config = write_config(lab, tmp_path)
        data = yaml.safe_load(config.read_text())
        self.suite_path = tmp_path / "suite.yaml"
        if not self.suite_path.exists():
            self.suite_path.write_text(yaml.safe_dump(suite or three_tier_suite(ns)))
        data |= {"suite": str(self.suite_path), "web": {"listen": f"127.0.0.1:{self.port}"},
                 "schedule": {"interval_seconds": 3600, "jitter_seconds": 0, **(schedule or {})}}
        for key, value in extra.items():  # a section given here adds to the lab's (probe: {lease_seconds: ...})
            data[key] = data[key] | value if isinstance(value, dict) and isinstance(data.get(key), dict) else value
        self.db = data["store"]["url"]
        self.config = tmp_path / f"{name}.yaml"
        self.config.write_text(yaml.safe_dump(data))
        self.log_path = tmp_path / f"{name}.log"
        self._log = self.log_path.open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "monitor", "serve", "--config", str(self.config)],
                                     cwd=REPO, env=_env() | (env or {}), stdout=self._log,
                                     stderr=subprocess.STDOUT)

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return 0, ""

    def metric(self, name: str, **labels: str) -> float:
        _, text = self.get("/metrics")
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        key = f"{name}{{{want}}}" if labels else name
        for line in text.splitlines():
            if line.startswith(key + " "):
                return float(line.split()[-1])
        return 0.0

    def runs(self) -> list[RunSummary]:
        try:
            with Store.open(self.db) as store:
                return sorted(store.history("lab"), key=lambda r: r.started_at)
        except StoreError:  # not created yet
            return []

    def wait_runs(self, n: int, timeout: float = 90.0) -> list[RunSummary]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = self.runs()
            if len(runs) >= n:
                return runs
            assert self.proc.poll() is None, f"serve exited: {self.log[-3000:]}"
            time.sleep(0.2)
        raise AssertionError(f"{n} stored run(s) expected, have {len(self.runs())}: {self.log[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._log.close()


@pytest.fixture
def serve(lab: Lab, lab_namespace: str, tmp_path: Path):
    started: list[Serve] = []

    def start(**kw: Any) -> Serve:
        s = Serve(lab, tmp_path, lab_namespace, name=f"serve{len(started)}", **kw)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()
    assert probe_pods(lab) == [], "serve left probe pods behind"


def break_api_to_db(lab: Lab, ns: str) -> float:
    """Replaces db-from-api with a policy that lets nobody in: api-to-db drifts from connected to blocked."""
    lab.apply([netpol("db-from-api", {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress"],
                                      "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "nobody"}}}],
                                                   "ports": [{"port": 5432}]}]})], namespace=ns)
    return time.time()


# ------------------------------------------------------------------------------------------------ tests
def test_policy_edit_triggers_a_run_that_names_its_trigger(lab: Lab, lab_namespace: str, serve) -> None:
    ns = lab_namespace
    deploy_three_tier(lab, ns)
    s = serve()
    [first] = s.wait_runs(1)
    assert first.trigger == "startup"
    edited = break_api_to_db(lab, ns)
    runs = s.wait_runs(2, timeout=60)
    second = runs[1]
    assert second.trigger == "change" and second.trigger_detail == f"NetworkPolicy {ns}/db-from-api modified"
    # within debounce (3 s) + one run: no waiting for the hour-long interval
    took = time.time() - edited
    assert took < 3 + 30, took
    assert f"NetworkPolicy {ns}/db-from-api modified" in s.log
    # partial: batch-to-db has no source pod, so that case is skipped (never a verdict)
    assert s.metric("netpol_drift_runs_total", trigger="change", status="partial") == 1.0
    assert s.metric("netpol_drift_cases", state="skipped") == 1.0
    assert s.metric("netpol_drift_leader") == 1.0
    assert s.metric("netpol_drift_policies", kind="NetworkPolicy") >= 3


def test_a_burst_of_20_edits_in_2s_gives_one_run(lab: Lab, lab_namespace: str, serve) -> None:
    ns = lab_namespace
    deploy_three_tier(lab, ns)
    s = serve()
    s.wait_runs(1)
    began = time.monotonic()
    for i in range(20):
        lab.apply([netpol(f"burst-{i}", {"podSelector": {"matchLabels": {"app": f"none-{i}"}},
                                          "policyTypes": ["Ingress"]})], namespace=ns)
        time.sleep(max(0.0, began + (i + 1) * 0.1 - time.monotonic()))
    assert time.monotonic() - began < 2.5
    runs = s.wait_runs(2, timeout=60)
    time.sleep(3 + 5)  # debounce and then some: no trailing second change run
    runs = s.runs()
    assert [r.trigger for r in runs] == ["startup", "change"], [r.trigger for r in runs]


def test_watches_ended_by_the_server_resume_without_missing_a_change(lab: Lab, lab_namespace: str,
                                                                     serve) -> None:
    ns = lab_namespace
    deploy_three_tier(lab, ns)
    # The API server ends every watch after 1 s: each edit below lands around a resume.
    s = serve(schedule={"watch_timeout_seconds": 1, "debounce_seconds": 0.5}, log_level="DEBUG")
    s.wait_runs(1)
    for i in range(6):
        lab.apply([netpol(f"resume-{i}", {"podSelector": {"matchLabels": {"app": f"none-{i}"}},
                                          "policyTypes": ["Ingress"]})], namespace=ns)
        time.sleep(0.7)
    lab.api.merge_patch(f"/api/v1/namespaces/{ns}", {"metadata": {"labels": {"team": "resumed"}}})
    # Each change is logged as it is observed ("change: ...", also during a run, whose start line names only
    # three). The bound is generous: on a loaded machine a run can hold the watch threads' CPU for seconds,
    # and what is asserted is that no change is missed, not how fast it is seen.
    deadline = time.monotonic() + 60
    wanted = [f"change: NetworkPolicy {ns}/resume-{i} added" for i in range(6)] + [f"change: Namespace {ns} modified"]
    while time.monotonic() < deadline and not all(w in s.log for w in wanted):
        time.sleep(0.2)
    missing = [w for w in wanted if w not in s.log]
    assert missing == [], s.log[-4000:]
    assert s.log.count("watch NetworkPolicy:") == 0  # no watch error: the server's end is a normal resume


def test_two_replicas_never_probe_together_and_a_killed_leader_is_replaced(lab: Lab, lab_namespace: str,
                                                                           serve) -> None:
    ns = lab_namespace
    deploy_three_tier(lab, ns)
    # Runs back to back (every 2 s): a follower that probed would show up at once. Run Leases of 25 s: longer
    # than the takeover below (<= 18 s), so the new leader finds the dead one's pods still covered and must
    # come back for them when that Lease lapses.
    lease = 25
    a = serve(schedule={"interval_seconds": 2}, probe={"lease_seconds": lease})
    deadline = time.monotonic() + 30
    while a.metric("netpol_drift_leader") != 1.0:
        assert time.monotonic() < deadline, a.log[-2000:]
        time.sleep(0.2)
    b = serve(schedule={"interval_seconds": 2}, probe={"lease_seconds": lease})
    a.wait_runs(2)
    deadline = time.monotonic() + 15
    while b.get("/readyz")[0] != 200:  # a follower is ready: it serves metrics
        assert time.monotonic() < deadline, b.log[-2000:]
        time.sleep(0.2)
    time.sleep(8)
    assert b.metric("netpol_drift_leader") == 0.0 and "starting (trigger" not in b.log
    assert a.metric("netpol_drift_leader") == 1.0

    deadline = time.monotonic() + 30
    while not (left := {p["metadata"]["name"] for p in probe_pods(lab)}):  # kill a mid-run: it leaves pods
        assert time.monotonic() < deadline, a.log[-2000:]
        time.sleep(0.05)
    a.proc.kill()  # SIGKILL: no release, the Lease must run out
    killed = time.monotonic()
    while b.metric("netpol_drift_leader") != 1.0:
        assert time.monotonic() - killed < 30, b.log[-2000:]
        time.sleep(0.1)
    took = time.monotonic() - killed
    # One lease (15 s) after the last renewal, which was at most one retry period (2 s) before the kill, and
    # noticed at the next retry.
    assert took <= 15 + 2 + 1, took
    b_runs = len(b.runs())
    b.wait_runs(b_runs + 1)
    # Only the follower's (b) probe pods may exist from now on: a's are swept once their run Lease lapses
    # (the last renewal was at most lease/3 before the kill), not at some later leadership change.
    while left & {p["metadata"]["name"] for p in probe_pods(lab)}:
        assert time.monotonic() - killed < lease + 15, (sorted(left), b.log[-3000:])
        time.sleep(0.5)
    swept = time.monotonic() - killed
    assert "sweep deleted" in b.log
    print(f"killed leader replaced after {took:.1f}s, its {len(left)} probe pod(s) swept after {swept:.1f}s")


def test_sigterm_mid_run_leaves_no_probe_pods(lab: Lab, lab_namespace: str, serve) -> None:
    ns = lab_namespace
    deploy_three_tier(lab, ns)
    s = serve(schedule={"shutdown_grace_seconds": 0}, probe={"namespace": "netpol-drift", "timeout_seconds": 1.0,
                                                            "concurrency": 1, "run_deadline_seconds": 60})
    deadline = time.monotonic() + 60
    while not probe_pods(lab):
        assert time.monotonic() < deadline and s.proc.poll() is None, s.log[-2000:]
        time.sleep(0.02)
    began = time.monotonic()
    rc = s.stop()
    assert rc == 0, s.log[-2000:]
    assert probe_pods(lab) == []
    assert "aborting run" in s.log and "released Lease" in s.log
    assert time.monotonic() - began < 15


def test_an_invalid_suite_pushed_while_running_keeps_the_old_one(lab: Lab, lab_namespace: str, serve) -> None:
    ns = lab_namespace
    deploy_three_tier(lab, ns)
    s = serve(schedule={"reload_check_seconds": 0.5})
    [first] = s.wait_runs(1)
    s.suite_path.write_text("name: broken\ncases: [{name: x, from: {namespace: a}}]\n")
    deadline = time.monotonic() + 15
    while s.metric("netpol_drift_config_reload_errors_total") != 1.0:
        assert time.monotonic() < deadline, s.log[-2000:]
        time.sleep(0.2)
    assert s.log.count("reload rejected") == 1
    break_api_to_db(lab, ns)
    second = s.wait_runs(2)[1]
    assert second.trigger == "change" and second.suite_digest == first.suite_digest


@pytest.mark.postgres
def test_readyz_goes_unready_when_the_database_is_stopped(lab: Lab, lab_namespace: str, serve) -> None:
    from tests.postgres import PostgresServer

    pg = PostgresServer()
    pg.start()
    try:
        s = serve(store={"url": pg.url()})
        deadline = time.monotonic() + 60
        while s.get("/readyz")[0] != 200:
            assert time.monotonic() < deadline, s.get("/readyz")
            time.sleep(0.2)
    finally:
        pg.stop()
    deadline = time.monotonic() + 15
    while (got := s.get("/readyz"))[0] != 503:
        assert time.monotonic() < deadline, got
        time.sleep(0.2)
    checks = json.loads(got[1])["checks"]
    assert checks["store"]["ok"] is False and checks["api"]["ok"] is True and checks["scheduler"]["ok"] is True
    assert s.get("/healthz")[0] == 200  # alive: a database outage is no reason to restart the pod

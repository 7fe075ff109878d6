"""`serve` without a cluster: metrics, the HTTP app on a real socket, debounce, reload and readiness.

The service here talks to a real ClusterAdapter pointed at a closed local port (so every run fails fast as
`failed`, which is what the scheduling tests need: they count runs and read their triggers through the
after-run hook), a real SQLite store, a real uvicorn. What needs an API server (probing, watches, the Lease,
SIGTERM mid-run) is in tests/test_service_lab.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from monitor.metrics import Metrics
from monitor.service import Check, RunClock, RunOutcome, Service
from monitor.settings import load_settings
from monitor.suite import parse_suite, suite_namespaces
from monitor.web import WebServer, create_app

REPO = Path(__file__).resolve().parents[1]
SUITE = REPO / "config" / "examples" / "shop" / "suite.yaml"

ISSUE_METRICS = {
    "netpol_drift_runs_total", "netpol_drift_run_duration_seconds", "netpol_drift_last_run_timestamp_seconds",
    "netpol_drift_cases", "netpol_drift_drift_open", "netpol_drift_probe_outcomes_total",
    "netpol_drift_probe_pods_running", "netpol_drift_policies", "netpol_drift_api_errors_total",
    "netpol_drift_leader", "netpol_drift_config_reload_errors_total",
    # issue 12 (Slack alerts)
    "netpol_drift_alerts_total", "netpol_drift_alert_queue_depth", "netpol_drift_alert_oldest_queued_seconds",
    # issue 15 (reliability: APF throttling, watches answered 410 Gone, the database unavailable)
    "netpol_drift_api_throttled_total", "netpol_drift_watch_relists_total",
    "netpol_drift_store_errors_total", "netpol_drift_runs_held",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read().decode()


def families(text: str) -> set[str]:
    return {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}


def sample(text: str, name: str, **labels: str) -> float | None:
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    key = f"{name}{{{want}}}" if labels else name
    for line in text.splitlines():
        if line.startswith(key + " "):
            return float(line.split()[-1])
    return None


# -------------------------------------------------------------------------------------------------- metrics
def test_metrics_have_exactly_the_issue_names_and_each_service_its_own_registry():
    a, b = Metrics(), Metrics()
    text = a.render()
    exported = {f + "_total" if f"{f}_total" in text and not f.endswith("_total") else f for f in families(text)}
    assert exported == ISSUE_METRICS
    a.run_finished("change", "ok", 4.2, 1_700_000_000.0)
    a.api_error("watch")
    assert sample(a.render(), "netpol_drift_runs_total", trigger="change", status="ok") == 1.0
    assert sample(a.render(), "netpol_drift_api_errors_total", verb="watch") == 1.0
    a.api_throttled_call("create")
    a.watch_relisted("NetworkPolicy")
    assert sample(a.render(), "netpol_drift_api_throttled_total", verb="create") == 1.0
    assert sample(a.render(), "netpol_drift_watch_relists_total", kind="NetworkPolicy") == 1.0
    # What the alert sender reports through monitor.alert.AlertMetrics.
    a.alert_result("slack", "sent")
    a.alert_queue(3, 42.0)
    assert sample(a.render(), "netpol_drift_alerts_total", channel="slack", result="sent") == 1.0
    assert sample(a.render(), "netpol_drift_alert_queue_depth") == 3.0
    assert sample(a.render(), "netpol_drift_alert_oldest_queued_seconds") == 42.0
    assert sample(b.render(), "netpol_drift_runs_total", trigger="change", status="ok") is None
    # Case states exist at 0 before any run: an absent series must never read as "all fine".
    assert sample(b.render(), "netpol_drift_cases", state="fail") == 0.0


# ------------------------------------------------------------------------------------------------------ web
class FixedHealth:
    def __init__(self) -> None:
        self.checks = [Check("scheduler", True), Check("store", True, "schema 0001"), Check("api", True, "v1.33")]

    def alive(self) -> bool:
        return True

    def readiness(self) -> list[Check]:
        return self.checks


def test_web_serves_healthz_readyz_and_metrics_on_one_port():
    health, metrics = FixedHealth(), Metrics()
    metrics.set_leader(True)
    web = WebServer(create_app(health, metrics.asgi_app()), f"127.0.0.1:{free_port()}")
    web.start()
    try:
        base = f"http://127.0.0.1:{web.port}"
        assert get(base + "/healthz")[::2] == (200, "ok\n")
        status, _, body = get(base + "/readyz")
        assert status == 200 and json.loads(body)["checks"]["store"] == {"ok": True, "detail": "schema 0001"}
        health.checks[1] = Check("store", False, "cannot reach database")
        status, _, body = get(base + "/readyz")
        assert status == 503 and json.loads(body)["ready"] is False
        status, ctype, body = get(base + "/metrics")  # no redirect to /metrics/
        assert status == 200 and ctype.startswith("text/plain") and sample(body, "netpol_drift_leader") == 1.0
    finally:
        web.stop()


# ---------------------------------------------------------------------------------------------- the service
def write_config(tmp_path: Path, server: str | None = None, probe: dict | None = None,
                 cluster: dict | None = None, **schedule: float) -> Path:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": server or f"http://127.0.0.1:{free_port()}"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}]}))
    suite = tmp_path / "suite.yaml"
    suite.write_text(SUITE.read_text())
    cfg = tmp_path / "netpol-drift.yaml"
    cfg.write_text(yaml.safe_dump({
        "cluster": {"name": "unit", "kubeconfig": str(kubeconfig), "retries": 0, "request_timeout_seconds": 1,
                    **(cluster or {})},
        "probe": probe or {},
        "suite": str(suite), "store": {"url": f"sqlite:///{tmp_path / 'h.db'}"}, "leader": {"enabled": False},
        "schedule": {"interval_seconds": 3600, "jitter_seconds": 0, "reload_check_seconds": 0.2, **schedule}}))
    return cfg


class Runs:
    """Collects RunOutcomes from the after-run hook."""

    def __init__(self) -> None:
        self.items: list[RunOutcome] = []
        self.cond = threading.Condition()

    def __call__(self, outcome: RunOutcome) -> None:
        with self.cond:
            self.items.append(outcome)
            self.cond.notify_all()

    def wait(self, n: int, timeout: float = 20.0) -> list[RunOutcome]:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.items) >= n, timeout), self.items
            return list(self.items)


@pytest.fixture
def service_of(tmp_path):
    from monitor.cluster import ClusterAdapter

    started: list[Service] = []

    def make(cfg: Path) -> tuple[Service, Runs]:
        settings = load_settings(cfg, env={})
        svc = Service(settings, config_path=str(cfg), metrics=Metrics(),
                      connect=lambda: ClusterAdapter.connect(settings.cluster))
        runs = Runs()
        svc.after_run.append(runs)
        svc.start()
        started.append(svc)
        return svc, runs

    yield make
    for svc in started:
        svc.stop()


def test_a_burst_of_changes_gives_one_run_that_names_the_change(tmp_path, service_of):
    svc, runs = service_of(write_config(tmp_path, debounce_seconds=0.5, debounce_max_seconds=10))
    [first] = runs.wait(1)
    assert first.trigger == "startup"
    for i in range(20):  # 20 edits in 2 s, each inside the quiet period of the one before
        svc.changed(f"NetworkPolicy shop/p{i} modified")
        time.sleep(0.1)
    second = runs.wait(2)[1]
    time.sleep(1.5)  # no further run trails it
    assert len(runs.items) == 2
    assert second.trigger == "change" and second.cause.startswith("NetworkPolicy shop/p0 modified, ")
    assert second.cause.endswith("(+17 more)")
    # The run itself failed (no API server here) and says so, in the log line and the metric.
    assert second.status == "failed" and "unreachable" in second.error
    assert sample(svc.metrics.render(), "netpol_drift_runs_total", trigger="change", status="failed") == 1.0


def test_only_the_leader_migrates_the_store_and_does_so_at_start_up(tmp_path, service_of):
    """Several replicas, one database: a replica that has not won the Lease (here: no API server to hold one)
    never opens the store, so it never migrates it; the leader brings it to the newest schema before its first
    run, even when that run then fails (no cluster here)."""
    from monitor.store import SCHEMA_REVISION, current_revision

    follower, leader = tmp_path / "follower", tmp_path / "leader"
    follower.mkdir()
    leader.mkdir()
    cfg = write_config(follower)
    settings = yaml.safe_load(cfg.read_text())
    cfg.write_text(yaml.safe_dump({**settings, "leader": {"enabled": True, "retry_seconds": 0.2}}))
    follower_svc, runs = service_of(cfg)
    time.sleep(2)
    assert sample(follower_svc.metrics.render(), "netpol_drift_leader") == 0.0
    assert runs.items == [] and not (follower / "h.db").exists()
    _, runs = service_of(write_config(leader))  # leader.enabled false: the one replica leads
    [first] = runs.wait(1)
    assert first.status == "failed"
    assert current_revision(f"sqlite:///{leader / 'h.db'}") == SCHEMA_REVISION


def test_constant_churn_cannot_starve_the_run(tmp_path, service_of):
    svc, runs = service_of(write_config(tmp_path, debounce_seconds=1.0, debounce_max_seconds=1.5))
    runs.wait(1)
    began = time.monotonic()
    while len(runs.items) < 2 and time.monotonic() - began < 6:
        svc.changed("Pod shop/api-1 modified")  # never a quiet second
        time.sleep(0.2)
    assert len(runs.items) == 2 and runs.items[1].trigger == "change"
    assert time.monotonic() - began < 4.0  # the cap (1.5 s) plus one failing run, not "when the churn stops"


def test_an_invalid_suite_is_rejected_and_the_old_one_keeps_running(tmp_path, service_of):
    svc, runs = service_of(write_config(tmp_path))
    runs.wait(1)
    old = svc.suite
    (tmp_path / "suite.yaml").write_text("name: broken\ncases:\n  - name: x\n    from: {namespace: a}\n")
    deadline = time.monotonic() + 5
    while sample(svc.metrics.render(), "netpol_drift_config_reload_errors_total") != 1.0:
        assert time.monotonic() < deadline, "the bad suite was not noticed"
        time.sleep(0.1)
    assert svc.suite is old
    time.sleep(0.6)  # rejected once, not on every check
    assert sample(svc.metrics.render(), "netpol_drift_config_reload_errors_total") == 1.0

    good = yaml.safe_load(SUITE.read_text())
    good["name"] = "shop-v2"
    (tmp_path / "suite.yaml").write_text(yaml.safe_dump(good))
    deadline = time.monotonic() + 5
    while svc.suite.name != "shop-v2":
        assert time.monotonic() < deadline, "the fixed suite was not taken"
        time.sleep(0.1)


def test_a_configmap_symlink_swap_is_reloaded(tmp_path, service_of):
    # How the kubelet updates a mounted ConfigMap: files point through `..data`, a symlink swapped atomically.
    mount = tmp_path / "mount"
    (mount / "v1").mkdir(parents=True)
    (mount / "v1" / "suite.yaml").write_text(SUITE.read_text())
    (mount / "..data").symlink_to("v1")
    (mount / "suite.yaml").symlink_to("..data/suite.yaml")
    cfg = write_config(tmp_path)
    data = yaml.safe_load(cfg.read_text())
    data["suite"] = str(mount / "suite.yaml")
    cfg.write_text(yaml.safe_dump(data))
    svc, runs = service_of(cfg)
    runs.wait(1)
    changed = yaml.safe_load(SUITE.read_text())
    changed["cases"] = changed["cases"][:2]
    (mount / "v2").mkdir()
    (mount / "v2" / "suite.yaml").write_text(yaml.safe_dump(changed))
    (mount / "..data_tmp").symlink_to("v2")
    (mount / "..data_tmp").replace(mount / "..data")
    deadline = time.monotonic() + 5
    while len(svc.suite.cases) != 2:
        assert time.monotonic() < deadline, "the swapped ConfigMap was not reloaded"
        time.sleep(0.1)


def test_restart_only_settings_are_kept_on_reload(tmp_path, service_of, caplog):
    cfg = write_config(tmp_path)
    svc, runs = service_of(cfg)
    runs.wait(1)
    data = yaml.safe_load(cfg.read_text())
    data["web"] = {"listen": "127.0.0.1:9999"}
    data["drift"] = {"confirmations": 3}
    cfg.write_text(yaml.safe_dump(data))
    deadline = time.monotonic() + 5
    while svc.settings.drift.confirmations != 3:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert svc.settings.web.listen == "0.0.0.0:8080"
    assert "web changed but take effect only after a restart" in caplog.text


def test_readiness_names_what_is_not_ready(tmp_path, service_of):
    svc, runs = service_of(write_config(tmp_path))
    runs.wait(1)  # the leader's first run created the SQLite store
    checks = {c.name: c for c in svc.readiness()}
    assert checks["scheduler"].ok and checks["store"].ok
    assert not checks["api"].ok and "unreachable" in checks["api"].detail
    svc.stop()
    assert not {c.name: c for c in svc.readiness()}["scheduler"].ok


@pytest.fixture
def black_hole():
    """An API server that accepts connections and never answers: a run that hangs in its first call."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(64)
        yield f"http://127.0.0.1:{s.getsockname()[1]}"


def test_a_hung_run_is_cut_at_the_deadline_and_the_next_one_runs(tmp_path, service_of, black_hole):
    cfg = write_config(tmp_path, server=black_hole, probe={"run_deadline_seconds": 1},
                       cluster={"request_timeout_seconds": 30}, debounce_seconds=0.1)
    svc, runs = service_of(cfg)
    # Probing stops at 1 s, the hung run is cut 1 s later; the abort then tries to delete its probe pods on the
    # same hung API for at most 10 s.
    [first] = runs.wait(1, timeout=20)
    assert first.status == "timeout" and 2.0 <= first.seconds < 2 + 10 + 1
    svc.changed("NetworkPolicy a/b modified")
    second = runs.wait(2, timeout=20)[1]  # not blocked by the hung first run
    assert second.trigger == "change" and second.status == "timeout"
    assert sample(svc.metrics.render(), "netpol_drift_runs_total", trigger="startup", status="timeout") == 1.0


def test_stop_lets_a_run_finish_within_the_grace_then_aborts_it(tmp_path, service_of, black_hole):
    cfg = write_config(tmp_path, server=black_hole, probe={"run_deadline_seconds": 300},
                       cluster={"request_timeout_seconds": 60}, shutdown_grace_seconds=1)
    svc, runs = service_of(cfg)
    time.sleep(0.5)  # the first run is now hanging in its first API call
    began = time.monotonic()
    svc.stop()
    [outcome] = runs.wait(1, timeout=15)
    assert outcome.status == "aborted"
    assert time.monotonic() - began < 1 + 10 + 2  # grace, then at most the abort's wait for the worker


def test_aborted_run_clock_has_passed_every_deadline():
    clock = RunClock(lambda: 100.0)
    deadline = clock() + 300
    clock.abort()
    assert clock() >= deadline and clock() >= clock() + 300  # also a deadline computed after the abort


def test_suite_namespaces_are_those_its_cases_name():
    suite = parse_suite(yaml.safe_load(SUITE.read_text()))
    assert suite_namespaces(suite) == frozenset({"shop", "monitoring", "payments"})
    wide = parse_suite({"name": "w", "cases": [{"name": "c", "from": {"namespaceSelector": {}},
                                                "to": {"namespace": "a", "workload": "x"}, "port": 80,
                                                "expect": "allow"}]})
    assert suite_namespaces(wide) is None


def test_serve_refuses_a_slack_token_without_a_channel_before_it_connects(tmp_path):
    """A target that cannot work is a config error at start-up (one line, exit 2), not after the first drift;
    the cluster in the config is never contacted (it does not exist) and the token is never printed."""
    config = tmp_path / "netpol-drift.yaml"
    config.write_text(yaml.safe_dump({"suite": str(SUITE), "cluster": {"kubeconfig": str(tmp_path / "none")}}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETPOL_DRIFT_")}
    proc = subprocess.run([sys.executable, "-m", "monitor", "serve", "--config", str(config)], capture_output=True,
                          text=True, timeout=60, env=env | {"NETPOL_DRIFT_SLACK_TOKEN": "xoxb-never-shown"})
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.splitlines()[-1] == ("netpol-drift: error: NETPOL_DRIFT_SLACK_TOKEN is set but "
                                            "slack.channel is not: set the channel to post to")
    assert "xoxb-never-shown" not in proc.stdout + proc.stderr


class ScriptedWatch:
    """The watch side of the cluster adapter, scripted: each list/watch call takes the next step (a result, or
    an error to raise); after the script, watches wait until the service stops. Our own boundary: the real
    410s are in tests/test_reliability_api_lab.py."""

    def __init__(self, lists: list, watches: list, stopping: threading.Event, pings: list | None = None) -> None:
        self.lists, self.watches, self.stopping, self.pings = lists, watches, stopping, pings or []
        self.on_api_error = self.on_api_throttled = lambda verb: None

    def ping(self) -> str:
        step = self.pings.pop(0) if self.pings else "v1.36.3"
        if isinstance(step, Exception):
            raise step
        return step

    def list_fingerprints(self, kind: str):
        step = self.lists.pop(0)
        if isinstance(step, Exception):
            raise step
        return step

    def watch_changes(self, kind: str, timeout: float, version: str):
        if not self.watches:
            self.stopping.wait()
            return
        step = self.watches.pop(0)
        if isinstance(step, Exception):
            raise step
        yield from step

    def probe_pods_alive(self) -> int:
        return 0

    def close(self) -> None:
        return None


def watching(settings, watch: ScriptedWatch, stopping: threading.Event) -> tuple[Service, list[str], threading.Thread]:
    """A leading service whose NetworkPolicy watch loop runs on the scripted adapter; the changes it reports."""
    svc = Service(settings, config_path=None, metrics=Metrics(), connect=lambda: watch)
    svc._leading = True
    seen: list[str] = []
    svc.changed = seen.append
    svc._stopping = stopping
    assert svc._history_only_because()[0] is None
    t = threading.Thread(target=svc._watch_loop, args=("NetworkPolicy",), daemon=True)
    t.start()
    return svc, seen, t


def test_a_410_whose_relist_fails_too_keeps_the_watch_and_reports_the_change_in_the_gap(tmp_path):
    from monitor.cluster import ClusterConflictError, ClusterUnavailableError

    settings = load_settings(write_config(tmp_path), env={})
    stopping = threading.Event()
    watch = ScriptedWatch(
        lists=[({("shop", "a"): "f1"}, "10"),
               ClusterUnavailableError("list NetworkPolicy: API server unreachable"),  # still coming back
               ({("shop", "a"): "f2", ("shop", "b"): "f3"}, "20")],
        watches=[ClusterConflictError("watch NetworkPolicy: resource version too old (410 Gone): re-list")],
        stopping=stopping)
    svc, seen, t = watching(settings, watch, stopping)
    deadline = time.monotonic() + 10
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert t.is_alive(), "the watch thread died on the failed re-list"
    assert sorted(seen) == ["NetworkPolicy shop/a modified", "NetworkPolicy shop/b modified"]
    assert sample(svc.metrics.render(), "netpol_drift_watch_relists_total", kind="NetworkPolicy") == 1.0
    stopping.set()
    t.join(5)
    assert not t.is_alive()


def test_runs_right_after_the_api_server_was_unreachable_are_history_only_until_the_cni_agents_resync(tmp_path):
    from monitor.cluster import ClusterConflictError, ClusterForbiddenError, ClusterUnreachableError

    settings = load_settings(write_config(tmp_path), env={})
    stopping = threading.Event()
    refused = "API server https://10.0.0.1:6443: connection refused"
    watch = ScriptedWatch(
        lists=[({("shop", "a"): "f1"}, "10"), ({("shop", "a"): "f2"}, "20")],  # a policy changed in the gap
        watches=[ClusterUnreachableError(f"watch NetworkPolicy: {refused}"),  # gone...
                 ClusterConflictError("watch NetworkPolicy: resource version too old (410 Gone): re-list")],
        # ...still away, then back: a 403 (its RBAC cache still filling) is an answer too
        pings=[ClusterUnreachableError(f"get version: {refused}"), ClusterForbiddenError("get version: HTTP 403")],
        stopping=stopping)
    svc, seen, t = watching(settings, watch, stopping)
    try:
        deadline = time.monotonic() + 10
        while svc._api_lost_at is None and time.monotonic() < deadline:
            time.sleep(0.02)
        why, _ = svc._history_only_because()
        assert why is not None and why.startswith("the API server has been unreachable since ")
        while not seen and time.monotonic() < deadline:
            time.sleep(0.05)
        # Back: the watch resumed (410 Gone: re-listed, and found the change in the gap)...
        assert seen == ["NetworkPolicy shop/a modified"]
        back = time.monotonic()
        why, judged_from = svc._history_only_because()
        # ...and runs stay history only for hold_after_api_outage_seconds after that answer.
        assert why is not None and why.startswith("the API server answered again at ") \
            and "(drift.hold_after_api_outage_seconds)" in why
        hold = settings.drift.hold_after_api_outage_seconds
        assert back + hold - 1 < judged_from <= back + hold
        # A run that began before the hold was over is history only however late it ends; one after is judged.
        assert svc._history_only_because(since=judged_from - 0.5)[0] == why
        svc._api_back_at = time.monotonic() - hold - 1  # the hold is over
        assert svc._history_only_because()[0] is None
        assert svc._history_only_because(since=time.monotonic() - hold - 2)[0] is not None
    finally:
        stopping.set()
        t.join(5)


def test_no_hold_after_an_api_outage_when_it_is_set_to_zero(tmp_path):
    cfg = write_config(tmp_path)
    data = yaml.safe_load(cfg.read_text())
    data["drift"] = {"hold_after_api_outage_seconds": 0}
    cfg.write_text(yaml.safe_dump(data))
    settings = load_settings(cfg, env={})
    svc = Service(settings, config_path=None, metrics=Metrics(),
                  connect=lambda: ScriptedWatch([], [], threading.Event()))
    svc._api_unreachable()
    assert svc._history_only_because()[0] is None
    svc._api_reached()
    assert svc._history_only_because()[0] is None

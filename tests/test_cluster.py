"""The cluster adapter's error handling against real local sockets: a kubeconfig that cannot be loaded, a port
nobody listens on, a server that never answers (timeout), and a plain-HTTP stand-in API server that fails
with 503 before it answers (retries with backoff) or answers 401 (no retry, our own error type)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
import yaml

from monitor.cluster import (
    PROBE_LABEL,
    ClusterAdapter,
    ClusterConfigError,
    ClusterForbiddenError,
    ClusterThrottledError,
    ClusterUnavailableError,
    ClusterUnreachableError,
)
from monitor.errors import ClusterError
from monitor.settings import ClusterSettings
from tests.standins import JsonHandler, StandInServer, free_port, kubeconfig


class StandIn(JsonHandler):
    """Answers GET /api/v1/namespaces: first `failures` times with `status`, then with one namespace."""

    failures = 0
    status = 503
    retry_after: str | None = None  # sent with each failure, as API Priority and Fairness does with its 429s
    calls: list[float]

    def do_POST(self) -> None:  # as a create refused by admission (a full ResourceQuota: 403)
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.do_GET()

    def do_GET(self) -> None:
        self.calls.append(time.monotonic())
        if len(self.calls) <= self.failures:
            self.send_json(self.status, {"kind": "Status", "code": self.status, "message": "stand-in says no"},
                           {"Retry-After": self.retry_after} if self.retry_after else None)
        else:
            self.send_json(200, {"kind": "NamespaceList", "apiVersion": "v1", "metadata": {},
                                 "items": [{"metadata": {"name": "shop", "labels": {"team": "a"}}}]})


@pytest.fixture
def stand_in():
    servers = []

    def start(failures: int, status: int = 503, retry_after: str | None = None) -> tuple[str, list[float]]:
        calls: list[float] = []
        servers.append(StandInServer(StandIn, failures=failures, status=status, retry_after=retry_after,
                                     calls=calls))
        return servers[-1].url, calls

    yield start
    for s in servers:
        s.stop()


def test_missing_kubeconfig_is_a_config_error(tmp_path):
    with pytest.raises(ClusterConfigError, match=r"cannot load cluster credentials from .*nope"):
        ClusterAdapter.connect(ClusterSettings(), kubeconfig=str(tmp_path / "nope"))


def test_unknown_context_is_a_config_error(tmp_path):
    with pytest.raises(ClusterConfigError, match="context staging"):
        ClusterAdapter.connect(ClusterSettings(), kubeconfig=str(kubeconfig(tmp_path, "http://127.0.0.1:1")),
                               context="staging")


def test_refused_connection_is_retried_then_unavailable(tmp_path):
    port = free_port()  # a port nobody listens on: connect is refused at once
    settings = ClusterSettings(retries=2, request_timeout_seconds=2)
    adapter = ClusterAdapter.connect(settings, kubeconfig=str(kubeconfig(tmp_path, f"http://127.0.0.1:{port}")))
    started = time.monotonic()
    with pytest.raises(ClusterUnavailableError, match="unreachable after 3 attempts") as e:
        adapter.list_namespaces()
    elapsed = time.monotonic() - started
    assert 0.55 < elapsed < 3  # backoff 0.2 s + 0.4 s between the three attempts
    assert e.value.__cause__ is not None  # raised from the client's error
    # No answer at all (serve holds its judgement after it: every watch, the CNI agents' too, broke), for a
    # watch as for a call.
    assert isinstance(e.value, ClusterUnreachableError)
    with pytest.raises(ClusterUnreachableError):
        list(adapter.watch_changes("NetworkPolicy", 1, "1"))


def test_every_call_has_a_timeout(tmp_path):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts (in the kernel) and never answers
    try:
        settings = ClusterSettings(retries=0, request_timeout_seconds=0.5)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        adapter = ClusterAdapter.connect(settings, kubeconfig=str(kubeconfig(tmp_path, url)))
        started = time.monotonic()
        with pytest.raises(ClusterUnavailableError) as e:
            adapter.list_pods()
        assert time.monotonic() - started < 2.5
        assert not isinstance(e.value, ClusterUnreachableError)  # it answers, late: slow, not gone
    finally:
        silent.close()


def test_transient_503_is_retried_with_backoff(tmp_path, stand_in):
    url, calls = stand_in(failures=2, status=503)
    adapter = ClusterAdapter.connect(ClusterSettings(retries=3), kubeconfig=str(kubeconfig(tmp_path, url)))
    [ns] = adapter.list_namespaces()
    assert ns.name == "shop" and dict(ns.labels) == {"team": "a"}
    assert len(calls) == 3
    assert calls[1] - calls[0] >= 0.19 and calls[2] - calls[1] >= 0.39  # exponential backoff


def test_unauthorized_is_not_retried_and_says_so(tmp_path, stand_in):
    url, calls = stand_in(failures=10, status=401)
    adapter = ClusterAdapter.connect(ClusterSettings(retries=3), kubeconfig=str(kubeconfig(tmp_path, url)))
    with pytest.raises(ClusterForbiddenError, match="list namespaces: HTTP 401: stand-in says no"):
        adapter.list_namespaces()
    assert len(calls) == 1
    assert issubclass(ClusterForbiddenError, ClusterError)


def test_a_probe_pod_rejected_by_admission_is_not_counted_as_alive(tmp_path, stand_in):
    """Issue 15 item 2: a create refused by admission (a full ResourceQuota answers 403) made no pod;
    netpol_drift_probe_pods_running must not keep counting it for the rest of the process."""
    url, _ = stand_in(failures=10, status=403)
    adapter = ClusterAdapter.connect(ClusterSettings(retries=2), kubeconfig=str(kubeconfig(tmp_path, url)))
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "p", "namespace": "shop", "labels": {PROBE_LABEL: "true"}}, "spec": {"containers": []}}
    with pytest.raises(ClusterForbiddenError, match="create pod shop/p: HTTP 403: stand-in says no"):
        adapter.create_pod(manifest)
    assert adapter.probe_pods_alive() == 0


def test_a_429_is_retried_after_its_retry_after_and_a_throttled_create_makes_no_live_pod(tmp_path, stand_in):
    """Issue 15 item 1: API Priority and Fairness answers 429 with Retry-After; the retry waits for it, every
    attempt is counted as failed and throttled, and a create the server kept throttling is ClusterThrottledError
    (still a ClusterUnavailableError: a later try may work) that counts as no live probe pod."""
    url, calls = stand_in(failures=10, status=429, retry_after="1")
    adapter = ClusterAdapter.connect(ClusterSettings(retries=1), kubeconfig=str(kubeconfig(tmp_path, url)))
    errors, throttled = [], []
    adapter.on_api_error, adapter.on_api_throttled = errors.append, throttled.append
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {
        "name": "p", "namespace": "shop", "labels": {PROBE_LABEL: "true"}}, "spec": {"containers": []}}
    with pytest.raises(ClusterThrottledError, match="create pod shop/p: HTTP 429: stand-in says no"):
        adapter.create_pod(manifest)
    assert issubclass(ClusterThrottledError, ClusterUnavailableError)
    assert len(calls) == 2 and calls[1] - calls[0] >= 0.99  # Retry-After: 1, not the 0.2 s backoff
    assert errors == throttled == ["create", "create"]
    assert adapter.probe_pods_alive() == 0


def test_a_retry_that_would_wait_past_the_callers_deadline_is_not_made(tmp_path, stand_in):
    """A throttling server must not hold a run past its deadline: with 2 s left and Retry-After 10, the call
    fails at once instead of sleeping (the probe runner then skips the pod's flows)."""
    url, calls = stand_in(failures=10, status=429, retry_after="10")
    adapter = ClusterAdapter.connect(ClusterSettings(retries=3), kubeconfig=str(kubeconfig(tmp_path, url)))
    manifest = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "shop"},
                "spec": {"containers": []}}
    started = time.monotonic()
    with pytest.raises(ClusterThrottledError):
        adapter.create_pod(manifest, time_left=lambda: 2.0)
    assert len(calls) == 1 and time.monotonic() - started < 1.0
    # Time enough for a retry: it is made (and waits for the server's Retry-After).
    url, calls = stand_in(failures=1, status=429, retry_after="1")
    adapter = ClusterAdapter.connect(ClusterSettings(retries=3), kubeconfig=str(kubeconfig(tmp_path, url)))
    adapter.create_pod(manifest, time_left=lambda: 5.0)
    assert len(calls) == 2 and calls[1] - calls[0] >= 0.99


def test_cli_reports_an_unreachable_cluster_in_one_line(tmp_path):
    import subprocess
    import sys

    port = free_port()
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({"cases": [{"name": "a", "from": {"namespace": "x", "pod": "a"},
                                                "to": {"namespace": "x", "pod": "b"}, "port": 80,
                                                "expect": "allow"}]}))
    config = tmp_path / "c.yaml"
    # A store of its own: the default (netpol-drift.db in the working directory) would land in the repo.
    config.write_text(yaml.safe_dump({"cluster": {"retries": 0}, "store": {"url": f"sqlite:///{tmp_path / 'h.db'}"}}))
    proc = subprocess.run([sys.executable, "-m", "monitor", "--config", str(config), "run", "--once", "--suite",
                           str(suite), "--kubeconfig", str(kubeconfig(tmp_path, f"http://127.0.0.1:{port}"))],
                          capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith("netpol-drift: error: ") and "unreachable" in lines[-1]
    assert "Traceback" not in proc.stderr


class ProbePodList(JsonHandler):
    """Answers every GET with the probe pods given (a pod list, as the API server sends it)."""

    pods: list

    def do_GET(self) -> None:
        self.send_json(200, {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "7"},
                             "items": self.pods})


def _pending(name: str, **condition: str) -> dict:
    return {"metadata": {"name": name, "namespace": "shop", "labels": {PROBE_LABEL: "true"}}, "spec": {},
            "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", **condition}]}}


def test_a_probe_pod_the_scheduler_cannot_place_carries_the_schedulers_words(tmp_path):
    """Issue 15 item 2: PodScheduled=False is read from the pod's status inside the adapter; what leaves it is
    the scheduler's message (its reason too, when that is not plain Unschedulable), never the V1Pod."""
    message = ("0/2 nodes are available: 2 node(s) were unschedulable. preemption: 0/2 nodes are available: "
               "2 Preemption is not helpful for scheduling.")
    gated = "Scheduling is blocked due to non-empty scheduling gates"
    pods = [_pending("cordoned", reason="Unschedulable", message=message),
            _pending("gated", reason="SchedulingGated", message=gated),
            _pending("bare", reason="Unschedulable"),
            {**_pending("placed"), "status": {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "True"}]}}]
    with StandInServer(ProbePodList, pods=pods) as server:
        adapter = ClusterAdapter.connect(ClusterSettings(retries=1), kubeconfig=str(kubeconfig(tmp_path, server.url)))
        states, version = adapter.list_probe_pods(f"{PROBE_LABEL}=true")
    got = {s.name: s.unschedulable for s in states}
    assert version == "7"
    assert got == {"cordoned": message,
                   "gated": f"SchedulingGated: {gated}",
                   "bare": "Unschedulable", "placed": None}
    assert all(s.phase == "Pending" and not s.finished for s in states)

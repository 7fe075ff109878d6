"""Reliability (issue 15, docs/RELIABILITY.md sections 1 and 6): `netpol-drift serve` as a subprocess on the lab
while its control plane fails under it: etcd restarted mid-run, kube-apiserver stopped mid-run and started again,
watches answered 410 Gone, API answers slow and slower than the request timeout, the monitor's pod creations
throttled by API Priority and Fairness (real 429s); and the service itself SIGKILLed mid-run and mid-alert.

Every test asserts the same contract: no false drift alert (the Slack stand-in gets nothing, no drift event is
opened, unless the test made a real change), no lost alert (a real change made across the fault reaches Slack
exactly once), no orphaned probe pod (while serve still runs, and after it), the service keeps running or
restarts cleanly, and the metric that tells an operator about the fault moves. Each prints what it measured
(the numbers in docs/RELIABILITY.md); run with `-s` to see them.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.settings import DriftSettings
from monitor.store import Store
from tests.lab import control, netns
from tests.lab.fixtures import Lab, pod_manifest
from tests.lab.rest import ApiError, Rest
from tests.slack_standin import TOKEN, SlackStandin
from tests.test_alert_lab import top_level, wait_for
from tests.test_live_history_lab import suite_of
from tests.test_live_lab import deploy_three_tier, probe_pods
from tests.test_service_lab import Serve, break_api_to_db

pytestmark = pytest.mark.lab

CASES = ("api-to-db", "frontend-to-api", "frontend-to-db-denied")
# Short Leases so a restart or a takeover costs seconds, not the production defaults' minute.
FAST = {"schedule": {"interval_seconds": 6, "debounce_seconds": 1, "shutdown_grace_seconds": 0},
        "leader": {"lease_seconds": 8, "renew_deadline_seconds": 5, "retry_seconds": 1},
        "probe": {"lease_seconds": 12}}


@pytest.fixture
def slack() -> Iterator[SlackStandin]:
    with SlackStandin() as standin:
        yield standin


@pytest.fixture
def start(lab: Lab, lab_namespace: str, tmp_path: Path, slack: SlackStandin) -> Iterator[Callable[..., Serve]]:
    """Starts `serve` (bot token, the stand-in, the fast settings above, one SQLite file per test: a second start
    is the same service restarted); every one is stopped at the end, and no probe pod may be left."""
    started: list[Serve] = []

    def run(**extra: Any) -> Serve:
        settings = {k: v | extra.pop(k, {}) for k, v in FAST.items()} | extra
        s = Serve(lab, tmp_path, lab_namespace, name=f"serve{len(started)}", suite=suite_of(lab_namespace, *CASES),
                  env={"NETPOL_DRIFT_SLACK_TOKEN": TOKEN},
                  slack={"channel": "#netpol-alerts", "base_url": slack.base_url}, **settings)
        started.append(s)
        return s

    yield run
    for s in started:
        s.stop()  # also closes its log (a SIGKILLed one too)
    assert probe_pods(lab) == [], "serve left probe pods behind"


def metric_sum(s: Serve, name: str, **labels: str) -> float:
    """The sum of a metric over all its series (those with the given labels)."""
    _, text = s.get("/metrics")
    total = 0.0
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.split()[-1])
    return total


def drift_events(s: Serve) -> list:
    with Store.open(s.db) as store:
        return [e for e in store.events("lab") if e.kind == "drift"]


def mid_run_pods(lab: Lab, s: Serve, timeout: float = 60.0) -> set[str]:
    """Waits until a run of `s` has probe pods and returns their names (the fault goes in now)."""
    return wait_for(lambda: {p["metadata"]["name"] for p in probe_pods(lab)}, "probe pods (a run under way)", s,
                    timeout)


def wait_gone(lab: Lab, s: Serve, names: set[str], timeout: float) -> float:
    """Seconds until none of these probe pods exists any more, while serve keeps running."""
    began = time.monotonic()
    wait_for(lambda: not names & {p["metadata"]["name"] for p in probe_pods(lab)}, f"probe pods {sorted(names)} "
             "deleted", s, timeout)
    return time.monotonic() - began


def one_alert_for_the_real_change(lab: Lab, ns: str, s: Serve, slack: SlackStandin, timeout: float = 120) -> float:
    """The real change (db-from-api replaced: api -> db blocked) reaches Slack as exactly one message naming it
    and nothing else; returns the seconds it took."""
    changed = time.monotonic()
    break_api_to_db(lab, ns)
    [msg] = wait_for(lambda: top_level(slack), "the alert for the real change", s, timeout)
    took = time.monotonic() - changed
    assert f"{ns}/api -> {ns}/db 5432/TCP  allowed -> blocked" in msg.text, msg.text
    assert f"Cause: NetworkPolicy {ns}/db-from-api changed" in msg.text, msg.text
    [event] = drift_events(s)
    assert event.flow_key.rsplit("|", 3)[1:] == [f"{ns}/api", f"{ns}/db", "5432/TCP"], event
    return took


def assert_no_false_alert(s: Serve, slack: SlackStandin) -> None:
    assert top_level(slack) == [], [m.text for m in top_level(slack)]
    assert drift_events(s) == [], drift_events(s)
    assert slack.rejected == []


def restart_apiserver_after(seconds: float, compact: bool = False) -> float:
    """Stops kube-apiserver, keeps it down `seconds` (compacting etcd to its newest revision meanwhile, so no
    watch can resume from a version it handed out), starts it again; returns the seconds it was down."""
    began = time.monotonic()
    control.stop_component("kube-apiserver")
    if compact:
        compact_etcd()
    time.sleep(max(0.0, seconds - (time.monotonic() - began)))
    control.start_apiserver()
    return time.monotonic() - began


def compact_etcd() -> int:
    """etcd's own compaction (its v3 JSON gateway) up to the newest revision: every older revision is gone."""
    def call(path: str, body: dict) -> dict:
        req = urllib.request.Request(f"http://127.0.0.1:2379/v3/{path}", json.dumps(body).encode(),
                                     {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    rev = int(call("kv/range", {"key": base64.b64encode(b"/").decode(), "limit": 1})["header"]["revision"])
    call("kv/compaction", {"revision": str(rev), "physical": True})
    return rev


def runs_after(s: Serve, since: float) -> list:
    """Stored runs that started after the unix time `since`."""
    return [r for r in s.runs() if _unix(r.started_at) > since]


def _unix(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# ------------------------------------------------------------------------------- 1. API server, etcd, watches
def outage_mid_run(lab: Lab, ns: str, start, slack: SlackStandin, outage: Callable[[], float], what: str) -> Serve:
    """A known-good service; mid-run (probe pods exist) `outage` takes part of the control plane away and brings
    it back. Then: serve alive, a known-good run again, no false alert, the mid-run pods deleted, the failed
    calls counted, and a real change alerted once. Returns the service."""
    deploy_three_tier(lab, ns)
    s = start()
    first = s.wait_runs(1)[0]
    assert first.known_good
    errors_before = metric_sum(s, "netpol_drift_api_errors_total")
    left = mid_run_pods(lab, s)
    down = outage()
    back = time.time()
    assert s.proc.poll() is None and s.get("/healthz")[0] == 200
    # 240 s: after an API server outage runs are judged again only drift.hold_after_api_outage_seconds later.
    wait_for(lambda: [r for r in runs_after(s, back) if r.known_good], f"a known-good run after {what}", s, 240)
    took = time.time() - back
    assert_no_false_alert(s, slack)
    swept = wait_gone(lab, s, left, 60)
    errors = metric_sum(s, "netpol_drift_api_errors_total") - errors_before
    assert errors > 0
    assert s.metric("netpol_drift_leader") == 1.0
    # A real change after the outage still alerts, once (the watches came back).
    alert = one_alert_for_the_real_change(lab, ns, s, slack)
    print(f"\n{what}: down {down:.1f}s, {errors:.0f} failed API calls counted, known-good run {took:.1f}s after, "
          f"{len(left)} mid-run probe pod(s) gone {swept:.1f}s later, real change alerted in {alert:.1f}s")
    return s


def test_etcd_restarted_mid_run(lab: Lab, lab_namespace: str, start, slack) -> None:
    def restart_etcd() -> float:
        began = time.monotonic()
        control.stop_component("etcd")
        time.sleep(8)
        control.start_etcd()
        return time.monotonic() - began

    outage_mid_run(lab, lab_namespace, start, slack, restart_etcd, "etcd restart")




def workload_pods(lab: Lab, ns: str) -> dict[str, dict]:
    """The three-tier app's own pods (no probe pod) by workload: frontend, api (one of its two), db."""
    pods = [p for p in lab.api.get(f"/api/v1/namespaces/{ns}/pods")["items"]
            if "netpol-drift.io/probe" not in (p["metadata"].get("labels") or {})]
    return {w: next(p for p in pods if p["metadata"]["name"].startswith(f"{w}-")) for w in ("frontend", "api", "db")}


def kube_router_programs(lab: Lab, ns: str, name: str, since: float, seen: dict) -> None:
    """Creates pod `name` (a bare listener under the namespace's default-deny) and records in `seen` how long
    after `since` (monotonic) the kube-router of its node had rules naming its IP: how long a pod created right
    after an API server outage goes without its policies, as every probe pod of that moment does."""
    lab.apply(pod_manifest(name, {"role": "late"}), namespace=ns)
    ip = wait_for_value(lambda: (lab.pod(ns, name).get("status") or {}).get("podIP"), 60)
    pattern = re.compile(r"(?<![\d.])" + re.escape(ip) + r"(?!\d)")
    wait_for_value(lambda: pattern.search(netns.node_iptables_of(ip, "filter")), 120, interval=0.1)
    seen["programmed"] = time.monotonic() - since


def wait_for_value(fn: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # the API server may still be coming back
            if got := fn():
                return got
        time.sleep(interval)
    raise AssertionError(f"nothing within {timeout}s")


def test_api_server_stopped_mid_run_and_restarted(lab: Lab, lab_namespace: str, start, slack) -> None:
    """kube-apiserver stopped mid-run for 10 s. Its restart breaks every watch, kube-router's too: client-go
    backs its reconnects off, and until it has re-listed it programs no new pod, so a probe pod of that moment
    is refused where the policies allow. That is no change of what the workloads get (their own pods, probed by
    hand from their netns, reach what they reached and nothing more): serve stores such runs unjudged
    (drift.hold_after_api_outage_seconds) and judges again once the CNI can have re-synced."""
    ns = lab_namespace
    seen: dict = {}

    def restart() -> float:
        down = restart_apiserver_after(10)
        back = time.monotonic()
        threading.Thread(target=kube_router_programs, args=(lab, ns, "late", back, seen), daemon=True).start()
        w = workload_pods(lab, ns)
        seen["by hand"] = (lab.connect(w["api"], w["db"], 5432), lab.connect(w["frontend"], w["api"], 9000),
                           lab.connect(w["frontend"], w["db"], 5432))
        return down

    s = outage_mid_run(lab, ns, start, slack, restart, "API server restart")
    # While kube-router re-synced, the workloads' flows were what the baseline says: allowed, allowed, refused.
    assert seen["by hand"] == ("connected", "connected", "refused"), seen
    assert "history only" in s.log and "the API server answers again" in s.log
    # The hold covers the CNI's blind time in this lab: a pod created as the API server came back had its rules
    # well before runs were judged again.
    hold = DriftSettings().hold_after_api_outage_seconds
    assert seen["programmed"] < hold, seen
    print(f"API server restart: workloads by hand {seen['by hand']}; a pod created as it came back had "
          f"kube-router rules {seen['programmed']:.1f}s later (hold {hold:.0f}s)\n" + unjudged_runs(s))


def unjudged_runs(s: Serve) -> str:
    """What the history-only runs saw (their log lines and stored outcomes): the evidence of the CNI's catch-up."""
    lines = []
    with Store.open(s.db) as store:
        for m in re.finditer(r"run (\w+) \w+ in [\d.]+s \(trigger (\w+)\): stored as (\d+), history only \((\d+) "
                             r"change\(s\) not judged\)", s.log):
            _, run, _ = store.run_detail(m.group(3))
            seen = ", ".join(f"{r.case} {r.outcome}" for r in run.results)
            lines.append(f"  history-only run {m.group(3)} ({m.group(2)}, started {run.started_at[11:19]}): "
                         f"{m.group(4)} change(s); {seen}")
    return "\n".join(lines) or "  no history-only run stored"


def test_watch_410_gone_after_compaction_relists_without_missing_a_change(lab: Lab, lab_namespace: str, start,
                                                                        slack) -> None:
    ns = lab_namespace
    deploy_three_tier(lab, ns)
    # Runs only on changes (the interval is an hour, and no Lease to lose and win back, which would run at once):
    # a change the watches miss is never probed.
    s = start(schedule={"interval_seconds": 3600}, leader={"enabled": False})
    first = s.wait_runs(1)[0]
    assert first.known_good
    relists_before = metric_sum(s, "netpol_drift_watch_relists_total")
    # The API server restarts (a fresh watch cache) and etcd is compacted past every version the monitor's
    # watches hold: resuming them can only give 410 Gone. The change lands as they come back (their backoff).
    began = time.time()
    restart_apiserver_after(3, compact=True)
    # The run the change triggers comes while the CNI agents re-sync: stored unjudged, and the run the service
    # schedules for the end of the hold alerts the change once, with its cause (no second, "dataplane" message
    # for the flows a fresh probe pod could not reach yet).
    alert = one_alert_for_the_real_change(lab, ns, s, slack, timeout=240)
    wait_for(lambda: metric_sum(s, "netpol_drift_watch_relists_total") > relists_before, "a re-list after 410", s, 30)
    assert "410 Gone" in s.log and "history only" in s.log
    relists = metric_sum(s, "netpol_drift_watch_relists_total") - relists_before
    runs = runs_after(s, began)
    assert any(r.trigger == "change" and f"NetworkPolicy {ns}/db-from-api" in (r.trigger_detail or "") for r in runs)
    assert len(top_level(slack)) == 1
    print(f"\n410 Gone: {relists:.0f} watch(es) re-listed, the change in the gap alerted once in {alert:.1f}s "
          f"({len(runs)} runs after the restart)\n" + unjudged_runs(s))


# --------------------------------------------------------------------------------------------- 6. SIGKILL
def test_sigkill_mid_run_next_start_sweeps_and_does_not_alert(lab: Lab, lab_namespace: str, start, slack) -> None:
    ns = lab_namespace
    deploy_three_tier(lab, ns)
    s = start()
    first = s.wait_runs(1)[0]
    assert first.known_good
    left = mid_run_pods(lab, s)
    s.proc.kill()
    s.proc.wait(10)
    killed = time.monotonic()
    again = start()
    wait_for(lambda: again.metric("netpol_drift_leader") == 1.0, "the restarted service to lead", again, 60)
    leads = time.monotonic() - killed
    wait_gone(lab, again, left, 60)
    swept = time.monotonic() - killed
    runs = again.wait_runs(len(s.runs()) + 1, timeout=90)
    assert runs[-1].known_good
    assert "sweep deleted" in again.log
    assert_no_false_alert(again, slack)
    print(f"\nSIGKILL mid-run: {len(left)} probe pod(s) left, restarted service led after {leads:.1f}s and swept "
          f"them {swept:.1f}s after the kill")


def test_sigkill_mid_alert_restart_does_not_alert_twice(lab: Lab, lab_namespace: str, start, slack) -> None:
    ns = lab_namespace
    deploy_three_tier(lab, ns)
    s = start()
    first = s.wait_runs(1)[0]
    assert first.known_good
    # Slack posts the message but serve never hears back: it is killed while waiting for the answer.
    slack.hold_next("chat.postMessage", 30)
    break_api_to_db(lab, ns)
    wait_for(slack.held.is_set, "the alert to reach Slack", s, 120)
    s.proc.kill()
    s.proc.wait(10)
    killed = time.monotonic()
    assert len(top_level(slack)) == 1
    again = start()
    wait_for(lambda: again.metric("netpol_drift_leader") == 1.0, "the restarted service to lead", again, 60)
    # Its alert pass (after its first run and every 15 s) finds the alert in the outbox: it must not post it again.
    runs = again.wait_runs(len(again.runs()) + 1, timeout=90)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert len(top_level(slack)) == 1, [m.text for m in top_level(slack)]
        time.sleep(0.5)
    assert again.metric("netpol_drift_alert_queue_depth") == 0.0
    [msg] = top_level(slack)
    assert f"{ns}/api -> {ns}/db 5432/TCP  allowed -> blocked" in msg.text
    print(f"\nSIGKILL mid-alert: 1 message in Slack, restart led after {time.monotonic() - killed:.1f}s, "
          f"{len(runs)} runs, no second message")


class DelayingProxy:
    """A TCP proxy at our own boundary (between the monitor and kube-apiserver, TLS passed through untouched):
    every chunk the API server sends back waits `delay` seconds first. It listens on the API server's own
    address (another port), so the serving certificate still matches."""

    def __init__(self) -> None:
        self.delay = 0.0
        self._sock = socket.create_server((control.C.ROOT_IP, 0))
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._conns: list = []
        threading.Thread(target=self._accept, daemon=True, name="delaying-proxy").start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection((control.C.ROOT_IP, control.C.APISERVER_PORT), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            self._conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src, dst, slow: bool) -> None:
        try:
            while data := src.recv(65536):
                if slow and self.delay:
                    time.sleep(self.delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for end in (src, dst):
                with contextlib.suppress(OSError):
                    end.close()

    def kubeconfig(self, lab: Lab, path: Path) -> Path:
        cfg = yaml.safe_load(Path(lab.monitor_kubeconfig).read_text())
        cfg["clusters"][0]["cluster"]["server"] = f"https://{control.C.ROOT_IP}:{self.port}"
        path.write_text(yaml.safe_dump(cfg))
        return path

    def close(self) -> None:
        self._stop.set()
        self._sock.close()
        for c in self._conns:
            with contextlib.suppress(OSError):
                c.close()


def test_slow_api_responses_slow_runs_down_and_timeouts_skip_never_alert(lab: Lab, lab_namespace: str, start,
                                                                         slack, tmp_path: Path) -> None:
    ns = lab_namespace
    deploy_three_tier(lab, ns)
    proxy = DelayingProxy()
    try:
        s = start(cluster={"kubeconfig": str(proxy.kubeconfig(lab, tmp_path / "slow.kubeconfig")),
                           "request_timeout_seconds": 5, "retries": 1})
        first = s.wait_runs(1)[0]
        assert first.known_good
        fast = _seconds(first)
        # Slow: every answer 0.5 s late. Runs take longer, still verify everything, still hold.
        proxy.delay = 0.5
        slowed = time.time()
        slow_run = wait_for(lambda: [r for r in runs_after(s, slowed + 1) if r.status == "ok"], "a slow full run",
                            s, 180)[0]
        assert slow_run.known_good
        slow = _seconds(slow_run)
        assert slow > fast
        assert_no_false_alert(s, slack)
        # Slower than the request timeout: calls time out and are counted; no run records a verdict it did not
        # observe, nothing alerts, the service lives on.
        errors_before = metric_sum(s, "netpol_drift_api_errors_total")
        proxy.delay = 7.0
        hung = time.time()
        wait_for(lambda: metric_sum(s, "netpol_drift_api_errors_total") > errors_before, "timed-out calls", s, 60)
        time.sleep(20)
        errors = metric_sum(s, "netpol_drift_api_errors_total") - errors_before
        assert s.proc.poll() is None and s.get("/healthz")[0] == 200
        assert all(r.status == "ok" for r in runs_after(s, hung) if r.known_good)  # a cut run is no baseline
        proxy.delay = 0.0
        cleared = time.time()
        wait_for(lambda: [r for r in runs_after(s, cleared + 1) if r.known_good], "a known-good run after", s, 120)
        took = time.time() - cleared
        assert_no_false_alert(s, slack)
        wait_for(lambda: probe_pods(lab) == [] or None, "no probe pods between runs", s, 60)
    finally:
        proxy.close()
    print(f"\nslow API: run {fast:.1f}s -> {slow:.1f}s with 0.5 s per answer; 7 s per answer (> 5 s request "
          f"timeout): {errors:.0f} failed calls in ~20 s, known-good again {took:.1f}s after it cleared")


# ------------------------------------------------------------------- 1. API Priority and Fairness (real 429s)
APF_NAME = "netpol-drift-throttled"
NEIGHBOUR = "apf-neighbour"


def apf_level_and_schema(ns: str) -> list[dict]:
    """A PriorityLevelConfiguration with no seats of its own (0 shares, lends and borrows none) that rejects
    what it cannot run at once, and a FlowSchema ahead of every default but `exempt` sending it the monitor's
    pod creations and a busy neighbour's pod lists (a ServiceAccount of the test namespace). A level with 0 seats
    still runs one request when nothing else of it runs (kube-apiserver's queueset admits a request wider than
    the limit into an idle level), so the monitor's creates, one at a time, are only rejected while the
    neighbour keeps the level busy: the neighbour is the other traffic that fills a level in a real cluster."""
    return [
        {"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "PriorityLevelConfiguration",
         "metadata": {"name": APF_NAME},
         "spec": {"type": "Limited", "limited": {"nominalConcurrencyShares": 0, "lendablePercent": 0,
                                                 "borrowingLimitPercent": 0, "limitResponse": {"type": "Reject"}}}},
        {"apiVersion": "flowcontrol.apiserver.k8s.io/v1", "kind": "FlowSchema", "metadata": {"name": APF_NAME},
         "spec": {"priorityLevelConfiguration": {"name": APF_NAME}, "matchingPrecedence": 50,
                  "distinguisherMethod": {"type": "ByUser"},
                  "rules": [
                      {"subjects": [{"kind": "ServiceAccount",
                                     "serviceAccount": {"name": "netpol-drift", "namespace": "netpol-drift"}}],
                       "resourceRules": [{"verbs": ["create"], "apiGroups": [""], "resources": ["pods"],
                                          "namespaces": ["*"]}]},
                      {"subjects": [{"kind": "ServiceAccount", "serviceAccount": {"name": NEIGHBOUR, "namespace": ns}}],
                       "resourceRules": [{"verbs": ["list"], "apiGroups": [""], "resources": ["pods"],
                                          "namespaces": [ns]}]}]}},
    ]


class BusyNeighbour:
    """Keeps the throttled level's one request slot taken: back to back, it lists pods at a resourceVersion far
    ahead of etcd's, which the API server's watch cache waits for (3 s) before it answers 504."""

    def __init__(self, lab: Lab, ns: str) -> None:
        lab.api.post(f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": NEIGHBOUR}})
        lab.api.post(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings", {
            "metadata": {"name": NEIGHBOUR},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "ServiceAccount", "name": NEIGHBOUR, "namespace": ns}]})
        token = lab.api.post(f"/api/v1/namespaces/{ns}/serviceaccounts/{NEIGHBOUR}/token", {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600}})["status"]["token"]
        self.api = Rest(lab.kubeconfig)
        self.api.token = token  # the neighbour's identity, the lab's server and CA
        rv = int(lab.api.get(f"/api/v1/namespaces/{ns}/pods")["metadata"]["resourceVersion"])
        self.path, self.ahead = f"/api/v1/namespaces/{ns}/pods", str(rv + 10_000_000)
        self.held = self.throttled = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="apf-neighbour")
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.api.get(self.path, resourceVersion=self.ahead, resourceVersionMatch="NotOlderThan")
            except ApiError as e:
                if e.status == 429:  # its own request found the slot taken (by the monitor): go again
                    self.throttled += 1
                else:
                    self.held += 1
            except OSError:
                time.sleep(0.1)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


def apiserver_rejected(lab: Lab) -> float:
    """kube-apiserver's own count of requests APF rejected at the throttled level (read as admin)."""
    text = lab.api.get_text("/metrics")
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("apiserver_flowcontrol_rejected_requests_total{")
               and f'priority_level="{APF_NAME}"' in line)


def test_apf_429s_make_probes_skipped_never_a_verdict(lab: Lab, lab_namespace: str, start, slack) -> None:
    ns = lab_namespace
    deploy_three_tier(lab, ns)
    s = start()
    first = s.wait_runs(1)[0]
    assert first.known_good
    throttled_before = metric_sum(s, "netpol_drift_api_throttled_total", verb="create")
    errors_before = metric_sum(s, "netpol_drift_api_errors_total", verb="create")
    rejected_before = apiserver_rejected(lab)
    # Probe pods cannot be created while the level the monitor's pod creations go to is full: every probe of
    # the run is skipped, with the API server's 429 as the reason.
    lab.apply(apf_level_and_schema(ns))
    neighbour = BusyNeighbour(lab, ns)
    began = time.time()
    try:
        throttled = wait_for(lambda: [r for r in runs_after(s, began + 1) if r.status != "ok"],
                             "a run with throttled probes", s, 120)[0]
        assert throttled.status == "partial" and not throttled.known_good, throttled
        assert throttled.skipped == throttled.results > 0, throttled
        with Store.open(s.db) as store:
            reasons = {f.reason for f in store.get_run(throttled.id).results}
        assert all(r.startswith("could not create the probe pod: create pod ") and ": HTTP 429: " in r
                   for r in reasons), reasons
        # The run ended well inside its deadline (60 s): each create gave up after its retries.
        assert _seconds(throttled) < 30, _seconds(throttled)
        wait_for(lambda: s.metric("netpol_drift_cases", state="skipped") == len(CASES) or None,
                 "netpol_drift_cases{state=skipped} of the throttled run", s, 30)
        throttled_calls = metric_sum(s, "netpol_drift_api_throttled_total", verb="create") - throttled_before
        failed_calls = metric_sum(s, "netpol_drift_api_errors_total", verb="create") - errors_before
        assert throttled_calls >= 3 and failed_calls >= throttled_calls  # retries: 2, every attempt a 429
        rejected = apiserver_rejected(lab) - rejected_before
        assert rejected >= throttled_calls  # the API server's APF rejected them: real 429s
        assert s.metric("netpol_drift_probe_pods_running") == 0  # a throttled create made no pod
        assert probe_pods(lab) == []
        assert_no_false_alert(s, slack)
        assert s.proc.poll() is None and s.get("/healthz")[0] == 200
    finally:
        neighbour.stop()
        for kind in ("flowschemas", "prioritylevelconfigurations"):
            lab.api.delete(f"/apis/flowcontrol.apiserver.k8s.io/v1/{kind}/{APF_NAME}")
    cleared = time.time()
    good = wait_for(lambda: [r for r in runs_after(s, cleared + 1) if r.known_good], "a known-good run after", s,
                    120)[0]
    took = time.time() - cleared
    assert good.status == "ok" and good.skipped == 0
    assert_no_false_alert(s, slack)
    assert probe_pods(lab) == []
    print(f"\nAPF: {throttled_calls:.0f} creates throttled ({rejected:.0f} rejected by the API server's APF, "
          f"{neighbour.held} neighbour requests held the level), run {throttled.id} {throttled.status} in "
          f"{_seconds(throttled):.1f}s with {throttled.skipped}/{throttled.results} flows skipped; known-good "
          f"again {took:.1f}s after the FlowSchema went")


def _seconds(run) -> float:
    return _unix(run.finished_at) - _unix(run.started_at)

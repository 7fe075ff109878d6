"""Slack alerts from `netpol-drift serve` in the lab: real policies enforced by kube-router, real probe pods,
serve as a subprocess with a bot token, slack_sdk talking to the local Slack stand-in (tests/slack_standin.py).

Each test changes the cluster the way an operator (or a broken CNI) would and reads only what reached the
stand-in and what serve exposes (/metrics, its store).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from monitor.store import Store
from tests.lab import netns
from tests.lab.fixtures import Lab, pod_manifest
from tests.slack_standin import MAX_BLOCKS, TOKEN, SlackStandin
from tests.test_live_history_lab import pod_fault, suite_of
from tests.test_live_lab import deploy_three_tier, netpol, probe_pods
from tests.test_service_lab import Serve, break_api_to_db

pytestmark = pytest.mark.lab
FAULT = "netpol-drift-alert-test-fault"


@pytest.fixture
def slack() -> Iterator[SlackStandin]:
    with SlackStandin() as standin:
        yield standin


@pytest.fixture
def start(lab: Lab, lab_namespace: str, tmp_path: Path, slack: SlackStandin) -> Iterator[Callable[..., Serve]]:
    """Starts `serve` with a bot token and slack.base_url at the stand-in; every one is stopped at the end."""
    started: list[Serve] = []

    def run(suite: dict, **extra: Any) -> Serve:
        s = Serve(lab, tmp_path, lab_namespace, name=f"serve{len(started)}", suite=suite,
                  env={"NETPOL_DRIFT_SLACK_TOKEN": TOKEN},
                  slack={"channel": "#netpol-alerts", "base_url": slack.base_url}, **extra)
        started.append(s)
        return s

    yield run
    for s in started:
        if s.proc.poll() is None:
            s.stop()
    assert probe_pods(lab) == [], "serve left probe pods behind"


def wait_for(pred: Callable[[], Any], what: str, s: Serve, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = pred()
        if got:
            return got
        assert s.proc.poll() is None, f"serve exited: {s.log[-3000:]}"
        time.sleep(0.2)
    raise AssertionError(f"no {what} within {timeout}s; serve log: {s.log[-3000:]}")


def top_level(slack: SlackStandin) -> list:
    return [r for r in slack.of("chat.postMessage") if not r.body.get("thread_ts")]


def replies(slack: SlackStandin, ts: str) -> list:
    return [r for r in slack.of("chat.postMessage") if r.body.get("thread_ts") == ts]


def restore_api_to_db(lab: Lab, ns: str) -> None:
    lab.apply([netpol("db-from-api", {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress"],
                                      "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "api"}}}],
                                                   "ports": [{"port": 5432}]}]})], namespace=ns)


def quiet(slack: SlackStandin, seconds: float) -> int:
    """How many requests reached the stand-in in the next `seconds`: proves nothing more comes."""
    before = slack.requests
    time.sleep(seconds)
    return slack.requests - before


# ------------------------------------------------------------------------------------------------ tests
def test_policy_edit_is_one_message_and_the_revert_updates_it(lab: Lab, lab_namespace: str, start, slack) -> None:
    ns = lab_namespace
    deploy_three_tier(lab, ns)
    s = start(suite_of(ns, "api-to-db", "frontend-to-api"))
    [first] = s.wait_runs(1)
    assert first.known_good and slack.received == []

    break_api_to_db(lab, ns)
    [msg] = wait_for(lambda: top_level(slack), "Slack message", s)
    text = msg.text
    assert f"{ns}/api -> {ns}/db 5432/TCP  allowed -> blocked (" in text, text
    assert f"Cause: NetworkPolicy {ns}/db-from-api changed" in text, text
    assert "cluster lab" in text and f"frontend -> {ns}/api" not in text
    [details] = wait_for(lambda: replies(slack, msg.ts), "thread details", s)
    assert f"NetworkPolicy {ns}/db-from-api" in details.text.split("now decided by:")[1]
    assert slack.rejected == []

    restore_api_to_db(lab, ns)
    [update] = wait_for(lambda: slack.of("chat.update"), "resolution", s)
    assert update.ts == msg.ts and update.text.startswith("Resolved: reachability drift on lab")
    [reply] = wait_for(lambda: replies(slack, msg.ts)[1:], "resolution reply", s)
    assert "all flows are back" in reply.text and f"{ns}/api -> {ns}/db 5432/TCP" in reply.text
    assert quiet(slack, 5) == 0 and len(top_level(slack)) == 1 and len(replies(slack, msg.ts)) == 2
    assert s.metric("netpol_drift_alerts_total", channel="slack", result="sent") == 2.0
    assert s.metric("netpol_drift_alert_queue_depth") == 0.0


def test_namespace_relabel_is_blamed_on_the_label(lab: Lab, lab_namespace: str, start, slack) -> None:
    ns = lab_namespace
    lab.api.merge_patch(f"/api/v1/namespaces/{ns}", {"metadata": {"labels": {"team": "web"}}})
    deploy_three_tier(lab, ns)
    since = time.time()
    lab.apply([netpol("db-from-api", {
        "podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "web"}},
                               "podSelector": {"matchLabels": {"app": "api"}}}], "ports": [{"port": 5432}]}]})],
              namespace=ns)
    lab.wait_synced(since=since)
    s = start(suite_of(ns, "api-to-db"))
    assert s.wait_runs(1)[0].known_good

    lab.api.merge_patch(f"/api/v1/namespaces/{ns}", {"metadata": {"labels": {"team": "webapp"}}})
    [msg] = wait_for(lambda: top_level(slack), "Slack message", s)
    assert f"Cause: namespace {ns}: labels team: web -> webapp" in msg.text, msg.text
    assert f"{ns}/api -> {ns}/db 5432/TCP  allowed -> blocked" in msg.text


def test_dataplane_fault_is_blamed_on_the_dataplane(lab: Lab, lab_namespace: str, start, slack) -> None:
    ns = lab_namespace
    pods = deploy_three_tier(lab, ns)
    s = start(suite_of(ns, "api-to-db"), schedule={"interval_seconds": 4})
    assert s.wait_runs(1)[0].known_good
    # An ICMP REJECT, as kube-router's: a reset would read as "no listener" (probe.tcp_reset_means: skipped).
    with pod_fault(lab, pods["db-0"], "-p", "tcp", "--dport", "5432", "-j", "REJECT", "--reject-with",
                   "icmp-port-unreachable"):
        [msg] = wait_for(lambda: top_level(slack), "Slack message", s)
    assert "Cause: dataplane: no policy or label changed" in msg.text, msg.text
    assert f"{ns}/api -> {ns}/db 5432/TCP  allowed -> blocked (refused)" in msg.text
    wait_for(lambda: slack.of("chat.update"), "resolution once the fault is gone", s)


@contextmanager
def input_drop(lab: Lab, pod: dict, port: int) -> Iterator[None]:
    """Drops (instead of the kernel's reset) what reaches this pod on a closed port: refused -> timeout."""
    ns = lab.netns_of(pod)
    spec = ["INPUT", "-p", "tcp", "--dport", str(port), "-j", "DROP", "-m", "comment", "--comment", FAULT]
    netns.run(["ip", "netns", "exec", ns, "iptables", "-I", *spec])
    try:
        yield
    finally:
        netns.run(["ip", "netns", "exec", ns, "iptables", "-D", *spec])


def test_refused_timeout_flips_alone_send_nothing(lab: Lab, lab_namespace: str, start, slack) -> None:
    ns = lab_namespace
    deploy_three_tier(lab, ns)
    # sink: every port open by policy, nothing listens on 9999: the kernel resets, read as blocked here
    # (probe.tcp_reset_means: deny, as for a CNI that rejects with a forged reset).
    [sink] = lab.run_pods(ns, [pod_manifest("sink", {"app": "sink"}, tcp=[8080])]).values()
    since = time.time()
    lab.apply([netpol("sink-open", {"podSelector": {"matchLabels": {"app": "sink"}}, "policyTypes": ["Ingress"],
                                    "ingress": [{}]})], namespace=ns)
    lab.wait_synced(since=since)
    suite = {"name": "modes", "cases": [{"name": "api-to-sink-closed", "from": {"namespace": ns, "workload": "api"},
                                         "to": {"namespace": ns, "pod": "sink"}, "port": 9999, "expect": "deny"}]}
    s = start(suite, schedule={"interval_seconds": 4}, probe={"tcp_reset_means": "deny"})
    assert s.wait_runs(1)[0].known_good
    # The policies allow it and the network blocks it: an enforcement gap, alerted once at the first run.
    wait_for(lambda: top_level(slack), "the gap's message", s)
    before = len(top_level(slack))
    with input_drop(lab, sink, 9999):
        n = len(s.runs())
        s.wait_runs(n + 3, timeout=120)
    with Store.open(s.db) as store:
        drift = [e for e in store.events("lab") if e.kind == "drift"]
    assert [e.detail for e in drift][-1] == "refused -> timeout since known-good", [e.detail for e in drift]
    assert len(top_level(slack)) == before and slack.of("chat.update") == []
    assert s.metric("netpol_drift_alerts_total", channel="slack", result="suppressed") >= 1.0


def test_two_hundred_flows_of_one_edit_are_one_message_within_limits(lab: Lab, lab_namespace: str, start,
                                                                      slack) -> None:
    ns = lab_namespace
    ports = list(range(21001, 21051))
    lab.run_pods(ns, [pod_manifest("src", {"role": "src"}, tcp=[8080])]
                 + [pod_manifest(f"dst-{i}", {"role": "dst"}, tcp=ports) for i in range(4)])
    suite = {"name": "wide", "cases": [{"name": "src-to-dst", "from": {"namespace": ns, "pod": "src"},
                                        "to": {"namespace": ns, "labels": {"role": "dst"}}, "ports": ports,
                                        "expect": "allow"}]}
    s = start(suite)
    assert s.wait_runs(1)[0].known_good
    lab.apply([netpol("deny-dst", {"podSelector": {"matchLabels": {"role": "dst"}}, "policyTypes": ["Ingress"]})],
              namespace=ns)
    [msg] = wait_for(lambda: top_level(slack), "Slack message", s, timeout=150)
    assert quiet(slack, 5) <= 1  # at most the thread details still on their way
    assert len(top_level(slack)) == 1 and slack.rejected == []
    blocks = msg.body["blocks"] if isinstance(msg.body["blocks"], list) else json.loads(msg.body["blocks"])
    assert blocks[0]["text"]["text"] == "Reachability drift on lab: 200 flows changed"
    assert "…and 190 more" in msg.text and f"Cause: NetworkPolicy {ns}/deny-dst added" in msg.text
    [details] = wait_for(lambda: replies(slack, msg.ts), "thread details", s)
    assert len(details.body["blocks"]) <= MAX_BLOCKS


def test_down_then_429_then_500_arrives_once_after_recovery_across_a_restart(lab: Lab, lab_namespace: str,
                                                                             start, slack) -> None:
    ns = lab_namespace
    deploy_three_tier(lab, ns)
    suite = suite_of(ns, "api-to-db")
    s1 = start(suite, alert={"retry_max_seconds": 3})
    assert s1.wait_runs(1)[0].known_good
    slack.stop()  # connection refused
    break_api_to_db(lab, ns)
    s1.wait_runs(2)
    wait_for(lambda: s1.metric("netpol_drift_alerts_total", channel="slack", result="error") >= 1, "failure", s1)
    assert s1.metric("netpol_drift_alert_queue_depth") >= 1.0
    assert s1.stop() == 0

    s2 = start(suite, alert={"retry_max_seconds": 3})  # same database, new process
    s2.wait_runs(3)
    slack.start()
    slack.fail_next("429:1", "429:1", "429:1", "500", "500", "500")
    [msg] = wait_for(lambda: top_level(slack), "Slack message after recovery", s2, timeout=120)
    assert quiet(slack, 8) <= 1 and len(top_level(slack)) == 1
    assert f"{ns}/api -> {ns}/db 5432/TCP  allowed -> blocked" in msg.text
    wait_for(lambda: s2.metric("netpol_drift_alert_queue_depth") == 0.0, "empty queue", s2)
    assert TOKEN not in s1.log + s2.log

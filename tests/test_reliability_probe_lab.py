"""Issue 15 items 2, 5 and 8 in the lab: probe pods that cannot start or vanish, noise, and load.

Each test runs `netpol-drift serve` (with a bot token pointed at the Slack stand-in, so "no alert" is read
where alerts land) or `run --once` where the fault is per run, injects the fault as an operator or a noisy
node would, and asserts: no false drift alert, no lost alert, no probe pod left, the service still running,
and the metric that should move moved. docs/RELIABILITY.md sections 2, 5 and 8 list them.
The soak variant of the load test is opt-in: NPD_TEST_SOAK=1 (sizes in NPD_SOAK_NAMESPACES / NPD_SOAK_RUNS).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from monitor.probe.pods import RUN_LABEL
from monitor.probe.wire import RESET_BY_DESTINATION
from monitor.store import Store
from tests.lab import config as C
from tests.lab import netns
from tests.lab.fixtures import Lab, pod_manifest
from tests.lab.rest import ApiError, Rest
from tests.slack_standin import TOKEN, SlackStandin
from tests.test_live_lab import (
    PROBE_SELECTOR,
    deploy_three_tier,
    netpol,
    probe_pods,
    run_monitor,
    three_tier_suite,
    write_config,
)
from tests.test_service_lab import Serve

pytestmark = pytest.mark.lab


# ------------------------------------------------------------------------------------------------ helpers
@pytest.fixture
def slack() -> Iterator[SlackStandin]:
    with SlackStandin() as standin:
        yield standin


@pytest.fixture
def start(lab: Lab, lab_namespace: str, tmp_path: Path, slack: SlackStandin) -> Iterator[Callable[..., Serve]]:
    """`serve` with a bot token at the stand-in (as tests/test_alert_lab.py starts it); at the end of the test
    it must still be running and stop cleanly (exit 0) on SIGTERM, leaving no probe pod."""
    started: list[Serve] = []

    def run(suite: dict, **extra: Any) -> Serve:
        started.append(Serve(lab, tmp_path, lab_namespace, name=f"serve{len(started)}", suite=suite,
                             env={"NETPOL_DRIFT_SLACK_TOKEN": TOKEN},
                             slack={"channel": "#netpol-alerts", "base_url": slack.base_url}, **extra))
        return started[-1]

    yield run
    for s in started:
        assert s.proc.poll() is None, f"serve exited on its own: {s.log[-3000:]}"
        assert s.stop() == 0, s.log[-3000:]
    assert probe_pods(lab) == [], "serve left probe pods behind"


def messages(slack: SlackStandin) -> list:
    """Every top-level Slack message (an alert); thread replies and updates belong to one of them."""
    return [r for r in slack.of("chat.postMessage") if not r.body.get("thread_ts")]


def clean_suite(ns: str) -> dict:
    """The three-tier suite without its two cases that never verify (a missing workload, a known violation):
    every case passes on a healthy lab, so whatever changes is the fault's doing."""
    suite = three_tier_suite(ns)
    suite["cases"] = [c for c in suite["cases"] if c["name"] not in ("batch-to-db", "db-to-api-must-be-denied")]
    return suite


def results_of(s: Serve, run_id: str) -> list:
    with Store.open(s.db) as store:
        return list(store.get_run(run_id).results)


def next_run(s: Serve, timeout: float = 90.0, after: int | None = None) -> Any:
    """The first run stored after `after` runs (default: those stored now)."""
    n = len(s.runs()) if after is None else after
    return s.wait_runs(n + 1, timeout=timeout)[n]


def run_where(s: Serve, pred: Callable[[Any], bool], tries: int = 3) -> Any:
    """The next stored run that meets pred, waiting at most `tries` runs (a fault injected while a run was
    going affects only part of it); the last one if none does (the caller's assertions then say why)."""
    for _ in range(tries):
        run = next_run(s)
        if pred(run):
            break
    return run


def all_skipped(s: Serve) -> Callable[[Any], bool]:
    return lambda run: {f.outcome.value for f in results_of(s, run.id)} == {"skipped"}


def events(s: Serve) -> list:
    with Store.open(s.db) as store:
        return store.events("lab")


# --------------------------------------------------------------------------- item 2: probe pods that cannot run
def test_restricted_podsecurity_admits_probe_pods_and_a_full_quota_gives_skipped_not_a_verdict(
        lab: Lab, lab_namespace: str, start, slack, tmp_path: Path) -> None:
    """PodSecurity "restricted" enforced on the source namespace must ACCEPT every probe pod (the run passes).
    A ResourceQuota with no room for one more pod makes the API server reject every probe pod: each case is
    skipped with the admission error as its reason, never pass or fail; `run --once` exits 1; serve alerts
    nothing, counts the failed creates and the skipped outcomes, and verifies everything again once the quota
    is gone."""
    ns = lab_namespace
    deploy_three_tier(lab, ns)
    lab.api.merge_patch(f"/api/v1/namespaces/{ns}", {"metadata": {"labels": {
        "pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"}}})
    suite = clean_suite(ns)
    s = start(suite, schedule={"interval_seconds": 4})
    first = s.wait_runs(1)[0]
    assert first.known_good and first.status == "ok", s.log[-3000:]
    assert s.metric("netpol_drift_cases", state="pass") == len(suite["cases"])
    assert s.metric("netpol_drift_cases", state="skipped") == 0

    running = len(lab.api.get(f"/api/v1/namespaces/{ns}/pods")["items"])
    quota = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "no-more-pods"},
             "spec": {"hard": {"pods": str(running)}}}
    creates_before = s.metric("netpol_drift_api_errors_total", verb="create")
    skipped_before = s.metric("netpol_drift_probe_outcomes_total", outcome="skipped")
    lab.apply([quota], namespace=ns)
    try:
        quota_run = run_where(s, all_skipped(s))
        assert quota_run.status == "partial" and not quota_run.known_good
        flows = results_of(s, quota_run.id)
        assert {f.outcome.value for f in flows} == {"skipped"}
        assert all("could not create the probe pod" in f.reason and "quota" in f.reason for f in flows), \
            [f.reason for f in flows]
        assert s.metric("netpol_drift_api_errors_total", verb="create") > creates_before
        assert s.metric("netpol_drift_probe_outcomes_total", outcome="skipped") >= skipped_before + len(flows)
        assert s.metric("netpol_drift_cases", state="skipped") == len(suite["cases"])
        assert s.metric("netpol_drift_probe_pods_running") == 0  # a rejected create made no pod
        # The same fault under `run --once`: every case skipped with the reason, exit 1 (not verified).
        once = tmp_path / "once"
        once.mkdir()
        rc, report = run_monitor(write_config(lab, once), suite, once, "--no-store")
        assert rc == 1 and report["ok"] is False
        assert {c["result"] for c in report["cases"]} == {"skipped"}, report["cases"]
    finally:
        lab.api.delete(f"/api/v1/namespaces/{ns}/resourcequotas/no-more-pods")
    again = run_where(s, lambda r: r.status == "ok")
    assert again.status == "ok" and again.known_good
    assert messages(slack) == [] and events(s) == []
    assert probe_pods(lab) == []


def test_a_run_past_its_deadline_is_stored_partial_with_the_late_flows_skipped(lab: Lab, lab_namespace: str,
                                                                                  start, slack) -> None:
    """A probe pod that never runs (per-node mode, a node nothing runs on) keeps its flows unprobed until the
    run deadline. serve stops probing there: the run is STORED, partial, the late flows skipped with the
    deadline as their reason, the real nodes' flows observed; not cut and lost as a "timeout" with nothing of
    it in the history (a suite too big for its deadline would otherwise never show up anywhere). No alert, no
    drift event, no probe pod left."""
    ns = lab_namespace
    deploy_three_tier(lab, ns)
    path = f"/api/v1/namespaces/{ns}/pods"
    ghost = pod_manifest("ghost-0", {"app": "ghost"}, tcp=[])
    ghost["spec"]["nodeName"] = "ghost-node"  # the lab agent runs only its own nodes' pods
    lab.api.post(path, ghost)
    try:
        lab.api.merge_patch(f"{path}/ghost-0/status", {"status": {
            "phase": "Running", "podIP": "10.245.0.1", "podIPs": [{"ip": "10.245.0.1"}]}})
        suite = {"name": "late", "cases": [c for c in clean_suite(ns)["cases"] if c["name"] == "frontend-to-api"]}
        s = start(suite, probe={"per_node": True, "run_deadline_seconds": 8})
        first = s.wait_runs(1, timeout=60)[0]
    finally:
        lab.api.delete(f"{path}/ghost-0", {"gracePeriodSeconds": 0})
    assert first.status == "partial" and not first.known_good, s.log[-3000:]
    flows = {f.source: f for f in results_of(s, first.id)}
    late = flows.pop(f"{ns}/frontend@ghost-node")
    assert late.outcome.value == "skipped" and "run deadline (8s)" in late.reason, late
    assert {f.outcome.value for f in flows.values()} == {"connected"}, flows
    assert re.search(rf"run \w+ partial in [\d.]+s \(trigger startup\): stored as {first.id},", s.log), \
        s.log[-2000:]
    assert s.metric("netpol_drift_runs_total", trigger="startup", status="partial") == 1
    assert messages(slack) == [] and events(s) == []


@contextmanager
def each_probe_pod(lab: Lab, ns: str, act: Callable[[Rest, dict], None], every: float) -> Iterator[None]:
    """While the block runs, a thread lists the probe pods in `ns` every `every` seconds and calls
    act(api, pod) on each (API errors end that pass, the next one tries again)."""
    api = Rest(lab.kubeconfig)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                for pod in api.get(f"/api/v1/namespaces/{ns}/pods", labelSelector=PROBE_SELECTOR)["items"]:
                    act(api, pod)
            except (ApiError, OSError):
                pass
            stop.wait(every)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield
    finally:
        stop.set()
        t.join()


@contextmanager
def deleting_probe_pods(lab: Lab, ns: str) -> Iterator[list[str]]:
    """Someone else (admin) deletes every probe pod in `ns` as soon as it appears."""
    deleted: list[str] = []

    def delete(api: Rest, pod: dict) -> None:
        md = pod["metadata"]
        if not md.get("deletionTimestamp") and md["name"] not in deleted:
            api.delete(f"/api/v1/namespaces/{ns}/pods/{md['name']}")
            deleted.append(md["name"])

    with each_probe_pod(lab, ns, delete, every=0.02):
        yield deleted


def test_probe_pods_deleted_by_someone_else_mid_run_give_skipped_and_no_alert(lab: Lab, lab_namespace: str,
                                                                                start, slack) -> None:
    ns = lab_namespace
    deploy_three_tier(lab, ns)
    suite = clean_suite(ns)
    s = start(suite, schedule={"interval_seconds": 4})
    assert s.wait_runs(1)[0].known_good
    skipped_before = s.metric("netpol_drift_probe_outcomes_total", outcome="skipped")
    with deleting_probe_pods(lab, ns) as deleted:
        run = run_where(s, all_skipped(s))
    assert deleted, "no probe pod was seen to delete"
    assert run.status == "partial" and not run.known_good
    flows = results_of(s, run.id)
    assert {f.outcome.value for f in flows} == {"skipped"}
    assert all("deleted before it finished" in f.reason for f in flows), [f.reason for f in flows]
    assert s.metric("netpol_drift_probe_outcomes_total", outcome="skipped") >= skipped_before + len(flows)
    after = run_where(s, lambda r: r.status == "ok")
    assert after.status == "ok" and after.known_good
    assert messages(slack) == [] and events(s) == []


def test_a_source_workload_scaled_to_zero_is_skipped_with_its_reason_and_back_without_alerts(
        lab: Lab, lab_namespace: str, start, slack) -> None:
    """Real Deployments (the lab's controller-manager): frontend scaled to 0 removes its pods; the run the pod
    deletions trigger skips every case from or to frontend ("no live pod"), alerts nothing, and still lets
    the rest become known-good; scaled back to 1, everything is verified again, still without an alert."""
    ns = lab_namespace
    deploy_three_tier(lab, ns)
    suite = clean_suite(ns)
    s = start(suite)  # interval 1 h: only the watches trigger runs
    assert s.wait_runs(1)[0].known_good
    frontend_cases = {c["name"] for c in suite["cases"] if "frontend" in (c["from"].get("workload"),
                                                                          c["to"].get("workload"))}
    frontend_cases |= {"frontend-to-api-service"}
    scale = f"/apis/apps/v1/namespaces/{ns}/deployments/frontend/scale"
    lab.api.merge_patch(scale, {"spec": {"replicas": 0}})
    deadline = time.monotonic() + 90
    while True:  # change runs until one sees no frontend pod (the first may still see it terminating)
        run = next_run(s)
        flows = results_of(s, run.id)
        skipped = {f.case for f in flows if f.outcome.value == "skipped"}
        if skipped or time.monotonic() > deadline:
            break
    assert run.trigger == "change"
    assert skipped == frontend_cases, skipped
    assert all("no live pod matches" in f.reason for f in flows if f.case in frontend_cases)
    assert all(f.outcome.value != "skipped" for f in flows if f.case not in frontend_cases)
    assert s.metric("netpol_drift_cases", state="skipped") == len(frontend_cases)
    # Nothing to probe is a fact about the cluster, not a failed probe: the rest still becomes known-good.
    assert run.known_good
    lab.api.merge_patch(scale, {"spec": {"replicas": 1}})
    lab.wait_rollout(ns, "Deployment", "frontend")
    deadline = time.monotonic() + 90
    while True:
        run = next_run(s)
        if all(f.outcome.value != "skipped" for f in results_of(s, run.id)) or time.monotonic() > deadline:
            break
    assert run.status == "ok" and run.known_good
    assert s.metric("netpol_drift_cases", state="skipped") == 0
    assert messages(slack) == [] and [e for e in events(s) if e.kind == "drift"] == []


NO_LISTENER_AGENT = ("import asyncio, json, sys\nfrom monitor.probe.agent import probe_target\n"
                     "from monitor.probe.wire import ProbeTarget\n"
                     "out = [asyncio.run(probe_target(ProbeTarget(ip, int(port)), 1.5)) for ip, port in "
                     "(t.split(':') for t in sys.argv[1:])]\n"
                     "print(json.dumps([[o.outcome, o.detail] for o in out]))\n")


def test_an_allowed_tcp_port_without_a_listener_is_skipped_and_a_rejected_one_still_blocked(
        lab: Lab, lab_namespace: str, start, slack) -> None:
    """web listens on 8080 only; its policy lets `client` in on 8080 and 8081, nobody else. With
    refused_means deny (kube-router REJECTs with an ICMP port unreachable from its node), client -> web:8081 is
    refused by web's own kernel (a TCP reset: nothing listens): that is no verdict, so both cases on it are
    `skipped` naming the missing listener, never pass or fail, whatever they expect. other -> web:8081 and
    client -> web:8082 are refused by kube-router (ICMP, queued on the probe's socket): still blocked, so their
    deny cases pass. No alert, no drift event, the run still becomes known-good (a missing listener is a fact
    about the cluster, not a failed probe), the skipped-cases metric says 2."""
    ns = lab_namespace
    pods = lab.run_pods(ns, [
        pod_manifest("web", {"app": "web"}, tcp=[8080]),
        pod_manifest("client", {"app": "client"}, tcp=[], command=["sleep", "3600"]),
        pod_manifest("other", {"app": "other"}, tcp=[], command=["sleep", "3600"]),
    ])
    since = time.time()
    lab.apply([netpol("web-from-client", {
        "podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "client"}}}],
                     "ports": [{"port": 8080}, {"port": 8081}]}]})], namespace=ns)
    lab.wait_synced(since=since)
    web = pods["web"]["status"]["podIP"]

    # What the probe agent itself sees, from inside each source's network namespace.
    def agent_from(src: str, *targets: str) -> list[list[str]]:
        out = subprocess.run(["ip", "netns", "exec", lab.netns_of(pods[src]), str(C.PYTHON), "-c",
                              NO_LISTENER_AGENT, *targets], capture_output=True, text=True, timeout=60,
                             cwd=C.REPO, check=True)
        return json.loads(out.stdout)

    assert agent_from("client", f"{web}:8080", f"{web}:8081", f"{web}:8082") == [
        ["connected", ""], ["refused", RESET_BY_DESTINATION], ["refused", ""]]
    assert agent_from("other", f"{web}:8081") == [["refused", ""]]

    def case(name: str, src: str, port: int, expect: str) -> dict:
        return {"name": name, "from": {"namespace": ns, "pod": src}, "to": {"namespace": ns, "pod": "web"},
                "port": port, "expect": expect}

    suite = {"name": "no-listener", "cases": [
        case("client-to-web", "client", 8080, "allow"),
        case("client-to-web-no-listener", "client", 8081, "allow"),
        case("client-to-web-no-listener-must-be-denied", "client", 8081, "deny"),
        case("other-to-web-no-listener-denied", "other", 8081, "deny"),
        case("client-to-web-8082-denied", "client", 8082, "deny"),
    ]}
    s = start(suite, schedule={"interval_seconds": 4})
    runs = s.wait_runs(3, timeout=120)[:3]
    for run in runs:
        flows = {f.case: f for f in results_of(s, run.id)}
        for name in ("client-to-web-no-listener", "client-to-web-no-listener-must-be-denied"):
            f = flows[name]
            assert (f.outcome.value, f.verdict.value) == ("refused", "skipped"), f
            assert f.reason.startswith(f"no listener: {ns}/web answered TCP port 8081 with a reset"), f.reason
            assert not f.violation and not f.enforcement_gap
        assert (flows["client-to-web"].outcome.value, flows["client-to-web"].verdict.value) == ("connected", "allow")
        for name in ("other-to-web-no-listener-denied", "client-to-web-8082-denied"):
            f = flows[name]
            assert (f.outcome.value, f.verdict.value) == ("refused", "deny"), f
            assert not f.violation
    assert all(r.known_good for r in runs), [(r.id, r.status, r.known_good) for r in runs]
    assert s.metric("netpol_drift_cases", state="skipped") == 2
    assert s.metric("netpol_drift_cases", state="pass") == 3
    assert s.metric("netpol_drift_cases", state="fail") == 0
    # `run --once`: the same two cases skipped, so the suite is not verified (exit 1), nothing failed.
    once = s.tmp / "once"
    once.mkdir()
    rc, report = run_monitor(write_config(lab, once), suite, once, "--no-store")
    assert rc == 1 and report["ok"] is False, report
    assert {c["name"]: c["result"] for c in report["cases"]} == {
        "client-to-web": "pass", "client-to-web-no-listener": "skipped",
        "client-to-web-no-listener-must-be-denied": "skipped", "other-to-web-no-listener-denied": "pass",
        "client-to-web-8082-denied": "pass"}
    assert messages(slack) == [] and events(s) == []


@contextmanager
def probe_pods_seen(lab: Lab, ns: str) -> Iterator[dict[str, dict]]:
    """Every probe pod that appears in `ns` while the block runs, as last seen (name -> pod): what the
    scheduler made of it, before the monitor deleted it."""
    seen: dict[str, dict] = {}
    with each_probe_pod(lab, ns, lambda _api, pod: seen.__setitem__(pod["metadata"]["name"], pod), every=0.2):
        yield seen


def probing_run_of(s: Serve, stored_id: str) -> str:
    """The run id a stored run's probe pods carry (RUN_LABEL), from serve's "run <id> ...: stored as <n>" line."""
    found = re.findall(r"run (\w+) \w+ in [\d.]+s \(trigger [^)]*\): stored as " + re.escape(str(stored_id)) + ",",
                       s.log)
    assert len(found) == 1, f"serve logged no (or more than one) run stored as {stored_id}: {s.log[-3000:]}"
    return found[0]


def test_probe_pods_no_node_takes_are_skipped_with_the_schedulers_reason_and_no_alert(
        lab: Lab, lab_namespace: str, start, slack) -> None:
    """Both nodes cordoned (`kubectl cordon`, through the API) while serve runs: the lab's scheduler leaves
    every probe pod Pending with PodScheduled=False/Unschedulable, and the run skips every flow with the
    scheduler's words at its deadline (10 s), deletes its Pending pods, and alerts nothing. Then the same
    with a NoSchedule taint on both nodes. Reopened, the next run verifies everything and is known-good."""
    ns = lab_namespace
    deploy_three_tier(lab, ns)
    suite = clean_suite(ns)
    s = start(suite, schedule={"interval_seconds": 4}, probe={"run_deadline_seconds": 10})
    first = s.wait_runs(1)[0]
    assert first.known_good and first.status == "ok", s.log[-3000:]
    taint = {"key": "netpol-drift.test/maintenance", "value": "true", "effect": "NoSchedule"}
    for closed, scheduler_says in (({"cordon": True}, "2 node(s) were unschedulable."),
                                   ({"cordon": False, "taints": [taint]}, "2 node(s) had untolerated taint(s).")):
        skipped_before = s.metric("netpol_drift_probe_outcomes_total", outcome="skipped")
        began = time.monotonic()
        with lab.nodes_closed(C.NODES, **closed), probe_pods_seen(lab, ns) as seen:
            run = run_where(s, all_skipped(s), tries=4)
            took = time.monotonic() - began
            flows = results_of(s, run.id)
            assert run.status == "partial" and not run.known_good, (closed, run)
            assert {f.outcome.value for f in flows} == {"skipped"} and {f.verdict.value for f in flows} == {"skipped"}
            reason = ("the probe pod could not be scheduled before the run deadline (10s): 0/2 nodes are available: "
                      f"{scheduler_says} preemption: 0/2 nodes are available: 2 Preemption is not helpful for "
                      "scheduling.")
            assert {f.reason for f in flows} == {reason}, {f.reason for f in flows}
            probe_run = probing_run_of(s, run.id)
            mine = [p for p in seen.values() if p["metadata"]["labels"].get(RUN_LABEL) == probe_run]
            assert mine, f"no probe pod of run {probe_run} was seen"
            for pod in mine:  # what the monitor read: the scheduler's condition, never a node
                assert pod["spec"].get("nodeName") is None and pod["status"]["phase"] == "Pending"
                assert {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}.items() <= next(
                    c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled").items()
            # The run deleted its Pending pods: none of them is left (the next run's may exist already).
            left = lab.api.get(f"/api/v1/namespaces/{ns}/pods", labelSelector=f"{RUN_LABEL}={probe_run}")["items"]
            assert left == [], [p["metadata"]["name"] for p in left]
            assert s.metric("netpol_drift_probe_outcomes_total", outcome="skipped") >= skipped_before + len(flows)
            assert s.metric("netpol_drift_cases", state="skipped") == len(suite["cases"])
            assert s.proc.poll() is None, s.log[-3000:]
        print(f"closed {closed}: all-skipped run {run.id} stored {took:.1f} s after closing; "
              f"{len(mine)} probe pod(s) Pending; reason {reason!r}")
    again = run_where(s, lambda r: r.status == "ok")
    assert again.status == "ok" and again.known_good, s.log[-3000:]
    assert s.metric("netpol_drift_cases", state="skipped") == 0
    assert messages(slack) == [] and events(s) == []


# ------------------------------------------------------------------------------------------ item 5: noise
ICMP_KERNEL_DEFAULTS = ("net.ipv4.icmp_ratelimit=1000", "net.ipv4.icmp_msgs_per_sec=1000",
                        "net.ipv4.icmp_msgs_burst=50")


@contextmanager
def kernel_icmp_limits() -> Iterator[None]:
    """The node namespaces (where kube-router REJECTs, so where the ICMP errors come from: every node, as the
    pods spread over them) with the kernel's default ICMP rate limits instead of the lab's unlimited ones;
    restored after."""
    for node in C.NODES:
        netns.run(["ip", "netns", "exec", node.netns, "sysctl", "-q", "-w", *ICMP_KERNEL_DEFAULTS])
    try:
        yield
    finally:
        for node in C.NODES:
            netns.run(["ip", "netns", "exec", node.netns, "sysctl", "-q", "-w", *netns.ICMP_UNLIMITED])


def test_kernel_icmp_rate_limits_and_50_probe_pods_flip_blocked_flows_without_a_single_alert(
        lab: Lab, lab_namespace: str, start, slack) -> None:
    """50 source identities, each probing 4 blocked ports of 2 destinations and 1 allowed one, all at once
    (probe.concurrency 50). With the kernel's ICMP limits kube-router's REJECTs are dropped at random, so the
    blocked flows flip between refused and timeout from run to run: history, never an alert, never a fail."""
    ns = lab_namespace
    sources = [pod_manifest(f"src-{i:02d}", {"app": f"src-{i:02d}", "role": "src"}, tcp=[], command=["sleep", "3600"])
               for i in range(50)]
    # Both destinations on one node: REJECTs come from the destination's node, so all of them share one node's
    # ICMP budget (spread over the lab's two nodes, the kernel limits turned no refusal into a timeout).
    dests = [pod_manifest(f"dst-{i}", {"app": f"dst-{i}", "role": "dst"}, tcp=[8080, 8081, 8082, 8083, 9000],
                          nodeName=C.NODE_NAME) for i in range(2)]
    lab.run_pods(ns, dests + sources, timeout=120)
    since = time.time()
    lab.apply([netpol("dst-only-9000", {"podSelector": {"matchLabels": {"role": "dst"}}, "policyTypes": ["Ingress"],
                                        "ingress": [{"ports": [{"port": 9000}]}]})], namespace=ns)
    lab.wait_synced(since=since)
    cases = []
    for i in range(50):
        for d in range(2):
            to = {"namespace": ns, "pod": f"dst-{d}"}
            cases.append({"name": f"src-{i:02d}-to-dst-{d}-blocked", "from": {"namespace": ns, "pod": f"src-{i:02d}"},
                          "to": to, "ports": [8080, 8081, 8082, 8083], "expect": "deny"})
            cases.append({"name": f"src-{i:02d}-to-dst-{d}-open", "from": {"namespace": ns, "pod": f"src-{i:02d}"},
                          "to": to, "port": 9000, "expect": "allow"})
    s = start({"name": "noise", "cases": cases}, schedule={"interval_seconds": 5},
              probe={"concurrency": 50, "run_deadline_seconds": 120})
    first = s.wait_runs(1, timeout=180)[0]
    assert first.known_good, s.log[-3000:]  # the baseline, with the lab's unlimited ICMP: all refused
    with kernel_icmp_limits():
        n = len(s.runs())
        noisy = s.wait_runs(n + 3, timeout=300)[n:n + 3]
    outcomes: dict[str, int] = {}
    for r in noisy:
        for f in results_of(s, r.id):
            outcomes[f.outcome.value] = outcomes.get(f.outcome.value, 0) + 1
            assert f.verdict.value != "allow" or f.port == 9000, f  # nothing blocked became reachable
    assert outcomes.get("timeout", 0) > 0, f"the ICMP limits turned no refusal into a timeout: {outcomes}"
    assert all(r.status in ("ok", "partial") for r in noisy)
    with Store.open(s.db) as store:
        fails = [f for r in noisy for f in store.get_run(r.id).results if f.violation]
    assert fails == []
    assert messages(slack) == [], [m.body["text"][:200] for m in messages(slack)]
    assert s.metric("netpol_drift_alerts_total", channel="slack", result="sent") == 0
    print(f"noise: outcomes over 3 runs {outcomes}; runs {[r.status for r in noisy]}")


def test_a_flow_that_alternates_every_run_gets_one_flapping_message_then_quiet(lab: Lab, lab_namespace: str,
                                                                               start, slack) -> None:
    """api -> db alternates reachable / blocked (a REJECT inside db's own namespace, where kube-router never
    looks) from one run to the next. The first flap_opens - 1 openings are drift messages (they cannot be
    known to flap yet), the next one is the single "Flapping" message, and then nothing more is posted while
    it keeps alternating."""
    ns = lab_namespace
    pods = deploy_three_tier(lab, ns)
    db = lab.netns_of(pods["db-0"])
    rule = ["INPUT", "-p", "tcp", "--dport", "5432", "-j", "REJECT", "--reject-with", "icmp-port-unreachable",
            "-m", "comment", "--comment", "netpol-drift-flap-test"]
    suite = clean_suite(ns)
    suite["cases"] = [c for c in suite["cases"] if c["name"] == "api-to-db"]
    s = start(suite, alert={"flap_opens": 3, "flap_window_seconds": 3600, "flap_quiet_runs": 50})
    assert s.wait_runs(1)[0].known_good
    broken = False
    try:
        for _ in range(8):  # 4 openings and 4 recoveries
            netns.run(["ip", "netns", "exec", db, "iptables", "-D" if broken else "-I", *rule])
            broken = not broken
            n = len(s.runs())
            # A run by hand: the service's change trigger ignores iptables, so touch what it watches.
            lab.api.merge_patch(f"/api/v1/namespaces/{ns}", {"metadata": {"labels": {
                "netpol-drift-test/flap": secrets.token_hex(3)}}})
            s.wait_runs(n + 1)
            time.sleep(1.0)  # the after-run alert pass
    finally:
        if broken:
            netns.run(["ip", "netns", "exec", db, "iptables", "-D", *rule])
    deadline = time.monotonic() + 30
    while s.metric("netpol_drift_alert_queue_depth") != 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    heads = [m.body["text"].splitlines()[0] for m in messages(slack)]
    flapping = [h for h in heads if h.startswith("Flapping on lab")]
    assert len(flapping) == 1, heads
    assert len(heads) == 3 and heads[2] == flapping[0], heads  # two drift messages, then the flapping one
    assert s.metric("netpol_drift_alerts_total", channel="slack", result="suppressed") >= 1
    assert s.metric("netpol_drift_alert_queue_depth") == 0


# ------------------------------------------------------------------------------------------- item 8: load
SOAK = os.environ.get("NPD_TEST_SOAK") == "1"


def load_sizes() -> tuple[int, int, int, int]:
    """(namespaces, destinations per source namespace, runs, interval seconds): small in `make test`, the
    issue's sizes (500 namespaces, 5,000 cases) with NPD_TEST_SOAK=1."""
    if SOAK:
        return (int(os.environ.get("NPD_SOAK_NAMESPACES", "500")), 10, int(os.environ.get("NPD_SOAK_RUNS", "20")),
                int(os.environ.get("NPD_SOAK_INTERVAL", "300")))
    return 20, 10, 6, 15


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_load_many_namespaces_every_run_inside_the_interval_and_memory_flat(lab: Lab, lab_namespace: str,
                                                                            start, slack) -> None:
    """N namespaces with one listening pod each (every other one behind a default-deny), a suite of N x 10
    cases (each namespace's pod to the next 10 namespaces' pods): every run ends inside the interval, every
    case is verified, no alert, and serve's resident memory after the last run is within a few MB of the
    second run's. `make test`: 20 namespaces, 200 cases, 6 runs; NPD_TEST_SOAK=1: 500 namespaces, 5,000."""
    count, fan, runs, interval = load_sizes()
    names = [f"{lab_namespace}-{i:03d}"[:63] for i in range(count)]
    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: lab.create_namespace(n), names))
            pod = pod_manifest("app", {"app": "app"}, tcp=[8080])
            list(pool.map(lambda n: lab.api.post(f"/api/v1/namespaces/{n}/pods", pod), names))
            since = time.time()
            for n in names[1::2]:  # one at a time: the harness's apply shares one dynamic client
                lab.apply([netpol("default-deny", {"podSelector": {}, "policyTypes": ["Ingress"]})], namespace=n)
            list(pool.map(lambda n: lab.wait_running(n, "app", timeout=600), names))
        lab.wait_synced(since=since, timeout=120)
        cases = [{"name": f"{names[i][-3:]}-to-{names[(i + k) % count][-3:]}", "from": {"namespace": names[i],
                  "pod": "app"}, "to": {"namespace": names[(i + k) % count], "pod": "app"}, "port": 8080,
                  "expect": "deny" if ((i + k) % count) % 2 else "allow"} for i in range(count)
                 for k in range(1, fan + 1)]
        s = start({"name": "load", "cases": cases}, schedule={"interval_seconds": interval},
                  probe={"concurrency": 50, "run_deadline_seconds": interval})
        memory = []
        seen = 0
        while seen < runs:
            got = s.wait_runs(seen + 1, timeout=interval * 3 + 120)
            seen = len(got)
            memory.append(rss_mb(s.proc.pid))
        stored = s.runs()[:runs]
        # Each run's whole wall time as serve logs it (snapshot, probes, re-probes, store, alerts).
        took = {m[1]: float(m[0]) for m in re.findall(r"run \w+ \w+ in ([\d.]+)s \(trigger \w+\): stored as (\w+)",
                                                      s.log)}
        durations = [took[r.id] for r in stored if r.id in took]
        assert len(durations) == runs, (took, [r.id for r in stored])
        assert all(r.status == "ok" for r in stored), [(r.id, r.status) for r in stored]
        assert max(durations) < interval, durations
        assert len(results_of(s, stored[-1].id)) == len(cases)
        assert messages(slack) == []
        growth = memory[-1] - memory[1]
        print(f"load: {count} namespaces, {len(cases)} cases, {runs} runs; run seconds "
              f"{[round(d, 1) for d in durations]}; RSS MB {[round(m, 1) for m in memory]}; growth after run 2 "
              f"{growth:+.1f} MB")
        assert growth < 15.0, memory
    finally:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: _delete_namespace(lab, n), names))


def _delete_namespace(lab: Lab, name: str) -> None:
    try:
        lab.delete_namespace(name, timeout=300)
    except ApiError as e:
        if e.status != 404:
            raise

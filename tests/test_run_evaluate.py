"""run.evaluate folds the replicas of a destination into one result per flow (issue 20, item 2).

When replicas disagree (one connected, one timed out), the result must be the outcome that contradicts what
the policies say, since that is the one someone has to look at, with the reason "replicas disagree: ...".
The probe reports are built by hand (the boundary of the probe runner); the plan, the engine and the folding
are the real ones. tests/test_replicas_lab.py does the same with a real dataplane fault in the lab.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from monitor.compare import assess, becomes_known_good, changed_outcomes, confirm, could_not_probe
from monitor.models import LabelSelector, NetworkPolicy, Outcome, Run, Snapshot, Verdict, labels_of, suite_exit_code
from monitor.plan import plan_suite
from monitor.probe.runner import ProbeReport
from monitor.probe.wire import CLOSED_AT_DESTINATION, RESET_BY_DESTINATION, TargetOutcome
from monitor.run import evaluate, probe_tasks, refusal_means, summarise
from monitor.settings import DriftSettings, ProbeSettings
from monitor.suite import parse_suite
from tests.test_plan import _snapshot

API_A, API_B = "10.0.0.3", "10.0.0.4"  # shop/api-a and shop/api-b, replicas of Deployment/api


def _suite(expect: str):
    return parse_suite({"name": "t", "cases": [
        {"name": "web-to-api", "from": {"namespace": "shop", "workload": "web"},
         "to": {"namespace": "shop", "workload": "api"}, "port": "http", "expect": expect}]})


def _deny_api(snap: Snapshot) -> Snapshot:
    deny = NetworkPolicy("shop", "api-deny-all", LabelSelector(labels_of({"app": "api"})), frozenset({"Ingress"}))
    return Snapshot.build(snap.namespaces, snap.pods, snap.services, (*snap.policies, deny))


def _evaluate(snap: Snapshot, suite, seen: dict[str, str]):
    plan = plan_suite(suite, snap)
    tasks, index = probe_tasks(plan)
    reports = [ProbeReport(t, tuple(TargetOutcome(seen[x.host], 2.0 if seen[x.host] == "connected" else None)
                                    for x in t.targets), pod=f"shop/probe-{i}", node="n1")
               for i, t in enumerate(tasks)]
    results = evaluate(plan, snap, reports, index, "deny")
    return results, summarise(suite, results)


@pytest.mark.parametrize("broken", [API_A, API_B])
def test_policies_allow_one_replica_times_out_the_timeout_is_reported(broken):
    seen = {API_A: "connected", API_B: "connected", broken: "timeout"}
    [r], [case] = _evaluate(_snapshot(), _suite("allow"), seen)
    assert r.intent is Verdict.ALLOW
    assert (r.outcome, r.verdict) == (Outcome.TIMEOUT, Verdict.DENY)
    assert r.reason == f"replicas disagree: shop/api-a={seen[API_A]}, shop/api-b={seen[API_B]}"
    assert r.violation and r.enforcement_gap and r.latency_ms is None
    assert case.status == "fail" and case.enforcement_gap and case.explanation.startswith("replicas disagree: ")


@pytest.mark.parametrize("leaky", [API_A, API_B])
def test_policies_deny_one_replica_connects_the_connection_is_reported(leaky):
    seen = {API_A: "timeout", API_B: "timeout", leaky: "connected"}
    [r], [case] = _evaluate(_deny_api(_snapshot()), _suite("deny"), seen)
    assert r.intent is Verdict.DENY
    assert (r.outcome, r.verdict, r.latency_ms) == (Outcome.CONNECTED, Verdict.ALLOW, 2.0)
    assert r.reason == f"replicas disagree: shop/api-a={seen[API_A]}, shop/api-b={seen[API_B]}"
    assert r.violation and r.enforcement_gap
    assert case.status == "fail"


def test_agreeing_replicas_are_one_result_without_a_disagreement():
    [r], [case] = _evaluate(_snapshot(), _suite("allow"), {API_A: "connected", API_B: "connected"})
    assert (r.outcome, r.reason, case.status) == (Outcome.CONNECTED, "", "pass")


@pytest.mark.parametrize(("passes", "refused_means", "want"), [
    ("r>t>r", "deny", Outcome.REFUSED),  # blocked in every pass, only how differs: blocked
    ("t>r>t", "deny", Outcome.TIMEOUT),
    ("r>c>r", "deny", Outcome.UNSETTLED),  # reachable once: really unsettled
    ("r>t>r", "unknown", Outcome.UNSETTLED),  # refused says nothing here, so the passes do disagree
])
def test_passes_that_only_disagree_on_how_a_flow_is_blocked_are_blocked(passes, refused_means, want):
    """Issue 15 item 5: with the kernel's ICMP rate limits a REJECTing CNI's refusals turn into timeouts at
    random, so a blocked flow's passes can read r>t>r: blocked each time, not unsettled."""
    snap = _deny_api(_snapshot())
    plan = plan_suite(_suite("deny"), snap)
    tasks, index = probe_tasks(plan)
    reports = [ProbeReport(t, tuple(TargetOutcome("unsettled", None, passes) for _ in t.targets), pod="shop/p",
                           node="n1") for t in tasks]
    [r] = evaluate(plan, snap, reports, index, refused_means)
    assert r.outcome is want
    if want is Outcome.UNSETTLED:
        assert r.verdict is Verdict.SKIPPED and "unsettled" in r.reason
    else:
        assert r.verdict is Verdict.DENY and r.reason == f"{want.value} (passes {passes}: blocked in every one)"


def _udp_results(expect: str, outcome: TargetOutcome):
    suite = parse_suite({"name": "t", "cases": [
        {"name": "web-to-api-udp", "from": {"namespace": "shop", "workload": "web"},
         "to": {"namespace": "shop", "workload": "api"}, "port": 5353, "protocol": "UDP", "expect": expect}]})
    snap = _snapshot()
    plan = plan_suite(suite, snap)
    tasks, index = probe_tasks(plan)
    reports = [ProbeReport(t, tuple(outcome for _ in t.targets), pod=f"shop/probe-{i}", node="n1")
               for i, t in enumerate(tasks)]
    results = evaluate(plan, snap, reports, index, {"TCP": "deny", "SCTP": "deny", "UDP": "deny"})
    return results, summarise(suite, results)


@pytest.mark.parametrize("expect", ["allow", "deny"])
def test_udp_refused_by_the_destination_itself_is_unknown_never_a_pass(expect):
    """Nothing listens on the UDP port: the destination's own kernel answered, which proves neither that the
    policies allow the flow nor that they block it, whatever udp_refused_means says about REJECTing CNIs."""
    [r], [case] = _udp_results(expect, TargetOutcome("refused", 0.4, CLOSED_AT_DESTINATION))
    assert (r.outcome, r.verdict) == (Outcome.REFUSED, Verdict.UNKNOWN)
    assert "nothing listens on the port" in r.reason
    assert not r.violation and not r.enforcement_gap
    assert case.status == "unknown"


def test_udp_refused_by_something_in_between_follows_udp_refused_means():
    [r], [case] = _udp_results("deny", TargetOutcome("refused", 0.4))
    assert (r.outcome, r.verdict, case.status) == (Outcome.REFUSED, Verdict.DENY, "pass")


# ------------------------------------------------------------------------------- TCP: reset vs ICMP reject
def _tcp_results(expect: str, outcome: TargetOutcome, reset_means: str = "skipped", deny_api: bool = False):
    suite = _suite(expect)
    snap = _deny_api(_snapshot()) if deny_api else _snapshot()
    plan = plan_suite(suite, snap)
    tasks, index = probe_tasks(plan)
    reports = [ProbeReport(t, tuple(outcome for _ in t.targets), pod=f"shop/probe-{i}", node="n1")
               for i, t in enumerate(tasks)]
    means = refusal_means(ProbeSettings(refused_means="deny", tcp_reset_means=reset_means))
    results = evaluate(plan, snap, reports, index, means)
    return results, summarise(suite, results)


@pytest.mark.parametrize("expect", ["allow", "deny"])
def test_tcp_reset_by_the_destination_is_skipped_naming_the_missing_listener(expect):
    """Issue 15 item 2: nothing listens on the allowed port, so the destination's kernel resets the SYN. With
    refused_means deny (kube-router REJECTs) that read as blocked: a deny case passed on nothing verified, an
    allow case failed on a policy block that was a missing listener. Now: no verdict, the case is skipped."""
    [r], [case] = _tcp_results(expect, TargetOutcome("refused", 0.3, RESET_BY_DESTINATION))
    assert (r.outcome, r.verdict) == (Outcome.REFUSED, Verdict.SKIPPED)
    assert r.reason.startswith("no listener: shop/api-")
    assert "answered TCP port 8080 with a reset, so nothing listens there" in r.reason
    assert not r.violation and not r.enforcement_gap and not r.observed
    assert case.status == "skipped" and case.explanation == r.reason
    assert suite_exit_code([case.status]) == 1  # not verified: never exit 0


def test_tcp_refused_by_icmp_still_follows_refused_means():
    """The same port blocked by the policies: kube-router's ICMP port unreachable (from its node) reaches the
    agent's error queue, so the refusal carries no `reset` detail and refused_means deny still judges it."""
    [r], [case] = _tcp_results("deny", TargetOutcome("refused", 0.3), deny_api=True)
    assert (r.outcome, r.verdict, case.status) == (Outcome.REFUSED, Verdict.DENY, "pass")


@pytest.mark.parametrize(("reset_means", "verdict", "status"), [
    ("deny", Verdict.DENY, "pass"),  # a CNI that rejects with a forged reset (Antrea's Reject, OVN-Kubernetes)
    ("allow", Verdict.ALLOW, "fail"),  # a dropping CNI: the SYN got through the policies
])
def test_tcp_reset_means_other_than_skipped_is_a_verdict(reset_means, verdict, status):
    [r], [case] = _tcp_results("deny", TargetOutcome("refused", 0.3, RESET_BY_DESTINATION), reset_means)
    assert (r.outcome, r.verdict, case.status) == (Outcome.REFUSED, verdict, status)
    assert r.reason == f"refused (reset: probe.tcp_reset_means {reset_means})"


def test_a_skipped_reset_is_no_drift_and_does_not_hold_back_the_baseline():
    """A listener that went away (connected -> reset) is no drift candidate, no violation, and the run can
    still become known-good: a missing listener is a fact about the cluster, not a failed probe."""
    [before], _ = _tcp_results("allow", TargetOutcome("connected", 0.3))
    [after], _ = _tcp_results("allow", TargetOutcome("refused", 0.3, RESET_BY_DESTINATION))
    other = replace(before, case="another-case")  # observed in both runs: the baseline needs one observation
    base = Run("c", "2026-01-01T00:00:00+00:00", None, "manual", "d", "s", (before, other), id="1")
    run = Run("c", "2026-01-01T00:05:00+00:00", None, "manual", "d", "s", (after, other), id="2")
    a = assess(run, base)
    assert a.changed == () and a.violations == () and a.gaps == ()
    assert not could_not_probe(after)
    assert becomes_known_good(a, confirm(changed_outcomes(a), [], 1), DriftSettings())


@pytest.mark.parametrize("empty", [API_A, API_B])
def test_a_replica_without_a_listener_does_not_hide_one_that_connects(empty):
    """One api replica listens, the other has nothing on the port (its reset is no verdict): the flow is
    judged by the replica that answered, and the reason says the replicas disagree."""
    snap, suite = _snapshot(), _suite("allow")
    plan = plan_suite(suite, snap)
    tasks, index = probe_tasks(plan)
    seen = {API_A: TargetOutcome("connected", 2.0), API_B: TargetOutcome("connected", 2.0),
            empty: TargetOutcome("refused", 0.3, RESET_BY_DESTINATION)}
    reports = [ProbeReport(t, tuple(seen[x.host] for x in t.targets), pod=f"shop/probe-{i}", node="n1")
               for i, t in enumerate(tasks)]
    [r] = evaluate(plan, snap, reports, index, refusal_means(ProbeSettings()))
    assert (r.outcome, r.verdict) == (Outcome.CONNECTED, Verdict.ALLOW)
    assert r.reason.startswith("replicas disagree: ") and "=refused" in r.reason
    assert summarise(suite, [r])[0].status == "pass"

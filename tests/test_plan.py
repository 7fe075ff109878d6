"""The planner, the suite generator and the outcome mapping, on snapshots built in memory (pure stages)."""

from __future__ import annotations

import yaml

from monitor.analyze import check_suite
from monitor.engine import Engine
from monitor.models import (
    ContainerPort,
    LabelSelector,
    Namespace,
    NetworkPolicy,
    Outcome,
    Pod,
    PolicyPeer,
    PolicyPort,
    PolicyRule,
    Service,
    ServicePort,
    Snapshot,
    Verdict,
    labels_of,
)
from monitor.plan import generate_cases, plan_suite, render_suite_yaml
from monitor.probe.runner import ProbeTask, probe_pod_manifest
from monitor.probe.wire import ProbeTarget
from monitor.run import outcome_verdict, probe_tasks
from monitor.settings import ProbeSettings
from monitor.suite import parse_suite


def _pod(ns: str, name: str, workload: str | None, ip: str, node: str, **labels: str) -> Pod:
    ports = (ContainerPort(8080, "TCP", "http"), ContainerPort(5432, "TCP", "pg"))
    return Pod(ns, name, labels_of(labels), ip, ports, node, False, workload)


def _snapshot() -> Snapshot:
    pods = [
        _pod("shop", "web-a", "Deployment/web", "10.0.0.1", "n1", app="web"),
        _pod("shop", "web-b", "Deployment/web", "10.0.0.2", "n2", app="web"),
        _pod("shop", "api-a", "Deployment/api", "10.0.0.3", "n1", app="api"),
        _pod("shop", "api-b", "Deployment/api", "10.0.0.4", "n2", app="api"),
        _pod("shop", "db-0", "StatefulSet/db", "10.0.0.5", "n1", app="db"),
    ]
    only_api_to_db = NetworkPolicy(
        "shop", "db", LabelSelector(labels_of({"app": "db"})), frozenset({"Ingress"}),
        ingress=(PolicyRule(peers=(PolicyPeer(pod_selector=LabelSelector(labels_of({"app": "api"}))),),
                            ports=(PolicyPort("TCP", 5432),)),))
    api_svc = Service("shop", "api", labels_of({"app": "api"}), "10.96.0.10", (ServicePort(80, "http", "TCP"),))
    return Snapshot.build([Namespace("shop")], pods, [api_svc], [only_api_to_db])


SUITE = parse_suite({"name": "t", "cases": [
    {"name": "web-to-api", "from": {"namespace": "shop", "workload": "web"},
     "to": {"namespace": "shop", "workload": "api"}, "port": "http", "expect": "allow"},
    {"name": "web-to-db", "from": {"namespace": "shop", "workload": "web"},
     "to": {"namespace": "shop", "workload": "db"}, "port": 5432, "expect": "deny"},
    {"name": "web-to-api-svc", "from": {"namespace": "shop", "labels": {"app": "web"}},
     "to": {"service": "shop/api"}, "port": 80, "expect": "allow"},
    {"name": "ghost-to-api", "from": {"namespace": "shop", "workload": "ghost"},
     "to": {"namespace": "shop", "workload": "api"}, "port": 8080, "expect": "allow"},
]})


def test_flows_are_grouped_by_source_identity_with_one_representative():
    plan = plan_suite(SUITE, _snapshot())
    assert [g.identity for g in plan.groups] == ["shop/web"]
    group = plan.groups[0]
    assert group.representative.name == "web-a"  # the same pod for every case: first by name
    assert {f.source_pod.name for f in group.flows} == {"web-a"}
    # Both api replicas are probed (a fault on one node hits one replica), on the named port's number.
    api = sorted((f.address, f.port) for f in group.flows if f.case == "web-to-api")
    assert api == [("10.0.0.3", 8080), ("10.0.0.4", 8080)]
    # Two replicas of the source do not double the flows.
    assert sum(1 for f in group.flows if f.case == "web-to-db") == 1


def test_service_destination_becomes_backing_pods_on_the_target_port_and_optionally_the_cluster_ip():
    plan = plan_suite(SUITE, _snapshot())
    svc = sorted((f.address, f.port) for f in plan.groups[0].flows if f.case == "web-to-api-svc")
    assert svc == [("10.0.0.3", 8080), ("10.0.0.4", 8080)]
    with_ip = plan_suite(SUITE, _snapshot(), via_cluster_ip=True)
    svc = sorted((f.address, f.port, f.destination) for f in with_ip.groups[0].flows if f.case == "web-to-api-svc")
    assert ("10.96.0.10", 80, "svc/shop/api") in svc


def test_case_without_live_source_is_skipped_with_the_reason():
    plan = plan_suite(SUITE, _snapshot())
    [skipped] = plan.skipped
    assert skipped.case == "ghost-to-api"
    assert "no live pod matches source shop/ghost" in skipped.skip_reason


def test_per_node_mode_pins_one_group_per_node():
    plan = plan_suite(SUITE, _snapshot(), per_node=True)
    assert [(g.identity, g.node) for g in plan.groups] == [("shop/web", "n1"), ("shop/web", "n2")]
    assert {f.source for f in plan.groups[1].flows} == {"shop/web@n2"}


def test_probe_tasks_probe_each_address_once():
    plan = plan_suite(SUITE, _snapshot())
    tasks, index = probe_tasks(plan)
    [task] = tasks
    # web-to-api and web-to-api-svc both reach 10.0.0.3:8080 and 10.0.0.4:8080: one probe each.
    assert sorted((t.host, t.port) for t in task.targets) == [("10.0.0.3", 8080), ("10.0.0.4", 8080),
                                                              ("10.0.0.5", 5432)]
    assert task.labels == (("app", "web"),) and task.namespace == "shop"
    assert len(index[0]) == 3


def test_outcome_mapping():
    assert outcome_verdict(Outcome.CONNECTED, "TCP", "deny") is Verdict.ALLOW
    assert outcome_verdict(Outcome.REFUSED, "TCP", "deny") is Verdict.DENY
    assert outcome_verdict(Outcome.REFUSED, "TCP", "unknown") is Verdict.UNKNOWN
    assert outcome_verdict(Outcome.TIMEOUT, "TCP", "deny") is Verdict.DENY
    assert outcome_verdict(Outcome.TIMEOUT, "UDP", "deny") is Verdict.UNKNOWN
    assert outcome_verdict(Outcome.SKIPPED, "TCP", "deny") is Verdict.SKIPPED


def test_udp_refusals_have_their_own_meaning():
    """Issue 8 item 7: TCP and UDP apart (DESIGN.md, Verdicts): probe.udp_refused_means."""
    from monitor.run import refusal_means
    from monitor.settings import load_settings

    settings = load_settings(env={"NETPOL_DRIFT_PROBE_UDP_REFUSED_MEANS": "unknown"})
    means = refusal_means(settings.probe)
    assert outcome_verdict(Outcome.REFUSED, "UDP", means) is Verdict.UNKNOWN
    assert outcome_verdict(Outcome.REFUSED, "TCP", means) is Verdict.DENY
    assert outcome_verdict(Outcome.REFUSED, "SCTP", means) is Verdict.DENY
    means = refusal_means(load_settings(env={"NETPOL_DRIFT_PROBE_REFUSED_MEANS": "allow"}).probe)
    assert outcome_verdict(Outcome.REFUSED, "UDP", means) is Verdict.DENY
    assert outcome_verdict(Outcome.REFUSED, "TCP", means) is Verdict.ALLOW


def test_generated_suite_is_valid_commented_stable_and_agrees_with_the_policies():
    snap = _snapshot()
    engine = Engine(snap)
    cases = generate_cases(snap, decide=engine.decide)
    text = render_suite_yaml(cases, "test")
    assert text == render_suite_yaml(generate_cases(snap, decide=Engine(snap).decide), "test")
    assert "# policies say deny" in text and "# policies say allow" in text
    suite = parse_suite(yaml.safe_load(text))
    # identities: web, api, db -> 6 ordered pairs x 2 declared ports
    assert len(suite.cases) == 12
    assert "shop-web-to-shop-db-tcp-5432" in {c.name for c in suite.cases}
    assert all(c.status == "pass" for c in check_suite(snap, suite))
    expect = {c.name: c.expect for c in suite.cases}
    assert expect["shop-api-to-shop-db-tcp-5432"] is Verdict.ALLOW
    assert expect["shop-web-to-shop-db-tcp-5432"] is Verdict.DENY


def test_generated_suite_cut_keeps_allowed_and_denied():
    snap = _snapshot()
    cases = generate_cases(snap, max_cases=4, decide=Engine(snap).decide)
    assert len(cases) == 4
    assert {c.expect for c in cases} == {Verdict.ALLOW, Verdict.DENY}


def test_probe_pod_manifest_is_locked_down():
    task = ProbeTask("shop/web", "shop", (("app", "web"),), (ProbeTarget("10.0.0.3", 8080),), node="n2")
    m = probe_pod_manifest(task, "netpol-drift-probe-x-0", "x", ProbeSettings(), "uid-1", "host.42")
    assert m["metadata"]["labels"] == {"app": "web", "netpol-drift.io/probe": "true", "netpol-drift.io/run": "x",
                                       "netpol-drift.io/owner": "host.42"}
    [owner] = m["metadata"]["ownerReferences"]
    assert owner["controller"] is True and owner["kind"] == "Namespace" and owner["uid"] == "uid-1"
    spec = m["spec"]
    assert spec["nodeName"] == "n2" and spec["restartPolicy"] == "Never"
    assert spec["automountServiceAccountToken"] is False and spec["enableServiceLinks"] is False
    [c] = spec["containers"]
    assert c["command"] == ["netpol-drift", "probe-agent"]
    assert c["args"][-1] == "T10.0.0.3:8080"
    assert c["readinessProbe"]["exec"]["command"] == ["false"]
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_udp_case_on_a_port_name_declared_only_for_tcp_is_skipped():
    """Issue 20, item 3: a port name resolves only on the case's protocol. The api pods declare `http` as
    TCP 8080 only: a UDP case on `http` must not probe 8080/UDP, and says why per destination pod."""
    snap = _snapshot()
    dns = Pod("shop", "dns-0", labels_of({"app": "dns"}), "10.0.0.6", (ContainerPort(53, "UDP", "dns"),), "n1",
              False, "StatefulSet/dns")
    snap = Snapshot.build(snap.namespaces, (*snap.pods, dns), snap.services, snap.policies)
    suite = parse_suite({"name": "t", "cases": [
        {"name": "web-to-api-udp", "from": {"namespace": "shop", "workload": "web"},
         "to": {"namespace": "shop", "workload": "api"}, "port": "http", "protocol": "UDP", "expect": "deny"},
        {"name": "web-to-dns-udp", "from": {"namespace": "shop", "workload": "web"},
         "to": {"namespace": "shop", "workload": "dns"}, "port": "dns", "protocol": "UDP", "expect": "allow"}]})
    plan = plan_suite(suite, snap)
    assert [(f.case, f.address, f.port, f.protocol) for g in plan.groups for f in g.flows] == [
        ("web-to-dns-udp", "10.0.0.6", 53, "UDP")]
    assert sorted((f.case, f.skip_reason) for f in plan.skipped) == [
        ("web-to-api-udp", "shop/api-a declares no UDP port named 'http'"),
        ("web-to-api-udp", "shop/api-b declares no UDP port named 'http'")]
    udp, dns_case = check_suite(snap, suite)
    assert udp.status == "skipped" and {f.reason for f in udp.flows} == {
        "shop/api-a declares no UDP port named 'http'", "shop/api-b declares no UDP port named 'http'"}
    assert dns_case.status == "pass"


def test_run_exits_0_only_when_every_case_was_probed_and_met():
    """Issue 8 item 2: skipped, partial and unknown cases make `run --once` exit 1 unless --allow-skipped."""
    from monitor.models import FlowResult, Run
    from monitor.run import LiveRun, summarise

    def flow(case: str, expected: str, outcome: Outcome, verdict: Verdict, dst: str = "shop/api") -> FlowResult:
        return FlowResult(case, "shop/web", dst, 8080, "TCP", Verdict(expected), Verdict(expected), outcome,
                          verdict, reason="" if outcome is not Outcome.SKIPPED else "no live pod matches")

    def live(*results: FlowResult) -> LiveRun:
        names = list(dict.fromkeys(r.case for r in results))
        suite = parse_suite({"cases": [
            {"name": n, "from": {"namespace": "shop", "workload": "web"},
             "to": {"namespace": "shop", "workload": "api"}, "port": 8080, "expect": "allow"} for n in names]})
        run = Run("c", "2026-01-01T00:00:00+00:00", None, "manual", "d", suite.digest, tuple(results))
        return LiveRun(run, tuple(summarise(suite, list(results))), _snapshot(), 0, 0.0)

    passed = flow("a", "allow", Outcome.CONNECTED, Verdict.ALLOW)
    skipped = flow("b", "allow", Outcome.SKIPPED, Verdict.SKIPPED)
    assert live(passed).exit_code() == 0
    both = live(passed, skipped)
    assert [c.status for c in both.cases] == ["pass", "skipped"]
    assert both.exit_code() == 1 and both.exit_code(allow_skipped=True) == 0
    partial = live(passed, flow("a", "allow", Outcome.SKIPPED, Verdict.SKIPPED, dst="shop/api-2"))
    assert [c.status for c in partial.cases] == ["partial"] and partial.exit_code() == 1
    unknown = live(flow("u", "allow", Outcome.ERROR, Verdict.UNKNOWN))
    assert [c.status for c in unknown.cases] == ["unknown"] and unknown.exit_code() == 1
    failed = live(flow("f", "allow", Outcome.TIMEOUT, Verdict.DENY), skipped)
    assert failed.exit_code() == 1 and failed.exit_code(allow_skipped=True) == 1


def test_external_targets_are_judged_only_with_a_control_probe():
    """Issue 8 item 7: `cidr: 0.0.0.0/0` probes 0.0.0.1, which nothing answers: every deny case to it passed."""
    from monitor.plan import CONTROL_POD
    from monitor.probe.runner import ProbeReport
    from monitor.probe.wire import TargetOutcome
    from monitor.run import evaluate, summarise

    suite = parse_suite({"cases": [
        {"name": "no-internet", "from": {"namespace": "shop", "workload": "web"}, "to": {"cidr": "0.0.0.0/0"},
         "port": 443, "expect": "deny"},
        {"name": "no-partner", "from": {"namespace": "shop", "workload": "web"}, "to": {"host": "192.0.2.10"},
         "port": 443, "expect": "deny"},
        {"name": "partner-api", "from": {"namespace": "shop", "workload": "api"}, "to": {"host": "192.0.2.10"},
         "port": 443, "expect": "allow"},
    ]})
    snap = _snapshot()
    plan = plan_suite(suite, snap, control_namespace="netpol-drift")
    control = plan.groups[-1]
    assert (control.namespace, control.representative.name, control.representative.labels) == (
        "netpol-drift", CONTROL_POD, ())
    assert sorted((f.address, f.port) for f in control.flows) == [("0.0.0.1", 443), ("192.0.2.10", 443)]
    tasks, index = probe_tasks(plan)
    seen = {("shop/api", "192.0.2.10"): "connected", ("shop/web", "0.0.0.1"): "timeout",
            ("shop/web", "192.0.2.10"): "timeout", ("netpol-drift/netpol-drift-control", "0.0.0.1"): "timeout",
            ("netpol-drift/netpol-drift-control", "192.0.2.10"): "connected"}
    reports = [ProbeReport(t, tuple(TargetOutcome(seen[(t.identity, x.host)]) for x in t.targets)) for t in tasks]
    results = {r.case: r for r in evaluate(plan, snap, reports, index, "deny")}
    assert set(results) == {"no-internet", "no-partner", "partner-api"}  # the control is no case of its own
    internet = results["no-internet"]
    assert internet.outcome is Outcome.TIMEOUT and internet.verdict is Verdict.UNKNOWN
    assert "the control probe from netpol-drift/netpol-drift-control got timeout too" in internet.reason
    assert results["no-partner"].verdict is Verdict.DENY  # the control reached it: the block is real
    assert "control probe from netpol-drift/netpol-drift-control reached 192.0.2.10:443/TCP" in \
        results["no-partner"].reason
    assert results["partner-api"].verdict is Verdict.ALLOW
    cases = {c.name: c.status for c in summarise(suite, list(results.values()))}
    assert cases == {"no-internet": "unknown", "no-partner": "pass", "partner-api": "pass"}
    # Without a control (or when it could not run) a blocked external probe is never a verdict.
    bare = plan_suite(suite, snap)
    tasks, index = probe_tasks(bare)
    reports = [ProbeReport(t, tuple(TargetOutcome(seen[(t.identity, x.host)]) for x in t.targets)) for t in tasks]
    results = {r.case: r for r in evaluate(bare, snap, reports, index, "deny")}
    assert results["no-partner"].verdict is Verdict.UNKNOWN and "no control probe" in results["no-partner"].reason
    tasks, index = probe_tasks(plan)
    reports = [ProbeReport(t, tuple(TargetOutcome(seen[(t.identity, x.host)]) for x in t.targets))
               if t.namespace != "netpol-drift" else ProbeReport(t, (None, None), skipped_reason="not scheduled")
               for t in tasks]
    results = {r.case: r for r in evaluate(plan, snap, reports, index, "deny")}
    assert results["no-partner"].verdict is Verdict.UNKNOWN
    assert "could not run (not scheduled)" in results["no-partner"].reason


def test_an_unsettled_outcome_is_no_verdict_and_fails_or_passes_nothing():
    """Issue 8 item 4: a flow whose probe passes disagree (reported `n` by the agent) is skipped with that
    reason: not pass, not fail, the run is partial, and compare does not count it as observed."""
    from monitor.compare import NOT_OBSERVED
    from monitor.probe.runner import ProbeReport
    from monitor.probe.wire import TargetOutcome, decode_result
    from monitor.run import evaluate, summarise

    snap = _snapshot()
    suite = parse_suite({"name": "t", "cases": [
        {"name": "web-to-db", "from": {"namespace": "shop", "workload": "web"},
         "to": {"namespace": "shop", "workload": "db"}, "port": 5432, "expect": "deny"}]})
    plan = plan_suite(suite, snap)
    tasks, index = probe_tasks(plan)
    [task] = tasks
    _, [got] = decode_result("P1 1 L n E 0=c>r>c")
    assert got == TargetOutcome("unsettled", None, "c>r>c")
    [r] = evaluate(plan, snap, [ProbeReport(task, (got,))], index, "deny")
    assert (r.outcome, r.verdict, r.violation) == (Outcome.UNSETTLED, Verdict.SKIPPED, False)
    assert r.reason == "unsettled: the probe's passes disagree (c>r>c), not a verdict"
    [c] = summarise(suite, [r])
    assert c.status == "skipped" and "unsettled" in c.explanation
    assert r.outcome in NOT_OBSERVED

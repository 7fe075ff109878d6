"""compare: violations, gaps, drift, re-probe confirmation, causes (fake and real engine), event sequences."""

from __future__ import annotations

import dataclasses

import pytest

from monitor.compare import (
    Cause,
    DriftEvent,
    align_runs,
    assess,
    attribute_cause,
    becomes_known_good,
    changed_outcomes,
    confirm,
    diff_runs,
    judge,
    parse_namespace_map,
    resolve_endpoint,
    transitions,
)
from monitor.errors import InputError
from monitor.models import (
    FlowResult,
    LabelSelector,
    Namespace,
    NetworkPolicy,
    Outcome,
    Pod,
    PolicyPeer,
    PolicyRule,
    Run,
    Service,
    ServicePort,
    Snapshot,
    Verdict,
    labels_of,
)
from monitor.settings import DriftSettings

A, D = Verdict.ALLOW, Verdict.DENY
C, T, S = Outcome.CONNECTED, Outcome.TIMEOUT, Outcome.SKIPPED


def result(case: str, outcome: Outcome, expected: Verdict = A, intent: Verdict = A) -> FlowResult:
    verdict = {C: A, T: D, Outcome.REFUSED: D, S: Verdict.SKIPPED}[outcome]
    return FlowResult(case, "shop/web", "shop/db", 5432, "TCP", expected, intent, outcome, verdict)


def run(*results: FlowResult, at: str = "2026-11-29T00:00:00Z", rid: str | None = None) -> Run:
    return Run("prod", at, at, "schedule", "sha256:s", "sha256:suite", tuple(results), id=rid)


# ------------------------------------------------------------------------------------------- assessment
def test_assess_finds_violations_gaps_and_changes() -> None:
    base = run(result("a", C), result("b", T, D, D), result("c", C), result("d", S))
    now = run(result("a", T), result("b", T, D, D), result("c", C, D, A), result("d", C), result("new", C))
    a = assess(now, base)
    assert [f.key.split("|")[0] for f in a.violations] == ["a", "c"]
    assert [f.key.split("|")[0] for f in a.gaps] == ["a"]
    # d was skipped in the baseline: no known outcome to drift from; "new" has no baseline at all.
    assert [f.key.split("|")[0] for f in a.changed] == ["a"]
    assert a.changed[0].detail == "connected -> timeout since known-good"
    assert a.violations[0].detail == "expected allow, observed deny (timeout)"
    assert assess(now, None).changed == ()


def test_confirm_needs_every_required_round() -> None:
    changed = {"k1": C, "k2": C, "k3": C, "k4": C}
    rounds = [{"k1": T, "k2": C, "k3": S, "k4": T}, {"k1": T, "k2": T, "k3": T}]
    c = confirm(changed, rounds, required=2)
    assert c.confirmed == {"k1"}
    assert c.rejected == {"k2"}  # the first re-probe saw the known-good outcome: a blip
    assert c.pending == {"k3", "k4"}  # a skipped re-probe, a missing one
    assert confirm(changed, [], required=0).confirmed == set(changed)
    assert confirm(changed, rounds[:1], required=1).confirmed == {"k1", "k4"}


# ----------------------------------------------------------------------------------------------- events
def open_events_after(events: list[DriftEvent], t, ids: list[int]) -> list[DriftEvent]:
    """What a store would do: give new events ids, close resolved ones."""
    by_id = {e.id: e for e in events}
    for r in t.resolved:
        by_id[r.event_id] = dataclasses.replace(by_id[r.event_id], resolved_at=r.resolved_at,
                                                resolution=r.resolution)
    for e in t.opened:
        ids.append(len(ids) + 1)
        by_id[str(ids[-1])] = dataclasses.replace(e, id=str(ids[-1]))
    return [e for e in by_id.values() if e.open]


def step(baseline: Run, now: Run, events: list[DriftEvent], rounds, ids: list[int], confirmations: int = 1):
    j = judge(now, baseline, old_snapshot=None, new_snapshot=None, open_events=events, rounds=rounds,
              settings=DriftSettings(confirmations=confirmations), now=now.started_at)
    return j, open_events_after(events, j.transitions, ids)


def test_drift_opened_confirmed_and_resolved() -> None:
    ids: list[int] = []
    kg = run(result("a", C, A, A), result("b", T, D, D), at="t0")
    key_a = kg.results[0].key
    # t1: a changed but the re-probe saw it connected again: a blip, nothing opens, not known-good.
    j, events = step(kg, run(result("a", T), result("b", T, D, D), at="t1"), [], [{key_a: C}], ids)
    assert not j.transitions and events == []
    assert j.confirmation.rejected == {key_a}
    assert j.known_good is False
    # t2: a changed and the re-probe confirms it: drift + violation + gap open, one event each.
    j, events = step(kg, run(result("a", T), result("b", T, D, D), at="t2"), [], [{key_a: T}], ids)
    assert sorted(e.kind for e in j.transitions.opened) == ["drift", "gap", "violation"]
    drift = next(e for e in j.transitions.opened if e.kind == "drift")
    assert drift.detail == "connected -> timeout since known-good" and drift.opened_at == "t2"
    assert drift.cause == Cause("unknown", note="a snapshot of one of the two runs is not stored")
    assert j.known_good is False
    assert len(events) == 3
    # t3: still drifted: no new events (one per state change, never one per run).
    j, events = step(kg, run(result("a", T), result("b", T, D, D), at="t3"), events, [{key_a: T}], ids)
    assert not j.transitions and len(events) == 3
    # t4: could not probe: state kept.
    j, events = step(kg, run(result("a", S), result("b", T, D, D), at="t4"), events, [], ids)
    assert not j.transitions and len(events) == 3
    # t5: back to known-good: all three resolve, once.
    j, events = step(kg, run(result("a", C), result("b", T, D, D), at="t5"), events, [], ids)
    assert sorted(r.resolution for r in j.transitions.resolved) == [
        "back to the known-good outcome", "meets its expectation again", "the network does what the policies say"]
    assert events == [] and j.known_good is True
    j, events = step(kg, run(result("a", C), result("b", T, D, D), at="t6"), events, [], ids)
    assert not j.transitions


def test_a_history_only_run_opens_and_closes_nothing_and_is_no_baseline() -> None:
    """Probed while the CNI agents re-sync after an API server outage: a fresh probe pod they have not
    programmed is blocked where the policies allow, which must read neither as drift nor as a recovery."""
    ids: list[int] = []
    kg = run(result("a", C, A, A), result("b", T, D, D), at="t0")
    key_a = kg.results[0].key
    _, events = step(kg, run(result("a", T), result("b", T, D, D), at="t1"), [], [{key_a: T}], ids)
    assert len(events) == 3  # drift, violation, gap of a
    held = judge(run(result("a", C), result("b", C), at="t2"), kg, old_snapshot=None, new_snapshot=None,
                 open_events=events, rounds=[{kg.results[1].key: C}], settings=DriftSettings(), now="t2",
                 history_only="the API server answered again at 10:00:00 UTC")
    assert not held.transitions  # a back to known-good (no resolve) and b's change (no drift): not judged
    assert held.confirmation.pending == {kg.results[1].key} and not held.confirmation.confirmed
    assert held.known_good is False
    assert held.not_known_good_because == ("not judged: the API server answered again at 10:00:00 UTC",)


def test_unconfirmed_drift_with_pending_reprobe_keeps_state() -> None:
    kg = run(result("a", C), at="t0")
    key = kg.results[0].key
    j, events = step(kg, run(result("a", T), at="t1"), [], [{key: T}, {key: T}], [], confirmations=2)
    assert len(events) == 3
    # The next run's re-probe could not run: nothing resolves, nothing opens.
    j, _ = step(kg, run(result("a", T), at="t2"), events, [{key: S}], [], confirmations=2)
    assert not j.transitions and j.confirmation.pending == {key}


def test_violation_on_an_unchanged_flow_opens_without_reprobe_and_removed_case_resolves() -> None:
    kg = run(result("x", C), at="t0")
    bad = result("v", T)  # expected allow, observed deny, no baseline to compare with
    j, events = step(kg, run(result("x", C), bad, at="t1"), [], [], [])
    assert [(e.kind, e.flow_key) for e in j.transitions.opened] == [("gap", bad.key), ("violation", bad.key)]
    j, events = step(kg, run(result("x", C), at="t2"), events, [], [])
    assert {r.resolution for r in j.transitions.resolved} == {"the flow is no longer in the suite"}


def test_known_good_rules() -> None:
    kg = run(result("a", C), at="t0")
    quiet = assess(run(result("a", C)), kg)
    assert becomes_known_good(quiet, confirm({}, [], 1), DriftSettings()) is True
    assert becomes_known_good(quiet, confirm({}, [], 1), DriftSettings(auto_known_good=False)) is False
    skipped_only = assess(run(result("a", S)), kg)
    assert becomes_known_good(skipped_only, confirm({}, [], 1), DriftSettings()) is False
    failed = assess(dataclasses.replace(run(result("a", C)), status="failed"), kg)
    assert becomes_known_good(failed, confirm({}, [], 1), DriftSettings()) is False
    # A confirmed change that is not a violation (deny: timeout -> refused) moves the baseline.
    kg2 = run(result("d", T, D, D))
    moved = run(dataclasses.replace(result("d", T, D, D), outcome=Outcome.REFUSED))
    a = assess(moved, kg2)
    assert becomes_known_good(a, confirm(changed_outcomes(a), [{moved.results[0].key: Outcome.REFUSED}], 1),
                              DriftSettings()) is True
    assert becomes_known_good(a, confirm(changed_outcomes(a), [], 1), DriftSettings()) is False


# ----------------------------------------------------------------------------------------------- causes
def fake_evaluate(calls: list | None = None):
    """A tiny stand-in engine: allowed when the destination namespace is labelled open=true, or a policy
    named allow-all sits in the destination namespace, or the source pod is labelled role=admin, or both a
    policy "allow-tagged" exists and the destination pod is labelled tag=yes."""
    def evaluate(snap: Snapshot, src, dst, port: int, protocol: str) -> bool:
        if calls is not None:
            calls.append((src, dst, port, protocol))
        ns = {n.name: dict(n.labels) for n in snap.namespaces}
        names = {p.name for p in snap.policies if p.namespace == dst.namespace}
        return (ns[dst.namespace].get("open") == "true" or "allow-all" in names
                or dict(src.labels).get("role") == "admin"
                or ("allow-tagged" in names and dict(dst.labels).get("tag") == "yes"))
    return evaluate


def shop(**changes) -> Snapshot:
    ns = {"shop": {"team": "a"}, "other": {}}
    ns.update(changes.get("ns", {}))
    web = {"app": "web", **changes.get("web", {})}
    db = {"app": "db", **changes.get("db", {})}
    return Snapshot.build(
        namespaces=[Namespace(n, labels_of(lab)) for n, lab in ns.items()],
        pods=[Pod("shop", "web-5d8f7-abcde", labels_of(web), "10.0.0.1", workload="ReplicaSet/web-5d8f7"),
              Pod("shop", "db-0", labels_of(db), "10.0.0.2", workload="StatefulSet/db")],
        policies=[NetworkPolicy("shop", n) for n in changes.get("policies", ["deny-all"])])


FLOW = result("web-db", T)


def test_cause_policy_edit() -> None:
    old, new = shop(), shop(policies=["deny-all", "allow-all"], ns={"other": {"x": "y"}})
    calls: list = []
    cause = attribute_cause(FLOW, old, new, fake_evaluate(calls))
    assert cause == Cause("config", ("NetworkPolicy shop/allow-all added",), False, True)
    assert cause.describe() == "config (each): NetworkPolicy shop/allow-all added"
    src, dst, port, proto = calls[0]
    assert (src.name, dst.name, port, proto) == ("web-5d8f7-abcde", "db-0", 5432, "TCP")


def test_cause_namespace_relabel() -> None:
    cause = attribute_cause(FLOW, shop(), shop(ns={"shop": {"team": "a", "open": "true"}}), fake_evaluate())
    assert cause.kind == "config"
    assert cause.changes == ("namespace shop: labels +open=true",)


def test_cause_pod_relabel() -> None:
    cause = attribute_cause(FLOW, shop(), shop(web={"role": "admin"}, db={"unrelated": "1"}), fake_evaluate())
    assert cause.changes == ("pod shop/web: labels +role=admin",)


def test_cause_dataplane_when_intent_did_not_change() -> None:
    cause = attribute_cause(FLOW, shop(), shop(db={"unrelated": "1"}), fake_evaluate())
    assert cause == Cause("dataplane", (), False, False)
    assert cause.describe().startswith("dataplane")
    assert attribute_cause(FLOW, shop(), shop(), fake_evaluate()).kind == "dataplane"


def test_cause_combined_when_no_single_change_flips() -> None:
    cause = attribute_cause(FLOW, shop(), shop(policies=["deny-all", "allow-tagged"], db={"tag": "yes"}),
                            fake_evaluate())
    assert cause.combined is True
    assert set(cause.changes) == {"NetworkPolicy shop/allow-tagged added", "pod shop/db: labels +tag=yes"}


# ------------------------------------------------------------------------------------- runs side by side
def test_align_runs_of_two_clusters_through_a_namespace_map() -> None:
    def flow(case: str, src: str, dst: str, outcome: Outcome) -> FlowResult:
        return dataclasses.replace(result(case, outcome), source=src, destination=dst)

    staging = run(flow("db", "shop-stg/web", "shop-stg/db", C), flow("svc", "shop-stg/web", "svc/shop-stg/api", C),
                  flow("ext", "shop-stg/web", "192.0.2.1", T), flow("old", "shop-stg/web", "shop-stg/db", C))
    prod = run(flow("db", "shop/web", "shop/db", T), flow("svc", "shop/web", "svc/shop/api", C),
               flow("ext", "shop/web", "192.0.2.1", T), flow("new", "shop/web", "shop/db", C))
    rows = align_runs(staging, prod, {"shop-stg": "shop"})
    assert [(r.key.split("|")[0], r.same, r.a is not None, r.b is not None) for r in rows] == [
        ("db", False, True, True), ("ext", True, True, True), ("new", False, False, True),
        ("old", False, True, False), ("svc", True, True, True)]
    assert rows[4].key == "svc|shop/web|svc/shop/api|5432/TCP" and rows[4].a.destination == "svc/shop-stg/api"
    # Without the map nothing lines up (the source is a staging pod even for the external flow).
    assert [r for r in align_runs(staging, prod) if r.a and r.b] == []


def test_namespace_map_parsing_and_its_one_line_errors() -> None:
    """The CLI's --map-namespace and the dashboard's map= share this parser: same messages, their own field."""
    assert parse_namespace_map(["shop-stg=shop", "pay-stg=pay", "shop-stg=shop"], "map") == {
        "shop-stg": "shop", "pay-stg": "pay"}
    assert parse_namespace_map([], "map") == {}
    bad = [(["shop-stg"], "--map-namespace: expected A_NS=B_NS, got 'shop-stg'"),
           (["=shop"], "--map-namespace: expected A_NS=B_NS, got '=shop'"),
           (["shop-stg="], "--map-namespace: expected A_NS=B_NS, got 'shop-stg='"),
           (["shop-stg/web=shop"], "--map-namespace: expected A_NS=B_NS, got 'shop-stg/web=shop'"),
           (["a=b=c"], "--map-namespace: expected A_NS=B_NS, got 'a=b=c'"),
           # One namespace to two, or two to one: some flows would be compared with the wrong ones or lost.
           (["shop-stg=shop", "shop-stg=pay"],
            "--map-namespace: expected each namespace in one pair, got 'shop-stg=shop' and 'shop-stg=pay'"),
           (["shop-stg=shop", "shop-qa=shop"],
            "--map-namespace: expected each namespace in one pair, got 'shop-stg=shop' and 'shop-qa=shop'")]
    for items, message in bad:
        with pytest.raises(InputError) as e:
            parse_namespace_map(items, "--map-namespace")
        assert str(e.value) == message
    with pytest.raises(InputError) as e:
        parse_namespace_map(["x"], "map")
    assert str(e.value) == "map: expected A_NS=B_NS, got 'x'"


def test_diff_runs_gives_each_changed_flow_its_cause() -> None:
    before = run(result("web-db", T), result("gone", C), result("same", C))
    after = run(result("web-db", C), result("same", C), result("added", C))
    d = diff_runs(before, after, shop(), shop(policies=["deny-all", "allow-all"]), fake_evaluate())
    assert d.changes is not None and d.changes.describe() == ["NetworkPolicy shop/allow-all added"]
    by_case = {f.key.split("|")[0]: cause for f, cause in d.flows}
    assert by_case == {"web-db": Cause("config", ("NetworkPolicy shop/allow-all added",), False, True),
                       "gone": None, "added": None}  # a flow only one run has changed nothing to explain
    unknown = diff_runs(before, after, None, shop(), fake_evaluate())
    assert unknown.changes is None and unknown.flows[2][1].kind == "unknown"


def test_resolve_endpoint_identities() -> None:
    snap = Snapshot.build(
        pods=[Pod("shop", "db-0", labels_of({"app": "db"}), "10.0.0.2", workload="StatefulSet/db")],
        services=[Service("shop", "db", labels_of({"app": "db"}), "10.96.0.5", (ServicePort(80, 5432),))])
    assert resolve_endpoint(snap, "shop/db", 5432, "TCP")[0].name == "db-0"
    assert resolve_endpoint(snap, "shop/db-0", 5432, "TCP")[0].name == "db-0"
    assert resolve_endpoint(snap, "shop/db@node-1", 5432, "TCP")[0].name == "db-0"
    assert resolve_endpoint(snap, "svc/shop/db", 80, "TCP") == (snap.pods[0], 5432)
    assert resolve_endpoint(snap, "10.1.2.3", 443, "TCP") == ("10.1.2.3", 443)
    assert resolve_endpoint(snap, "shop/nothing", 80, "TCP") is None


def test_judge_wires_causes_into_drift_events() -> None:
    kg = run(result("web-db", T, D, D), at="t0")
    now = run(result("web-db", C, D, A), at="t1")
    j = judge(now, kg, old_snapshot=shop(), new_snapshot=shop(policies=["deny-all", "allow-all"]),
              open_events=[], rounds=[{FLOW.key: C}], settings=DriftSettings(), now="t1",
              evaluate=fake_evaluate())
    drift = next(e for e in j.transitions.opened if e.kind == "drift")
    assert drift.cause.changes == ("NetworkPolicy shop/allow-all added",)
    assert transitions("prod", j.assessment, j.confirmation, {}, [], "t1").opened[0].cause is None


# ------------------------------------------------------------------------------------ the real engine
def _real(ns_labels: dict, db_labels: dict, allow: bool, trusted: str = "yes") -> Snapshot:
    deny = NetworkPolicy("shop", "deny-all", LabelSelector(), frozenset({"Ingress"}))
    allow_from = NetworkPolicy("shop", "allow-trusted", LabelSelector(labels_of({"app": "db"})),
                               frozenset({"Ingress"}), ingress=(PolicyRule(peers=(
                                   PolicyPeer(namespace_selector=LabelSelector(labels_of({"trusted": trusted}))),
                               )),))
    return Snapshot.build(
        namespaces=[Namespace("shop"), Namespace("front", labels_of(ns_labels))],
        pods=[Pod("front", "web-1", labels_of({"app": "web"}), "10.0.1.1", workload="Deployment/web"),
              Pod("shop", "db-0", labels_of(db_labels), "10.0.0.2", workload="StatefulSet/db")],
        policies=[deny, allow_from] if allow else [deny])


def test_causes_with_the_real_engine() -> None:
    flow = FlowResult("front-db", "front/web", "shop/db", 5432, "TCP", A, A, C, A)
    base = _real({"trusted": "yes"}, {"app": "db"}, allow=True)
    assert attribute_cause(flow, base, base).kind == "dataplane"
    policy = attribute_cause(flow, base, _real({"trusted": "yes"}, {"app": "db"}, allow=False))
    assert policy.changes == ("NetworkPolicy shop/allow-trusted removed",)
    assert (policy.intent_before, policy.intent_after) == (True, False)
    ns = attribute_cause(flow, base, _real({"trusted": "no"}, {"app": "db"}, allow=True))
    assert ns.changes == ("namespace front: labels trusted: yes -> no",)
    pod = attribute_cause(flow, base, _real({"trusted": "yes"}, {"app": "database"}, allow=True))
    assert pod.changes == ("pod shop/db: labels app: db -> database",)
    # An edit of a policy's rule, with an unrelated namespace relabel in the same change: only the edit flips.
    edited = _real({"trusted": "yes", "owner": "x"}, {"app": "db"}, allow=True, trusted="verified")
    edit = attribute_cause(flow, base, edited)
    assert edit.changes == ("NetworkPolicy shop/allow-trusted changed (ingress)",)
    assert (edit.kind, edit.combined, edit.intent_after) == ("config", False, False)


# -------------------------------------------------------------------- issue 8 item 3: no false "resolved"
R = Outcome.REFUSED


def test_a_baseline_moved_by_a_blocking_change_closes_its_drift_as_accepted_not_back() -> None:
    ids: list[int] = []
    kg = run(result("d", T, D, D), at="t0", rid="1")
    key = kg.results[0].key
    # t1: how the flow is blocked changed (timeout -> refused), confirmed; reachability did not move: the run
    # takes it in as the new baseline and opens the drift event (history).
    t1 = run(result("d", R, D, D), at="t1", rid="2")
    j, events = step(kg, t1, [], [{key: R}], ids)
    assert [e.kind for e in j.transitions.opened] == ["drift"] and j.known_good is True
    # t2, judged against t1 (the new baseline): the flow has not moved, so it must not say "back to known-good".
    j, events = step(t1, run(result("d", R, D, D), at="t2", rid="3"), events, [], ids)
    [res] = j.transitions.resolved
    assert res.resolution == "accepted into the baseline (run 2): refused is the known-good outcome now"
    assert (res.kind, res.flow_key) == ("drift", key) and events == []


def test_refused_then_timeout_then_reachable_is_a_new_drift_not_only_a_violation() -> None:
    """Issue 15 item 5: a blocked flow flips refused -> timeout (taken into the baseline), then connects. The
    second change is a drift from the new baseline (blocked -> reachable, with its cause) and the old event
    closes as accepted; it used to stay open and only "expectation newly violated" was reported."""
    ids: list[int] = []
    kg = run(result("f", R, D, D), at="t0", rid="1")
    key = kg.results[0].key
    t1 = run(result("f", T, D, D), at="t1", rid="2")
    j, events = step(kg, t1, [], [{key: T}], ids)
    assert [e.kind for e in j.transitions.opened] == ["drift"] and j.known_good is True
    [mode_change] = events
    t2 = run(result("f", C, D, D), at="t2", rid="3")
    j, events = step(t1, t2, events, [{key: C}], ids)
    opened = {e.kind: e for e in j.transitions.opened}
    assert sorted(opened) == ["drift", "gap", "violation"]  # the policies deny it too: also a gap
    assert opened["drift"].detail == "timeout -> connected since known-good"
    assert (opened["drift"].baseline_verdict, opened["drift"].baseline_outcome) == ("deny", "timeout")
    [res] = j.transitions.resolved
    assert (res.event_id, res.kind) == (mode_change.id, "drift")
    assert res.resolution == "accepted into the baseline (run 2): timeout is the known-good outcome now"
    assert sorted(e.kind for e in events) == ["drift", "gap", "violation"] and j.known_good is False
    # Still connected next run: nothing new opens, nothing closes (one event per state change).
    j, events = step(t1, run(result("f", C, D, D), at="t3", rid="4"), events, [{key: C}], ids)
    assert not j.transitions


def test_a_drift_that_changes_reachability_never_becomes_known_good_by_itself() -> None:
    ids: list[int] = []
    # The baseline carries a violation someone accepted by hand: the flow was blocked, the suite wants it open.
    kg = run(result("e", T, A, A), at="t0", rid="1")
    key = kg.results[0].key
    t1 = run(result("e", C, A, A), at="t1", rid="2")  # now it connects: meets its expectation, a real change
    j, events = step(kg, t1, [], [{key: C}], ids)
    assert [e.kind for e in j.transitions.opened] == ["drift"] and not j.assessment.violations
    assert j.known_good is False
    assert j.not_known_good_because == (
        "a drift changes reachability (fix it, or take it in with `netpol-drift accept RUN`)",)
    # The baseline did not move, so the event stays open while the flow stays where it is...
    j, events = step(kg, run(result("e", C, A, A), at="t2"), events, [{key: C}], ids)
    assert not j.transitions and len(events) == 1 and j.known_good is False
    # ...and resolves as a recovery only when the flow really goes back.
    j, events = step(kg, run(result("e", T, A, A), at="t3"), events, [], ids)
    assert [r.resolution for r in j.transitions.resolved if r.kind == "drift"] == ["back to the known-good outcome"]


def test_an_open_drift_on_an_unobserved_flow_keeps_the_baseline_where_it_is() -> None:
    ids: list[int] = []
    kg = run(result("e", T, A, A), result("x", C), at="t0", rid="1")
    key = kg.results[0].key
    _, events = step(kg, run(result("e", C, A, A), result("x", C), at="t1"), [], [{key: C}], ids)
    # The drifted flow's workload is scaled to zero now (nothing to probe, which alone would not block the
    # baseline): the run must not become the baseline, or the event would later close with nobody accepting it.
    gone = dataclasses.replace(result("e", S, A, A), intent=Verdict.SKIPPED)
    j, events = step(kg, run(gone, result("x", C), at="t2"), events, [], ids)
    assert j.known_good is False and j.not_known_good_because == (
        "an earlier drift event stays open (the flow is not back, or could not be observed)",)
    # Judged against a baseline that did not observe the flow, the event stays open rather than resolve.
    blind = run(dataclasses.replace(result("e", S, A, A), intent=Verdict.SKIPPED), result("x", C), at="t3")
    j, events = step(blind, run(result("e", C, A, A), result("x", C), at="t4"), events, [], ids)
    assert not j.transitions.resolved and len(events) == 1


def test_a_workload_with_no_pods_does_not_stall_the_baseline_but_a_failed_probe_does() -> None:
    kg = run(result("a", C), result("b", C), at="t0")
    # b's workload was scaled to zero: the planner found nothing to probe (intent skipped, no probe ran).
    scaled = dataclasses.replace(run(result("a", C), dataclasses.replace(result("b", S), intent=Verdict.SKIPPED,
                                                                         reason="no pod matches")),
                                 status="partial")
    j = judge(scaled, kg, old_snapshot=None, new_snapshot=None, open_events=[], rounds=[],
              settings=DriftSettings(), now="t1")
    assert j.known_good is True
    # The probe pod of b failed (intent known, outcome skipped): the run does not know what b does now.
    lost = dataclasses.replace(run(result("a", C), dataclasses.replace(result("b", S), reason="deadline")),
                               status="partial")
    j = judge(lost, kg, old_snapshot=None, new_snapshot=None, open_events=[], rounds=[],
              settings=DriftSettings(), now="t1")
    assert j.known_good is False and j.not_known_good_because == ("some flow could not be probed",)

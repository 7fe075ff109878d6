"""One live run: snapshot -> plan -> probe -> evaluate -> results, then (with a store) judge and record it.

Job: wire the stages in order for one run, with one reading of the clock (`now`, passed in) and one run id;
map probe outcomes to verdicts (probe.refused_means, and udp_refused_means for UDP, for `refused`; a silent UDP
target, or one whose own kernel says nothing listens, is `unknown`);
fold the replicas of a destination into one result per case, source identity, destination identity and port.
`record_run` compares the run with the known-good baseline (compare.py decides), re-probes only the flows that
changed (`reprobe`) and hands the run and its drift transitions to the store in one call (one transaction).
This module must not import kubernetes or sqlalchemy, print, or read the wall clock: the CLI prints and hands
in the cluster adapter and the store, `now` comes in. Nor may it load either at import time, through the probe
runner or otherwise (tests/test_architecture.py): the probe pods' labels and states are in monitor/probe/pods.py
and the adapter's error classes in monitor/errors.py, so that only the adapter handed in loads kubernetes.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Protocol

from monitor.compare import Judgement, assess, changed_outcomes, judge
from monitor.engine import Engine
from monitor.models import FlowResult, Outcome, Run, Snapshot, Verdict, suite_exit_code
from monitor.plan import FlowPlan, Plan, SourceGroup, control_group, plan_suite
from monitor.probe.runner import ProbeProgress, ProbeReport, ProbeTask, run_probes, sweep_probe_pods
from monitor.probe.wire import (
    CLOSED_AT_DESTINATION,
    LETTER_OUTCOMES,
    RESET_BY_DESTINATION,
    ProbeTarget,
    TargetOutcome,
)
from monitor.settings import ProbeSettings, Settings
from monitor.snapshot import snapshot_digest, take_snapshot
from monitor.suite import Suite, validate_suite
from monitor.topology import service_backends

if TYPE_CHECKING:  # both are handed in: importing them here would load kubernetes or SQLAlchemy for nothing
    from monitor.cluster import ClusterAdapter
    from monitor.store import Store

log = logging.getLogger(__name__)

# Outcomes that are no verdict at all: the probe could not run, or its passes never agreed.
NOT_PROBED = frozenset({Outcome.SKIPPED, Outcome.UNSETTLED})


@dataclass(frozen=True, slots=True)
class CaseSummary:
    """A case's line in the report: its flows folded into one status."""

    name: str
    expected: Verdict
    status: str  # pass, fail, unknown, skipped
    intent: str  # allow, deny, allow/deny, -
    observed: str  # outcomes seen, e.g. connected or refused/timeout
    verdict: str
    enforcement_gap: bool
    explanation: str
    flows: tuple[FlowResult, ...]


@dataclass(frozen=True, slots=True)
class LiveRun:
    run: Run
    cases: tuple[CaseSummary, ...]
    snapshot: Snapshot
    probe_pods: int
    probe_seconds: float
    plan: Plan | None = None  # kept so that changed flows can be probed again exactly as planned
    warnings: tuple[str, ...] = ()  # what the policies leave undecided (same-priority admin policies)

    @property
    def ok(self) -> bool:
        """No case failed (some may not have been verified: see `exit_code`)."""
        return not any(c.status == "fail" for c in self.cases)

    def exit_code(self, allow_skipped: bool = False) -> int:
        return suite_exit_code([c.status for c in self.cases], allow_skipped)


# The key of `refusal_means` for a TCP refusal by a reset (the agent's RESET_BY_DESTINATION), not by ICMP.
TCP_RESET = "TCP reset"


def refusal_means(probe: ProbeSettings) -> dict[str, str]:
    """What `refused` means per protocol: TCP and UDP apart (DESIGN.md, Verdicts), and a TCP reset apart from
    a TCP refusal by ICMP (probe.tcp_reset_means)."""
    return {"TCP": probe.refused_means, "SCTP": probe.refused_means, "UDP": probe.udp_refused_means,
            TCP_RESET: probe.tcp_reset_means}


def outcome_verdict(outcome: Outcome, protocol: str, refused_means: str | Mapping[str, str]) -> Verdict:
    """What an outcome says about reachability. Drift works on raw outcomes; this is for expectations.
    `refused_means` is one meaning for every protocol, or one per protocol (`refusal_means`)."""
    if outcome is Outcome.CONNECTED:
        return Verdict.ALLOW
    if outcome is Outcome.REFUSED:
        return Verdict(refused_means if isinstance(refused_means, str) else refused_means[protocol])
    if outcome is Outcome.TIMEOUT:
        # A silent UDP target may be dropped or may simply never answer: no verdict either way.
        return Verdict.UNKNOWN if protocol == "UDP" else Verdict.DENY
    if outcome is Outcome.UNREACHABLE:
        return Verdict.DENY  # ICMP host/admin-prohibited: how several CNIs reject
    if outcome in NOT_PROBED:
        return Verdict.SKIPPED
    return Verdict.UNKNOWN


class RunProgress(Protocol):
    """Hears where a run is (the CLI shows it on a terminal): a stage in words, then the probe pods' count."""

    def stage(self, text: str) -> None: ...

    def probes(self, progress: ProbeProgress) -> None: ...


def blocked_every_pass(passes: str, protocol: str, refused_means: str | Mapping[str, str]) -> Outcome | None:
    """An unsettled target (passes like `r>t>r`) whose every pass was a way of being blocked with one verdict
    (refused and timeout where refused means deny): its passes disagree on how, not whether, so it is blocked,
    reported with its last pass's outcome. Where the kernel rate-limits a REJECTing CNI's ICMP errors, blocked
    flows flip between the two under load; that must not leave them unverified. None: really unsettled (also
    when a pass was refused by the destination itself, `r*`: that one got there)."""
    seen = [LETTER_OUTCOMES.get(x) for x in passes.split(">")] if passes else []
    if not seen or None in seen:
        return None
    outcomes = [Outcome(o) for o in seen]
    if {outcome_verdict(o, protocol, refused_means) for o in outcomes} != {Verdict.DENY}:
        return None
    return outcomes[-1]


def run_once(adapter: ClusterAdapter, suite: Suite, settings: Settings, now: datetime, run_id: str,
             trigger: str = "manual", via_cluster_ip: bool = False, sweep: bool = True,
             clock: Callable[[], float] = time.monotonic, trigger_detail: str | None = None,
             progress: RunProgress | None = None, until: float | None = None) -> LiveRun:
    """Raises our own errors (InputError for a suite that does not fit the cluster, ClusterError...).

    Probing stops at `until` (on `clock`; default: probe.run_deadline_seconds after the run began): what is
    not probed by then is `skipped` and the run still ends, `partial`, so a suite too big for its deadline
    is stored and seen rather than cut and lost."""
    began = clock()
    until = began + settings.probe.run_deadline_seconds if until is None else until
    stage = progress.stage if progress is not None else _silent
    if sweep:
        stage("deleting probe pods that earlier runs left behind")
        sweep_probe_pods(adapter, settings.probe, now)
    stage("reading the cluster (snapshot)")
    snapshot = take_snapshot(adapter, now)
    validate_suite(suite, snapshot)
    plan = plan_suite(suite, snapshot, per_node=settings.probe.per_node, via_cluster_ip=via_cluster_ip,
                      control_namespace=settings.probe.namespace)
    tasks, target_index = probe_tasks(plan)
    started = clock()
    stage("probing")
    reports, pods = run_probes(adapter, tasks, settings.probe, run_id, clock,
                               progress.probes if progress is not None else None, until)
    results = evaluate(plan, snapshot, reports, target_index, refusal_means(settings.probe))
    unsettled = [r for r in results if r.outcome is Outcome.UNSETTLED]
    if unsettled:
        # One more chance from a fresh pod (a flow flapping on its own stays unsettled: never a verdict).
        log.info("probing %d unsettled flow(s) again from fresh probe pods", len(unsettled))
        stage(f"probing {len(unsettled)} unsettled flow(s) again")
        again = {r.key: r for r in _probe_again(adapter, plan, snapshot, unsettled, settings, f"{run_id}-u", clock,
                                                progress, until)}
        results = [again.get(r.key, r) for r in results]
    probe_seconds = clock() - started
    cases = summarise(suite, results)
    # The wall clock is read once per run (`now`); the end is `now` plus the monotonic time the run took.
    finished = now + timedelta(seconds=clock() - began)
    run = Run(cluster=settings.cluster.name, started_at=now.isoformat(), finished_at=finished.isoformat(),
              trigger=trigger, snapshot_digest=snapshot_digest(snapshot), suite_digest=suite.digest,
              results=tuple(results), status="ok" if all(r.outcome not in NOT_PROBED for r in results)
              else "partial", id=run_id, trigger_detail=trigger_detail)
    warnings = tuple(t.describe() for t in Engine(snapshot).ties())
    return LiveRun(run, tuple(cases), snapshot, pods, probe_seconds, plan, warnings)


def _silent(text: str) -> None:
    pass


def _plan_key(f: FlowPlan) -> str:
    # The same text as FlowResult.key of the result evaluate() makes of this flow.
    return f"{f.case}|{f.source}|{f.destination}|{f.port or 0}/{f.protocol}"


def reprobe(adapter: ClusterAdapter, live: LiveRun, flows: Sequence[FlowResult], settings: Settings,
            run_id: str, clock: Callable[[], float] = time.monotonic,
            progress: RunProgress | None = None, until: float | None = None) -> dict[str, Outcome]:
    """Probes only these flows again (same plan, same snapshot, same runner); returns raw outcomes by key.
    `until`: the run's deadline (serve), past which a round probes nothing and confirms nothing.

    No new snapshot: a confirmation asks "is the change still there", not "what does the cluster look like".
    """
    if live.plan is None:
        raise ValueError("this run kept no plan to re-probe from")
    if progress is not None:
        progress.stage(f"probing {len(flows)} changed flow(s) again to confirm")
    # A reset judged `skipped` (no listener) is no observation, as in compare.assess.
    again = _probe_again(adapter, live.plan, live.snapshot, flows, settings, run_id, clock, progress, until)
    return {r.key: Outcome.SKIPPED if r.verdict is Verdict.SKIPPED else r.outcome for r in again}


def _probe_again(adapter: ClusterAdapter, plan: Plan, snapshot: Snapshot, flows: Sequence[FlowResult],
                 settings: Settings, run_id: str, clock: Callable[[], float],
                 progress: RunProgress | None = None, until: float | None = None) -> list[FlowResult]:
    keys = {f.key for f in flows}
    groups = []
    for g in plan.groups:
        wanted = tuple(f for f in g.flows if _plan_key(f) in keys)
        if wanted:
            groups.append(SourceGroup(g.identity, g.namespace, g.representative, g.node, wanted))
    external = [f for g in groups for f in g.flows if f.external]
    control = control_group(settings.probe.namespace, external)
    if control is not None:  # an external target is judged again only with its control again
        groups.append(control)
    if not groups:
        return []
    sub = Plan(tuple(groups), ())
    tasks, index = probe_tasks(sub)
    reports, _ = run_probes(adapter, tasks, settings.probe, run_id, clock,
                            progress.probes if progress is not None else None, until)
    return evaluate(sub, snapshot, reports, index, refusal_means(settings.probe))


# reprobe(flows, round) -> raw outcome per flow key; round counts from 1.
Reprobe = Callable[[Sequence[FlowResult], int], Mapping[str, Outcome]]


@dataclass(frozen=True, slots=True)
class Recorded:
    """What storing a run decided: its id in the store, the baseline it was judged against, the judgement."""

    stored_id: str
    baseline_id: str | None
    judgement: Judgement
    reprobe_rounds: int
    history_only: str | None = None  # why it was not judged (record_run)


def record_run(store: Store, live: LiveRun, settings: Settings, now: datetime, suite_text: str | None,
               reprobe_flows: Reprobe, history_only: str | None = None) -> Recorded:
    """Known-good baseline -> assess -> re-probe the changed flows -> judge -> save run and transitions.
    `history_only`: why this run is stored as history only (compare.judge): its changes are not re-probed either."""
    run = live.run
    baseline = store.known_good(run.cluster, run.suite_digest)
    old_snapshot = store.snapshot(baseline.snapshot_digest) if baseline is not None else None
    assessment = assess(run, baseline)
    base = changed_outcomes(assessment)
    pending = list(assessment.to_reprobe())
    if history_only is not None and pending:
        log.info("%d changed flow(s) not re-probed nor judged: %s", len(pending), history_only)
    rounds: list[Mapping[str, Outcome]] = []
    for n in range(1, settings.drift.confirmations + 1):
        if not pending or history_only is not None:
            break
        got = reprobe_flows(pending, n)
        rounds.append(got)
        # A flow that showed its known-good outcome again is a blip (compare.confirm rejects it on that one
        # round): probing it further would only cost probe pods.
        pending = [f for f in pending if got.get(f.key) != base.get(f.key)]
    stamp = now.isoformat()
    judgement = judge(run, baseline, old_snapshot=old_snapshot, new_snapshot=live.snapshot,
                      open_events=store.open_events(run.cluster), rounds=rounds, settings=settings.drift,
                      now=stamp, history_only=history_only)
    stored = store.save_run(run, now=stamp, snapshot=live.snapshot, suite_text=suite_text,
                            known_good=judgement.known_good, transitions=judgement.transitions)
    return Recorded(stored, baseline.id if baseline is not None else None, judgement, len(rounds), history_only)


def probe_tasks(plan: Plan) -> tuple[list[ProbeTask], list[dict[tuple[str, int, str], int]]]:
    """One task per source group, each target once (two cases probing the same address share a probe)."""
    tasks, index = [], []
    for g in plan.groups:
        targets: dict[tuple[str, int, str], int] = {}
        for f in g.flows:
            key = (f.address or "", f.port or 0, f.protocol)
            targets.setdefault(key, len(targets))
        tasks.append(ProbeTask(g.identity, g.namespace, g.representative.labels,
                               tuple(ProbeTarget(a, p, proto) for a, p, proto in targets), g.node))
        index.append(targets)
    return tasks, index


def evaluate(plan: Plan, snapshot: Snapshot, reports: list[ProbeReport],
             target_index: list[dict[tuple[str, int, str], int]], refused_means: str | Mapping[str, str]
             ) -> list[FlowResult]:
    engine = Engine(snapshot)
    backing: dict[tuple, tuple] = {}
    per_flow: list[tuple[FlowPlan, TargetOutcome | None, str, str | None]] = []
    controls: dict[tuple[str, int, str], tuple[TargetOutcome | None, str, FlowPlan]] = {}
    for group, report, index in zip(plan.groups, reports, target_index, strict=True):
        for f in group.flows:
            i = index[(f.address or "", f.port or 0, f.protocol)]
            if f.control:
                controls[(f.address or "", f.port or 0, f.protocol)] = (report.outcomes[i], report.reason_for(i), f)
                continue
            per_flow.append((f, report.outcomes[i], report.reason_for(i), report.node or group.node))
    for f in plan.skipped:
        per_flow.append((f, None, f.skip_reason, None))

    # Fold the replicas of a destination identity into one result (their outcomes usually agree; when they
    # do not, the one contradicting the policies is reported, since that is the one someone must look at).
    folded: dict[tuple, list] = defaultdict(list)
    for f, got, reason, node in per_flow:
        folded[(f.case, f.source, f.destination, f.port or 0, f.protocol)].append((f, got, reason, node))
    results = []
    for (case, source, destination, port, protocol), items in folded.items():
        f0 = items[0][0]
        if f0.skip_reason:
            results.append(FlowResult(case, source, destination, port, protocol, f0.expected, Verdict.SKIPPED,
                                      reason=f0.skip_reason))
            continue
        intent, explanation = _intent(engine, snapshot, f0, backing)
        judged = []
        for f, got, reason, node in items:
            if got is None:
                judged.append((Outcome.SKIPPED, Verdict.SKIPPED, None, reason, node, f))
                continue
            outcome = Outcome(got.outcome)
            detail = f"{got.outcome} ({got.detail})" if got.detail else ""
            blocked = blocked_every_pass(got.detail, protocol, refused_means) if outcome is Outcome.UNSETTLED \
                else None
            if blocked is not None:
                outcome, detail = blocked, f"{blocked.value} (passes {got.detail}: blocked in every one)"
            verdict = outcome_verdict(outcome, protocol, refused_means)
            if outcome is Outcome.UNSETTLED:
                detail = f"unsettled: the probe's passes disagree ({got.detail or '?'}), not a verdict"
            elif protocol == "UDP" and outcome is Outcome.REFUSED and got.detail == CLOSED_AT_DESTINATION:
                verdict = Verdict.UNKNOWN
                detail = ("refused by the destination itself (its own ICMP port unreachable): the datagram got "
                          "there and nothing listens on the port, which says nothing about the policies")
            elif protocol == "TCP" and outcome is Outcome.REFUSED and got.detail == RESET_BY_DESTINATION:
                verdict, detail = _reset_verdict(f, port, refused_means)
            judged.append((outcome, verdict, got.latency_ms, detail, node, f))
        observed = [j for j in judged if j[0] is not Outcome.SKIPPED]
        # One unsettled replica makes the flow unsettled: the settled ones cannot vouch for it. A replica with no
        # listener (a reset judged `skipped`) does not hide one that gave a verdict.
        pick = next((j for j in observed if j[0] is Outcome.UNSETTLED), None) \
            or next((j for j in observed if j[1] in (Verdict.ALLOW, Verdict.DENY) and j[1] != intent), None) \
            or next((j for j in observed if j[1] is not Verdict.SKIPPED), None) \
            or (observed[0] if observed else judged[0])
        outcome, verdict, latency, detail, node, f = pick
        reason = detail
        if f0.external and verdict is not Verdict.ALLOW and outcome is not Outcome.SKIPPED:
            verdict, why = _judge_external(engine, f0, controls.get((f0.address or "", port, protocol)), verdict)
            reason = "; ".join(x for x in (detail, why) if x)
        elif len({j[0] for j in judged}) > 1:
            reason = "replicas disagree: " + ", ".join(
                f"{j[5].destination_pod.ref if j[5].destination_pod else j[5].address}={j[0].value}"
                for j in judged)
        elif outcome is Outcome.SKIPPED:
            reason = judged[0][3]
        results.append(FlowResult(case, source, destination, port, protocol, f0.expected, intent, outcome,
                                  verdict, latency, 1 if outcome is not Outcome.SKIPPED else 0, explanation,
                                  reason, node))
    order = {c: i for i, c in enumerate(dict.fromkeys(f.case for f, *_ in per_flow))}
    results.sort(key=lambda r: (order.get(r.case, 0), r.source, r.destination, r.port, r.protocol))
    return results


def _reset_verdict(f: FlowPlan, port: int, refused_means: str | Mapping[str, str]) -> tuple[Verdict, str]:
    """A TCP refusal by a reset, not by an ICMP error: the destination's own kernel answered that nothing
    listens on the port (the SYN got there, so the policies let it through), unless the CNI rejects with a
    forged reset (probe.tcp_reset_means: deny). By default no verdict: the case is `skipped`."""
    means = refused_means if isinstance(refused_means, str) else refused_means.get(TCP_RESET, "skipped")
    where = f.destination_pod.ref if f.destination_pod is not None else f.address
    if means == "skipped":
        return Verdict.SKIPPED, (f"no listener: {where} answered TCP port {port} with a reset, so nothing listens "
                                 f"there; that says nothing about the policies (not a verdict; "
                                 f"probe.tcp_reset_means)")
    return Verdict(means), f"refused (reset: probe.tcp_reset_means {means})"


def _judge_external(engine: Engine, f: FlowPlan, control: tuple[TargetOutcome | None, str, FlowPlan] | None,
                    verdict: Verdict) -> tuple[Verdict, str]:
    """A cidr/host target the case did not reach: blocked only if the control probe reached it (DESIGN.md,
    Verdicts). Otherwise nothing is known to answer there, and the case is `unknown`, never a pass."""
    target = f"{f.address}:{f.port}/{f.protocol}"
    if control is None:
        return Verdict.UNKNOWN, f"no control probe of {target}: an external target is judged only when a " \
                                f"control shows that it answers"
    got, why, plan = control
    if got is None:
        return Verdict.UNKNOWN, f"the control probe of {target} could not run ({why})"
    if got.outcome == Outcome.CONNECTED.value:
        return verdict, f"the control probe from {plan.source} reached {target}"
    restricted = "" if engine.decide(plan.source_pod, f.address, f.port, f.protocol).allowed else \
        " (and policies restrict the control source itself)"
    return Verdict.UNKNOWN, (f"the control probe from {plan.source} got {got.outcome} too{restricted}: nothing is "
                             f"known to answer at {target}, so a blocked probe proves nothing")


def _intent(engine: Engine, snapshot: Snapshot, f: FlowPlan, backing: dict[tuple, tuple]) -> tuple[Verdict, str]:
    if f.service and f.destination_pod is None:
        # Through a ClusterIP: the packet reaches one of the backing pods after DNAT, policies apply there.
        key = (f.service, f.port, f.protocol)
        if key not in backing:
            svc = next(s for s in snapshot.services if s.ref == f.service)
            backing[key] = service_backends(snapshot, svc, f.port, f.protocol)
        answers = [engine.decide(f.source_pod, pod, number, f.protocol)
                   for pod, number in backing[key] if number is not None]
        if not answers:
            return Verdict.UNKNOWN, f"Service {f.service} has no backing pod for port {f.port}"
        allowed = {a.allowed for a in answers}
        if len(allowed) > 1:
            return Verdict.UNKNOWN, "some backing pods allow it, some deny it: " + answers[0].reason
        return (Verdict.ALLOW if allowed.pop() else Verdict.DENY), answers[0].reason
    dst = f.destination_pod if f.destination_pod is not None else f.address
    d = engine.decide(f.source_pod, dst, f.port, f.protocol)
    return (Verdict.ALLOW if d.allowed else Verdict.DENY), d.reason


def summarise(suite: Suite, results: list[FlowResult]) -> list[CaseSummary]:
    by_case: dict[str, list[FlowResult]] = defaultdict(list)
    for r in results:
        by_case[r.case].append(r)
    out = []
    for case in suite.cases:
        flows = by_case.get(case.name, [])
        observed = [r for r in flows if r.observed]
        if any(r.violation for r in flows):
            status = "fail"
        elif observed:
            status = "pass" if len(observed) == len(flows) else "partial"
        elif any(r.outcome not in NOT_PROBED and r.verdict is not Verdict.SKIPPED for r in flows):
            status = "unknown"
        else:
            status = "skipped"
        intents = sorted({r.intent.value for r in flows if r.intent in (Verdict.ALLOW, Verdict.DENY)})
        outcomes = sorted({r.outcome.value for r in flows})
        verdicts = sorted({r.verdict.value for r in flows})
        bad = [r for r in flows if r.violation] or [r for r in flows if r.enforcement_gap] or flows
        first = bad[0] if bad else None
        explanation = ""
        if first is not None:
            unjudged = first.outcome in NOT_PROBED or first.verdict is Verdict.SKIPPED
            explanation = first.reason if unjudged else first.explanation
            if first.reason and not unjudged:
                explanation = f"{first.reason}; {explanation}"
        out.append(CaseSummary(case.name, case.expect, status, "/".join(intents) or "-", "/".join(outcomes),
                               "/".join(verdicts), any(r.enforcement_gap for r in flows), explanation,
                               tuple(flows)))
    return out

"""Judging a run: violations, enforcement gaps and drift against the last known-good run, with causes.

For every flow (aligned across runs by FlowResult.key) three questions: does the observation contradict the
suite's expectation (violation)? the policies' intent (enforcement gap)? the raw outcome of the known-good run
(drift)? A changed flow is re-probed before it counts (`confirm`); a confirmed drift gets a cause: the
snapshot differences that flip the engine's answer for that flow when applied alone to the old snapshot (all
of them when none does alone but the whole change does), or `dataplane` when the engine's answer did not move.
Drift events open and resolve here, one per state change, so that alerts are one message per change.
Pure functions: no I/O, no clock (`now` comes in), no database; the engine is injected as `evaluate`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from monitor.errors import InputError
from monitor.models import FlowResult, Outcome, Pod, Run, Snapshot, Verdict
from monitor.settings import DriftSettings
from monitor.snapshot import Change, SnapshotDiff, apply_change, diff_snapshots
from monitor.suite import identity
from monitor.topology import service_backends

# evaluate(snapshot, source, destination, port, protocol) -> allowed? Sources and destinations are pods of that
# snapshot or IP strings, exactly what monitor.engine.Engine.decide takes.
Evaluate = Callable[[Snapshot, Pod | str, Pod | str, int, str], bool]

# Outcomes that say nothing about reachability: never the start or end of a drift.
NOT_OBSERVED = frozenset({Outcome.SKIPPED, Outcome.ERROR, Outcome.UNSETTLED})


def _unobserved(r: FlowResult) -> bool:
    """Says nothing about reachability: an outcome above, or one judged `skipped` (a TCP reset from a
    destination with no listener on the port, probe.tcp_reset_means)."""
    return r.outcome in NOT_OBSERVED or r.verdict is Verdict.SKIPPED

# How a drift event ends (the event row and its outbox payload carry the text; these are its stable openings).
BACK_TO_KNOWN_GOOD = "back to the known-good outcome"
ACCEPTED_INTO_BASELINE = "accepted into the baseline"


# ------------------------------------------------------------------------------------------- assessment
@dataclass(frozen=True, slots=True)
class Finding:
    key: str
    kind: str  # violation | gap | drift
    result: FlowResult
    baseline_outcome: Outcome | None = None
    baseline_verdict: Verdict | None = None  # drift: alerts care whether the verdict moved, not the outcome

    @property
    def verdict_changed(self) -> bool:
        """Reachable <-> blocked, as opposed to a change of how a flow is blocked (refused <-> timeout)."""
        return self.kind == "drift" and self.baseline_verdict != self.result.verdict

    @property
    def detail(self) -> str:
        r = self.result
        if self.kind == "violation":
            return f"expected {r.expected}, observed {r.verdict} ({r.outcome})"
        if self.kind == "gap":
            return f"policies say {r.intent}, observed {r.verdict} ({r.outcome})"
        return f"{self.baseline_outcome} -> {r.outcome} since known-good"


@dataclass(frozen=True, slots=True)
class Assessment:
    run: Run
    baseline: Run | None
    violations: tuple[Finding, ...]
    gaps: tuple[Finding, ...]
    changed: tuple[Finding, ...]  # drift candidates: raw outcome differs from the known-good run's

    @property
    def changed_keys(self) -> frozenset[str]:
        return frozenset(f.key for f in self.changed)

    def to_reprobe(self) -> tuple[FlowResult, ...]:
        """The flows the probe stage must run again before any of them can be called drift."""
        return tuple(f.result for f in self.changed)


def assess(run: Run, baseline: Run | None) -> Assessment:
    base = {r.key: r for r in baseline.results} if baseline else {}
    violations, gaps, changed = [], [], []
    for r in run.results:
        if r.violation:
            violations.append(Finding(r.key, "violation", r))
        if r.enforcement_gap:
            gaps.append(Finding(r.key, "gap", r))
        old = base.get(r.key)
        if old is not None and not _unobserved(old) and not _unobserved(r) and old.outcome != r.outcome:
            changed.append(Finding(r.key, "drift", r, old.outcome, old.verdict))
    return Assessment(run, baseline, tuple(violations), tuple(gaps), tuple(changed))


# ----------------------------------------------------------------------------------------- confirmation
@dataclass(frozen=True, slots=True)
class Confirmation:
    confirmed: frozenset[str] = frozenset()  # changed in every required re-probe: drift
    rejected: frozenset[str] = frozenset()  # some re-probe saw the known-good outcome again: a blip
    pending: frozenset[str] = frozenset()  # not enough usable re-probes (skipped, error): undecided


def confirm(changed: Mapping[str, Outcome], rounds: Sequence[Mapping[str, Outcome]],
            required: int) -> Confirmation:
    """`changed` maps each changed key to its known-good outcome; `rounds` are the re-probe outcomes, in order.

    A key is confirmed when each of the first `required` rounds observed it away from the known-good outcome;
    rejected as soon as one of them saw the known-good outcome; pending otherwise. required=0 confirms all.
    """
    confirmed, rejected, pending = set(), set(), set()
    for key, base in changed.items():
        seen = [r.get(key) for r in rounds[:required]]
        if any(o == base for o in seen):
            rejected.add(key)
        elif sum(1 for o in seen if o is not None and o not in NOT_OBSERVED) >= required:
            confirmed.add(key)
        else:
            pending.add(key)
    return Confirmation(frozenset(confirmed), frozenset(rejected), frozenset(pending))


def changed_outcomes(assessment: Assessment) -> dict[str, Outcome]:
    return {f.key: f.baseline_outcome for f in assessment.changed if f.baseline_outcome is not None}


# ------------------------------------------------------------------------------------------------ causes
@dataclass(frozen=True, slots=True)
class Cause:
    kind: str  # config | dataplane | unknown
    changes: tuple[str, ...] = ()  # readable snapshot differences that flip the engine's answer
    intent_before: bool | None = None  # the engine's answer on the known-good snapshot (None: flow not there)
    intent_after: bool | None = None
    combined: bool = False  # no single difference flips the answer, only all of them together
    note: str = ""

    def describe(self) -> str:
        if self.kind == "dataplane":
            return "dataplane: the policies say the same as before, the network does not"
        if self.kind == "unknown":
            return f"unknown: {self.note}" if self.note else "unknown"
        joined = "; ".join(self.changes)
        return f"config ({'together' if self.combined else 'each'}): {joined}"


def engine_evaluate() -> Evaluate:
    """The real engine, one Engine per snapshot object (cause attribution asks many flows of few snapshots)."""
    from monitor.engine import Engine  # local: tests run compare with a fake engine and no engine import

    engines: dict[int, tuple[Snapshot, Engine]] = {}

    def evaluate(snap: Snapshot, src: Pod | str, dst: Pod | str, port: int, protocol: str) -> bool:
        entry = engines.get(id(snap))
        if entry is None or entry[0] is not snap:
            # Keep the snapshot referenced so that its id is not reused by another object while cached.
            entry = engines[id(snap)] = (snap, Engine(snap))
        return entry[1].decide(src, dst, port, protocol).allowed

    return evaluate


def resolve_endpoint(snap: Snapshot, ref: str, port: int, protocol: str) -> tuple[Pod | str, int] | None:
    """A FlowResult source/destination in this snapshot: (pod or IP, port after Service mapping) or None.

    Identities are the planner's: ns/workload, ns/pod, `svc/ns/name` for a ClusterIP, an IP; `@node`
    suffixes of per-node mode are dropped (the engine does not care on which node a pod runs).
    """
    ref = ref.split("@", 1)[0]
    try:
        ipaddress.ip_address(ref)
        return ref, port
    except ValueError:
        pass
    if ref.startswith("svc/"):
        return _service_backend(snap, ref[4:], port, protocol)
    pods = sorted((p for p in snap.pods if not p.host_network and (identity(p) == ref or p.ref == ref)),
                  key=lambda p: p.name)
    if pods:
        return pods[0], port
    return _service_backend(snap, ref, port, protocol)


def _service_backend(snap: Snapshot, ref: str, port: int, protocol: str) -> tuple[Pod, int] | None:
    svc = next((s for s in snap.services if s.ref == ref), None)
    if svc is None:
        return None
    backends = sorted(service_backends(snap, svc, port, protocol), key=lambda b: b[0].name)
    if not backends or backends[0][1] is None:
        return None
    return backends[0][0], backends[0][1]


def intent_of(snap: Snapshot, flow: FlowResult, evaluate: Evaluate) -> bool | None:
    src = resolve_endpoint(snap, flow.source, flow.port, flow.protocol)
    dst = resolve_endpoint(snap, flow.destination, flow.port, flow.protocol)
    if src is None or dst is None:
        return None
    return evaluate(snap, src[0], dst[0], dst[1], flow.protocol)


def attribute_cause(flow: FlowResult, old: Snapshot | None, new: Snapshot | None,
                    evaluate: Evaluate | None = None, diff: SnapshotDiff | None = None) -> Cause:
    if old is None or new is None:
        return Cause("unknown", note="a snapshot of one of the two runs is not stored")
    evaluate = evaluate or engine_evaluate()
    before, after = intent_of(old, flow, evaluate), intent_of(new, flow, evaluate)
    if before == after:
        return Cause("dataplane", intent_before=before, intent_after=after)
    diff = diff if diff is not None else diff_snapshots(old, new)
    flips: list[Change] = [c for c in diff.changes if intent_of(apply_change(old, c), flow, evaluate) != before]
    if flips:
        return Cause("config", tuple(c.describe() for c in flips), before, after)
    # Only the combination matters (e.g. a pod relabel AND a policy that selects the new label).
    return Cause("config", tuple(c.describe() for c in diff.changes), before, after, combined=True)


def attribute_causes(flows: Iterable[FlowResult], old: Snapshot | None, new: Snapshot | None,
                     evaluate: Evaluate | None = None) -> dict[str, Cause]:
    evaluate = evaluate or (engine_evaluate() if old is not None and new is not None else None)
    diff = diff_snapshots(old, new) if old is not None and new is not None else None
    return {f.key: attribute_cause(f, old, new, evaluate, diff) for f in flows}


# ------------------------------------------------------------------------------------- runs side by side
@dataclass(frozen=True, slots=True)
class AlignedFlow:
    """One flow of two runs side by side; None where a run has no such flow."""

    key: str
    a: FlowResult | None
    b: FlowResult | None

    @property
    def same(self) -> bool:
        return bool(self.a and self.b and self.a.outcome == self.b.outcome and self.a.verdict == self.b.verdict)


def map_namespaces(ref: str, namespace_map: Mapping[str, str]) -> str:
    """A flow endpoint (ns/name, svc/ns/name, an IP) with its namespace renamed by the map."""
    prefix = "svc/" if ref.startswith("svc/") else ""
    body = ref[len(prefix):]
    ns, sep, rest = body.partition("/")
    return prefix + namespace_map.get(ns, ns) + sep + rest if sep else ref


def parse_namespace_map(items: Iterable[str], field: str) -> dict[str, str]:
    """`A_NS=B_NS` items (the CLI's --map-namespace, the dashboard's `map`, named by `field` in an error) as the
    map `align_runs` takes. A namespace mapped to two, or two mapped to one, is an error: either would make
    flows of one cluster stand for each other and hide some of them."""
    mapping: dict[str, str] = {}
    for item in items:
        a, sep, b = item.partition("=")
        if not sep or not a or not b or any(c in a + b for c in "/="):
            raise InputError(f"expected A_NS=B_NS, got {item!r}", field=field)
        taken = next((x for x, y in mapping.items() if y == b and x != a), None)
        if mapping.get(a, b) != b or taken is not None:
            first = f"{a}={mapping[a]}" if taken is None else f"{taken}={b}"
            raise InputError(f"expected each namespace in one pair, got {first!r} and {item!r}", field=field)
        mapping[a] = b
    return mapping


def align_runs(a: Run, b: Run, namespace_map: Mapping[str, str] | None = None) -> list[AlignedFlow]:
    """Every flow of either run, by FlowResult.key, sorted. Between clusters, `namespace_map` renames run a's
    namespaces to run b's (staging's shop-stg is prod's shop) before the keys are compared."""
    if namespace_map:
        flows_a = {replace(r, source=map_namespaces(r.source, namespace_map),
                           destination=map_namespaces(r.destination, namespace_map)).key: r for r in a.results}
    else:
        flows_a = {r.key: r for r in a.results}
    flows_b = {r.key: r for r in b.results}
    return [AlignedFlow(k, flows_a.get(k), flows_b.get(k)) for k in sorted(flows_a.keys() | flows_b.keys())]


@dataclass(frozen=True, slots=True)
class RunDiff:
    """Two runs of one cluster: the flows whose outcome differs, each with the cause of the change when
    both runs have it, and the snapshot differences (None when a snapshot is not stored)."""

    changes: SnapshotDiff | None
    flows: tuple[tuple[AlignedFlow, Cause | None], ...]


def diff_runs(a: Run, b: Run, snapshot_a: Snapshot | None, snapshot_b: Snapshot | None,
              evaluate: Evaluate | None = None) -> RunDiff:
    changes = diff_snapshots(snapshot_a, snapshot_b) if snapshot_a and snapshot_b else None
    if changes is not None and evaluate is None:
        evaluate = engine_evaluate()  # one engine per snapshot for all flows
    flows = []
    for f in align_runs(a, b):
        if not f.same:
            cause = attribute_cause(f.b, snapshot_a, snapshot_b, evaluate, changes) if f.a and f.b else None
            flows.append((f, cause))
    return RunDiff(changes, tuple(flows))


# ------------------------------------------------------------------------------------------------ events
@dataclass(frozen=True, slots=True)
class DriftEvent:
    """One flow in a bad state (violation, gap or drift) from the run that opened it to the one that ended it."""

    cluster: str
    flow_key: str
    kind: str  # violation | gap | drift
    opened_at: str
    detail: str
    cause: Cause | None = None
    opened_run: str | None = None  # filled in by the store, which gives the run its id
    resolved_at: str | None = None
    resolved_run: str | None = None
    resolution: str | None = None
    id: str | None = None
    # Drift only, carried in the alert payload (not stored in the events table): the known-good verdict and
    # outcome, so that the sender can tell a verdict change (alert) from refused <-> timeout (history only).
    baseline_verdict: str | None = None
    baseline_outcome: str | None = None

    @property
    def open(self) -> bool:
        return self.resolved_at is None


@dataclass(frozen=True, slots=True)
class Resolution:
    event_id: str
    resolved_at: str
    resolution: str
    flow_key: str = ""  # what the CLI says was resolved
    kind: str = ""


@dataclass(frozen=True, slots=True)
class Transitions:
    opened: tuple[DriftEvent, ...] = ()
    resolved: tuple[Resolution, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.opened or self.resolved)


def transitions(cluster: str, assessment: Assessment, confirmation: Confirmation, causes: Mapping[str, Cause],
                open_events: Iterable[DriftEvent], now: str) -> Transitions:
    """Events to open and to resolve after this run: one per state change of a (flow, kind).

    A finding on a flow that changed since known-good waits for confirmation like drift does (a single lost
    packet must not page anyone); a finding on an unchanged flow opens at once. A flow the run could not
    observe (skipped, error, or a re-probe still pending) keeps its current state.
    """
    changed = assessment.changed_keys
    undecided = confirmation.pending | (changed - confirmation.confirmed - confirmation.rejected)
    active: dict[tuple[str, str], Finding] = {}
    for f in (*assessment.violations, *assessment.gaps):
        if f.key in changed and f.key not in confirmation.confirmed:
            continue
        active[(f.key, f.kind)] = f
    for f in assessment.changed:
        if f.key in confirmation.confirmed:
            active[(f.key, "drift")] = f
    results = {r.key: r for r in assessment.run.results}
    baseline = assessment.baseline
    base = {r.key: r for r in baseline.results} if baseline is not None else {}
    already = {(e.flow_key, e.kind): e for e in open_events if e.open}
    # A drift event the baseline has since taken in (a refused <-> timeout change made known-good, or a run
    # accepted by hand) describes a change from a baseline that is gone: a new change of that flow is measured
    # from the new baseline and is a new event with its own cause, never a continuation of the old one (which
    # would leave, say, timeout -> connected reported only as "expectation newly violated").
    superseded = {k for k, e in already.items() if k[1] == "drift" and k in active and baseline is not None
                  and _not_before(baseline.started_at, e.opened_at)}
    opened = tuple(_opened(cluster, kind, f, causes, now) for (key, kind), f in sorted(active.items())
                   if (key, kind) not in already or (key, kind) in superseded)
    resolved = []
    for (key, kind), event in sorted(already.items()):
        if (key, kind) in active and (key, kind) not in superseded:
            continue
        r = results.get(key)
        if r is None:
            why = "the flow is no longer in the suite"
        elif _unobserved(r) or key in undecided:
            continue
        elif kind == "drift":
            old = base.get(key)
            if baseline is None or old is None or _unobserved(old):
                continue  # no baseline observation of this flow to say it is back: keep the event open
            if _not_before(baseline.started_at, event.opened_at):
                # The baseline moved onto the drifted state (accepted by hand, or a change of how a flow is
                # blocked taken in automatically): the flow did not move back, so this is no recovery.
                run_ref = f" (run {baseline.id})" if baseline.id else ""
                why = f"{ACCEPTED_INTO_BASELINE}{run_ref}: {old.outcome} is the known-good outcome now"
            else:
                why = BACK_TO_KNOWN_GOOD if key not in changed else f"{BACK_TO_KNOWN_GOOD} on re-probe"
        else:
            why = {"violation": "meets its expectation again", "gap": "the network does what the policies say"}[kind]
        resolved.append(Resolution(str(event.id), now, why, key, kind))
    return Transitions(opened, tuple(resolved))


def _opened(cluster: str, kind: str, f: Finding, causes: Mapping[str, Cause], now: str) -> DriftEvent:
    if kind != "drift":
        return DriftEvent(cluster, f.key, kind, now, f.detail)
    return DriftEvent(cluster, f.key, kind, now, f.detail, causes.get(f.key),
                      baseline_verdict=str(f.baseline_verdict) if f.baseline_verdict is not None else None,
                      baseline_outcome=str(f.baseline_outcome) if f.baseline_outcome is not None else None)


def _not_before(a: str, b: str) -> bool:
    """a >= b for two timestamps of the store (ISO 8601, possibly in different offsets)."""
    try:
        return datetime.fromisoformat(a) >= datetime.fromisoformat(b)
    except (TypeError, ValueError):
        return a >= b  # not ISO (hand-made test data): both come from the same writer, compare as text


# --------------------------------------------------------------------------------------------- known-good
def could_not_probe(r: FlowResult) -> bool:
    """A planned flow the probe stage failed on (probe pod lost, deadline, unsettled): the run does not
    know what this flow does now. A flow with nothing to probe (the planner found no live source or destination
    pod: a workload scaled to zero, a selector matching nothing) is a fact about the cluster, not a gap in
    what the run saw; the planner marks those with intent `skipped`."""
    return r.outcome in (Outcome.SKIPPED, Outcome.UNSETTLED) and r.intent is not Verdict.SKIPPED


def _drift_left_open(assessment: Assessment, confirmation: Confirmation,
                     open_events: Iterable[DriftEvent]) -> list[DriftEvent]:
    """Drift events open before this run that this run does not close. Moving the baseline under them would
    later close them as "accepted" although nobody accepted them."""
    events = [e for e in open_events if e.open and e.kind == "drift"]
    if not events:
        return []
    closed = {r.event_id for r in transitions(assessment.run.cluster, assessment, confirmation, {}, events,
                                              assessment.run.started_at).resolved}
    return [e for e in events if str(e.id) not in closed]


def becomes_known_good(assessment: Assessment, confirmation: Confirmation, settings: DriftSettings,
                       open_events: Iterable[DriftEvent] = ()) -> bool:
    """Automatic baseline. A run becomes known-good by itself when it observed something, has no violation,
    every flow the probe stage was asked about was probed (flows with nothing to probe do not block it, so a
    workload scaled to zero cannot stall the baseline forever), every change since known-good was confirmed,
    and no change moves reachability (reachable <-> blocked): such a drift stays open until the flow goes back
    or someone accepts a run (`netpol-drift accept`). A confirmed change of how a flow is blocked (refused <->
    timeout) is taken in; its drift event then closes as "accepted into the baseline" on the next run. A drift
    event from an earlier run that this run does not close (the flow is not back, or was not observed) blocks
    it too: moving the baseline under it would later close it as accepted with nobody having accepted it.
    """
    return not known_good_blockers(assessment, confirmation, settings, open_events)


def known_good_blockers(assessment: Assessment, confirmation: Confirmation, settings: DriftSettings,
                        open_events: Iterable[DriftEvent] = ()) -> tuple[str, ...]:
    """Why a run does not become known-good by itself (empty: it does), in words for the run's report."""
    run = assessment.run
    checks = (
        (not settings.auto_known_good, "drift.auto_known_good is off"),
        (run.status == "failed", "the run failed"),
        (bool(assessment.violations), "some flow does not meet its expectation"),
        (not any(r.observed for r in run.results), "nothing was observed"),
        (any(could_not_probe(r) for r in run.results), "some flow could not be probed"),
        (not assessment.changed_keys <= confirmation.confirmed, "some change is not confirmed yet"),
        (any(f.verdict_changed and f.key in confirmation.confirmed for f in assessment.changed),
         "a drift changes reachability (fix it, or take it in with `netpol-drift accept RUN`)"),
        (bool(_drift_left_open(assessment, confirmation, open_events)),
         "an earlier drift event stays open (the flow is not back, or could not be observed)"),
    )
    return tuple(why for blocked, why in checks if blocked)


@dataclass(frozen=True, slots=True)
class Judgement:
    assessment: Assessment
    confirmation: Confirmation
    causes: dict[str, Cause] = field(hash=False, compare=False)
    transitions: Transitions
    known_good: bool
    not_known_good_because: tuple[str, ...] = ()


def judge(run: Run, baseline: Run | None, *, old_snapshot: Snapshot | None, new_snapshot: Snapshot | None,
          open_events: Iterable[DriftEvent], rounds: Sequence[Mapping[str, Outcome]], settings: DriftSettings,
          now: str, evaluate: Evaluate | None = None, history_only: str | None = None) -> Judgement:
    """Everything compare decides about one run, given the re-probe rounds the probe stage already ran.

    `history_only` (why, in words) makes the run history only: it was probed while what it observes cannot be trusted
    to say what the policies do (right after an API server outage the CNI agents re-sync, and every probe pod is
    a pod they may not have programmed yet). Its changes stay unconfirmed, no event opens or closes (a fresh pod
    that is blocked could pass for a flow "back" to blocked), and it cannot become the baseline."""
    assessment = assess(run, baseline)
    if history_only is not None:
        return Judgement(assessment, Confirmation(pending=assessment.changed_keys), {}, Transitions(), False,
                         (f"not judged: {history_only}",))
    confirmation = confirm(changed_outcomes(assessment), rounds, settings.confirmations)
    drifted = [f.result for f in assessment.changed if f.key in confirmation.confirmed]
    causes = attribute_causes(drifted, old_snapshot, new_snapshot, evaluate) if drifted else {}
    open_events = list(open_events)
    trans = transitions(run.cluster, assessment, confirmation, causes, open_events, now)
    blockers = known_good_blockers(assessment, confirmation, settings, open_events)
    return Judgement(assessment, confirmation, causes, trans, not blockers, blockers)

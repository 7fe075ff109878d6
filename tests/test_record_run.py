"""run.record_run on a real database: baseline lookup, re-probe rounds, judgement and one stored transaction.

The probe stage is replaced by a scripted re-probe (a list of outcome maps, one per round) because what is
under test here is the orchestration (which flows are re-probed, how often, what is stored); real re-probes
through real probe pods are covered by tests/test_live_history_lab.py.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

import pytest

from monitor.models import FlowResult, Outcome, Run, Snapshot
from monitor.run import LiveRun, record_run
from monitor.settings import DriftSettings, Settings
from monitor.snapshot import snapshot_digest
from monitor.store import Store
from tests.test_history import flows, snap


def live(t: str, deny: bool) -> LiveRun:
    s: Snapshot = snap("shop", deny)
    run = Run("prod", t, t, "manual", snapshot_digest(s), "sha256:suite", flows("shop", not deny))
    return LiveRun(run, (), s, 0, 0.0)


class Script:
    """Answers re-probe round n with rounds[n-1] and remembers what it was asked."""

    def __init__(self, *rounds: Mapping[str, Outcome]) -> None:
        self.rounds, self.asked = rounds, []

    def __call__(self, asked: Sequence[FlowResult], n: int) -> Mapping[str, Outcome]:
        self.asked.append((n, [f.key for f in asked]))
        return {f.key: self.rounds[n - 1][f.key] for f in asked}


def settings(confirmations: int) -> Settings:
    return dataclasses.replace(Settings(), drift=DriftSettings(confirmations=confirmations))


def now(t: str) -> datetime:
    return datetime.fromisoformat(t).astimezone(UTC)


@pytest.fixture
def store(db_url: str):
    with Store.open(db_url, migrate=True) as s:
        yield s


T1, T2, T3 = "2026-11-29T10:00:00+00:00", "2026-11-29T10:05:00+00:00", "2026-11-29T10:10:00+00:00"
WEB_DB = "web-db|shop/web|shop/db|5432/TCP"


def test_first_run_becomes_the_baseline_without_reprobing(store: Store) -> None:
    script = Script()
    rec = record_run(store, live(T1, deny=True), settings(2), now(T1), "name: s\n", script)
    assert script.asked == [] and rec.baseline_id is None and rec.judgement.known_good
    assert store.known_good("prod", "sha256:suite").id == rec.stored_id
    assert store.suite_text("sha256:suite") == "name: s\n"


def test_confirmed_drift_reprobes_only_the_changed_flow_every_round(store: Store) -> None:
    first = record_run(store, live(T1, deny=True), settings(2), now(T1), None, Script())
    script = Script({WEB_DB: Outcome.CONNECTED}, {WEB_DB: Outcome.CONNECTED})
    rec = record_run(store, live(T2, deny=False), settings(2), now(T2), None, script)

    assert script.asked == [(1, [WEB_DB]), (2, [WEB_DB])]  # db-web did not change: never re-probed
    assert rec.baseline_id == first.stored_id and rec.reprobe_rounds == 2
    assert rec.judgement.confirmation.confirmed == {WEB_DB} and not rec.judgement.known_good
    [drift] = [e for e in store.open_events("prod") if e.kind == "drift"]
    assert drift.opened_run == rec.stored_id and drift.opened_at.startswith("2026-11-29T10:05:00")
    assert drift.cause.kind == "config" and drift.cause.changes == ("NetworkPolicy shop/deny-db removed",)
    # The run, its violation and drift events and one outbox row each landed together.
    assert {e.kind for e in store.events("prod")} == {"drift", "violation"}
    assert len(store.pending_alerts()) == 2


def test_a_blip_drops_out_after_the_round_that_saw_the_old_outcome(store: Store) -> None:
    record_run(store, live(T1, deny=True), settings(3), now(T1), None, Script())
    script = Script({WEB_DB: Outcome.TIMEOUT})  # round 1 sees the known-good outcome again
    rec = record_run(store, live(T2, deny=False), settings(3), now(T2), None, script)

    assert script.asked == [(1, [WEB_DB])] and rec.reprobe_rounds == 1
    assert rec.judgement.confirmation.rejected == {WEB_DB}
    assert store.events("prod") == [] and store.pending_alerts() == []
    assert not store.summary(rec.stored_id).known_good


def test_unusable_reprobe_leaves_the_change_pending(store: Store) -> None:
    record_run(store, live(T1, deny=True), settings(1), now(T1), None, Script())
    rec = record_run(store, live(T2, deny=False), settings(1), now(T2), None,
                     Script({WEB_DB: Outcome.SKIPPED}))
    assert rec.judgement.confirmation.pending == {WEB_DB}
    assert store.events("prod") == [] and not rec.judgement.known_good
    # The next run confirms it: the event opens then, once.
    rec3 = record_run(store, live(T3, deny=False), settings(1), now(T3), None, Script({WEB_DB: Outcome.CONNECTED}))
    assert [e.opened_run for e in store.events("prod") if e.kind == "drift"] == [rec3.stored_id]


def test_a_history_only_run_is_stored_unjudged_and_the_next_run_judges_its_change(store: Store) -> None:
    """Right after an API server outage (serve): the change is neither re-probed nor confirmed, no event, no
    alert, no new baseline; the first run judged afterwards confirms it as usual."""
    first = record_run(store, live(T1, deny=True), settings(1), now(T1), None, Script())
    script = Script({WEB_DB: Outcome.CONNECTED})
    why = "the API server answered again at 10:04:50 UTC; the CNI agents re-sync until 10:05:50 UTC"
    rec = record_run(store, live(T2, deny=False), settings(1), now(T2), None, script, history_only=why)
    assert script.asked == [] and rec.reprobe_rounds == 0 and rec.history_only == why
    assert rec.judgement.confirmation.pending == {WEB_DB} and not rec.judgement.confirmation.confirmed
    assert rec.judgement.not_known_good_because == (f"not judged: {why}",)
    assert store.events("prod") == [] and store.pending_alerts() == []
    assert store.known_good("prod", "sha256:suite").id == first.stored_id
    assert [r.id for r in store.history("prod")] == [rec.stored_id, first.stored_id]  # stored as history
    rec3 = record_run(store, live(T3, deny=False), settings(1), now(T3), None, Script({WEB_DB: Outcome.CONNECTED}))
    assert [e.opened_run for e in store.events("prod") if e.kind == "drift"] == [rec3.stored_id]


def test_run_with_an_unreachable_database_fails_before_touching_the_cluster(tmp_path, capsys) -> None:
    from monitor.cli import main

    suite = tmp_path / "suite.yaml"
    suite.write_text("name: s\ncases: [{name: a, from: {namespace: x, pod: a}, to: {namespace: x, pod: b}, "
                     "port: 80, expect: allow}]\n")
    # No kubeconfig exists at all: reaching the cluster would fail with a different message.
    argv = ["run", "--once", "--suite", str(suite), "--kubeconfig", str(tmp_path / "missing"),
            "--db", "postgresql://nobody:secret@127.0.0.1:1/none"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach database" in err[0] and "secret" not in err[0]
    with pytest.raises(SystemExit) as e:
        main(["run", "--once", "--suite", str(suite), "--db", "sqlite:///x.db", "--no-store"])
    assert e.value.code == 2


def test_an_accepted_drift_closes_as_accepted_into_the_baseline_in_the_event_and_its_alert(store: Store) -> None:
    """Issue 8 item 3 on a real database: a drift that changes reachability keeps the baseline where it was;
    a person accepts the drifted run; the next run closes the event as accepted, not as a recovery."""
    record_run(store, live(T1, deny=True), settings(1), now(T1), None, Script())
    drifted = record_run(store, live(T2, deny=False), settings(1), now(T2), None, Script({WEB_DB: Outcome.CONNECTED}))
    assert not drifted.judgement.known_good
    store.accept(drifted.stored_id, by="alice", now=T2)
    sent = {a.id for a in store.pending_alerts()}

    rec = record_run(store, live(T3, deny=False), settings(1), now(T3), None, Script())
    assert rec.baseline_id == drifted.stored_id and rec.judgement.assessment.changed == ()
    [drift] = [e for e in store.events("prod") if e.kind == "drift"]
    why = f"accepted into the baseline (run {drifted.stored_id}): connected is the known-good outcome now"
    assert (drift.resolved_run, drift.resolution) == (rec.stored_id, why)
    [alert] = [json.loads(a.payload) for a in store.pending_alerts() if a.id not in sent
               and json.loads(a.payload)["kind"] == "drift"]
    assert alert["change"] == "resolved" and alert["resolution"] == why

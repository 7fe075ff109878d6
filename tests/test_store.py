"""The store on SQLite and on a real PostgreSQL server: migrations, dedup, baselines, events, outbox,
retention, export/import, and the one-line errors."""

from __future__ import annotations

import dataclasses
import json

import pytest

from monitor import store as st
from monitor.compare import Cause, DriftEvent, Resolution, Transitions, judge
from monitor.errors import InputError, StoreError
from monitor.models import FlowResult, Namespace, Outcome, Run, Snapshot, Verdict, labels_of
from monitor.settings import DriftSettings
from monitor.snapshot import snapshot_digest
from monitor.store import Store

A, D = Verdict.ALLOW, Verdict.DENY
SNAP = Snapshot.build(namespaces=[Namespace("shop", labels_of({"team": "a"}))])
SNAP2 = Snapshot.build(namespaces=[Namespace("shop", labels_of({"team": "b"}))])


def results(n: int = 20, flip: int | None = None, latency: float = 1.0) -> tuple[FlowResult, ...]:
    out = []
    for i in range(n):
        outcome = Outcome.CONNECTED if (i % 2 == 0) != (i == flip) else Outcome.TIMEOUT
        verdict = A if outcome == Outcome.CONNECTED else D
        expected = A if i % 2 == 0 else D
        out.append(FlowResult(f"case-{i}", "shop/web", f"shop/db{i}", 5432, "TCP", expected, expected, outcome,
                              verdict, latency * (i + 1) if outcome == Outcome.CONNECTED else None, 1,
                              f"allowed by shop/p{i}", "", None))
    return tuple(out)


def make_run(t: str, res: tuple[FlowResult, ...] | None = None, cluster: str = "prod", snap: Snapshot = SNAP,
             trigger: str = "schedule") -> Run:
    return Run(cluster, t, t, trigger, snapshot_digest(snap), "sha256:suite-1", res if res is not None else
               results())


@pytest.fixture
def store(db_url: str):
    with Store.open(db_url, migrate=True) as s:
        yield s


# --------------------------------------------------------------------------------------------- migrations
def test_migrations_up_down_and_models_match(db_url: str) -> None:
    assert st.upgrade(db_url) == st.head_revision() == st.alembic_head() == "0006"
    # autogenerate's comparison (what `alembic check` runs): the migrations build exactly schema.py.
    assert st.schema_differences(db_url) == []
    assert st.current_revision(db_url) == "0006"
    assert st.downgrade(db_url, "base") is None
    diff = st.schema_differences(db_url)
    assert {d[0] for d in diff} == {"add_table", "add_index"}  # everything is gone again
    assert len([d for d in diff if d[0] == "add_table"]) == 10
    assert st.upgrade(db_url) == "0006"
    with Store.open(db_url) as s:
        run = dataclasses.replace(make_run("2026-11-29T00:00:00Z"), trigger="change",
                                  trigger_detail="NetworkPolicy shop/api modified")
        stored = s.save_run(run, now="2026-11-29T00:00:01Z", snapshot=SNAP)
        assert s.table_counts()["runs"] == 1
        # serve's change runs say what changed (0004), in the run and in history.
        assert s.get_run(stored).trigger_detail == "NetworkPolicy shop/api modified"
        assert s.history()[0].trigger_detail == "NetworkPolicy shop/api modified"


def test_an_older_schema_is_refused_then_upgraded_with_its_data(db_url: str) -> None:
    assert st.upgrade(db_url, "0001") == "0001"
    with pytest.raises(StoreError) as e:
        Store.open(db_url)
    assert str(e.value) == (f"database {st.safe_url(db_url)} is at schema revision 0001, this netpol-drift "
                            "needs 0006: run `netpol-drift db upgrade`")
    with Store.open(db_url, migrate=True) as s:
        opened = Transitions(opened=(DriftEvent("prod", "k", "drift", "2026-11-29T00:00:00Z", "x"),))
        s.save_run(make_run("2026-11-29T00:00:00Z"), now="2026-11-29T00:00:00Z", snapshot=SNAP, transitions=opened)
    assert st.downgrade(db_url, "0001") == "0001"  # the outbox row survives both ways
    assert st.upgrade(db_url) == "0006"
    with Store.open(db_url) as s:
        assert [a.attempts for a in s.due_alerts("2026-11-29T00:00:00Z")] == [0]


def test_open_refuses_a_database_without_schema(db_url: str) -> None:
    if db_url.startswith("sqlite"):
        path = db_url.removeprefix("sqlite:///")
        with pytest.raises(StoreError) as e:
            Store.open(db_url)
        assert str(e.value) == f"no database at {path} (create it with `netpol-drift db upgrade`)"
        st.upgrade(db_url, "base")  # creates the file, no tables
    with pytest.raises(StoreError) as e:
        Store.open(db_url)
    assert str(e.value) == (f"database {st.safe_url(db_url)} has no netpol-drift schema, this netpol-drift "
                            "needs 0006: run `netpol-drift db upgrade`")


def test_unknown_revision_is_one_line(db_url: str) -> None:
    with pytest.raises(InputError) as e:
        st.upgrade(db_url, "9999")
    assert str(e.value).startswith("cannot upgrade to '9999': ")


def test_unreachable_database_hides_the_password() -> None:
    with pytest.raises(StoreError) as e:
        Store.open("postgresql://monitor:s3cret@127.0.0.1:1/history")
    message = str(e.value)
    assert message.startswith("cannot reach database postgresql://monitor@127.0.0.1:1/history: ")
    assert "s3cret" not in message and "\n" not in message
    with pytest.raises(StoreError) as e:
        Store.open("postgresql://monitor@127.0.0.1:1/history", password="s3cret")
    assert "s3cret" not in str(e.value)


# ------------------------------------------------------------------------------------------ runs & dedup
def test_run_round_trip_and_unchanged_runs_are_not_copied(store: Store) -> None:
    run = make_run("2026-11-29T00:00:00Z")
    rid = store.save_run(run, now="2026-11-29T00:00:01Z", snapshot=SNAP, suite_text="cases: []\n")
    back = store.get_run(rid)
    assert back.id == rid
    assert dataclasses.replace(back, id=None, results=()) == dataclasses.replace(run, results=())
    for got, want in zip(back.results, run.results, strict=True):
        assert dataclasses.replace(got, latency_ms=None) == dataclasses.replace(want, latency_ms=None)
        if want.latency_ms is None:
            assert got.latency_ms is None
        else:  # one byte on a log scale: within 3%
            assert abs(got.latency_ms - want.latency_ms) <= 0.03 * want.latency_ms + 0.05
    before = store.table_counts()
    # Same results, different latencies, same snapshot: only a run row.
    for i in range(1, 4):
        store.save_run(make_run(f"2026-11-29T00:0{i * 5 // 10}:{i * 5 % 10}0Z", results(latency=1.0 + i)),
                       now="2026-11-29T01:00:00Z")
    after = store.table_counts()
    assert after["runs"] == before["runs"] + 3
    for table in ("result_sets", "flow_results", "snapshots", "suites", "clusters"):
        assert after[table] == before[table], table
    # One result changes: one new result row and one new set, nothing else.
    store.save_run(make_run("2026-11-29T00:30:00Z", results(flip=3), snap=SNAP2), now="2026-11-29T01:00:00Z",
                   snapshot=SNAP2)
    changed = store.table_counts()
    assert (changed["flow_results"], changed["result_sets"], changed["snapshots"]) == (
        after["flow_results"] + 1, after["result_sets"] + 1, after["snapshots"] + 1)
    # Flapping back reuses the first set.
    store.save_run(make_run("2026-11-29T00:35:00Z"), now="2026-11-29T01:00:00Z")
    assert store.table_counts()["result_sets"] == changed["result_sets"]
    assert store.snapshot(snapshot_digest(SNAP2)) == SNAP2
    assert store.suite_text("sha256:suite-1") == "cases: []\n"
    hist = store.history("prod", limit=3)
    assert [h.started_at for h in hist] == ["2026-11-29T00:35:00Z", "2026-11-29T00:30:00Z",
                                            "2026-11-29T00:01:50Z"]
    assert hist[0].result_set == store.summary(rid).result_set
    assert (hist[1].results, hist[1].violations, hist[1].gaps) == (20, 1, 1)


def test_unknown_run_and_mismatching_snapshot(store: Store) -> None:
    for bad in ("999", "abc", "-1"):
        with pytest.raises(InputError) as e:
            store.get_run(bad)
        assert str(e.value) == f"unknown run {bad} (see netpol-drift history)"
    with pytest.raises(InputError) as e:
        store.save_run(make_run("2026-11-29T00:00:00Z"), now="2026-11-29T00:00:00Z")
    assert str(e.value) == f"snapshot {snapshot_digest(SNAP)} is not stored; pass it with the run"
    with pytest.raises(InputError):
        store.save_run(make_run("2026-11-29T00:00:00Z"), now="2026-11-29T00:00:00Z", snapshot=SNAP2)
    assert store.table_counts()["runs"] == 0


def test_baseline_is_the_newest_known_good_run(store: Store) -> None:
    assert store.known_good("prod", "sha256:suite-1") is None
    first = store.save_run(make_run("2026-11-29T00:00:00Z"), now="2026-11-29T00:00:00Z", snapshot=SNAP,
                           known_good=True)
    store.save_run(make_run("2026-11-29T00:05:00Z", results(flip=1)), now="2026-11-29T00:05:00Z")
    third = store.save_run(make_run("2026-11-29T00:10:00Z", results(flip=2)), now="2026-11-29T00:10:00Z")
    store.save_run(make_run("2026-11-29T00:00:00Z", cluster="staging"), now="2026-11-29T00:00:00Z",
                   known_good=True)
    assert store.known_good("prod", "sha256:suite-1").id == first
    summary = store.accept(third, by="alice", now="2026-11-29T00:11:00Z")
    assert (summary.known_good, summary.accepted_by) == (True, "alice")
    assert store.known_good("prod", "sha256:suite-1").id == third
    assert store.known_good("prod", "sha256:other") is None
    assert store.clusters() == ["prod", "staging"]


# ------------------------------------------------------------------------------------ events and outbox
def test_drift_sequence_is_stored_with_one_alert_per_change(store: Store) -> None:
    settings = DriftSettings(confirmations=1)
    kg_run = make_run("2026-11-29T00:00:00Z")
    store.save_run(kg_run, now="2026-11-29T00:00:00Z", snapshot=SNAP, known_good=True)
    flipped = results(flip=0)
    key = flipped[0].key
    times = ["2026-11-29T00:05:00Z", "2026-11-29T00:10:00Z", "2026-11-29T00:15:00Z"]
    outcomes = [flipped, flipped, results()]
    for t, res in zip(times, outcomes, strict=True):
        baseline = store.known_good("prod", "sha256:suite-1")
        run = make_run(t, res)
        j = judge(run, baseline, old_snapshot=SNAP, new_snapshot=SNAP, open_events=store.open_events("prod"),
                  rounds=[{key: res[0].outcome}], settings=settings, now=t)
        store.save_run(run, now=t, transitions=j.transitions, known_good=j.known_good)
    events = store.events("prod")
    assert sorted((e.kind, e.opened_at, e.resolved_at) for e in events) == [
        ("drift", times[0], times[2]), ("gap", times[0], times[2]), ("violation", times[0], times[2])]
    drift = next(e for e in events if e.kind == "drift")
    # The snapshot has no pods of this flow: the engine's answer is "not placed" both times, not a config change.
    assert drift.cause == Cause("dataplane", (), None, None)
    assert drift.opened_run and drift.resolved_run and drift.resolution == "back to the known-good outcome"
    assert store.open_events("prod") == []
    alerts = store.pending_alerts()
    assert len(alerts) == 6  # three opened, three resolved; nothing for the unchanged middle run
    payloads = [json.loads(a.payload) for a in alerts]
    assert [p["change"] for p in payloads] == ["opened"] * 3 + ["resolved"] * 3
    assert payloads[0]["flow_key"] == key and payloads[0]["cluster"] == "prod"
    store.mark_alert_failed(alerts[0].id, "slack: 503")
    store.mark_alert_sent(alerts[1].id, "2026-11-29T00:20:00Z")
    pending = store.pending_alerts()
    assert len(pending) == 5 and (pending[0].attempts, pending[0].last_error) == (1, "slack: 503")


def test_outbox_backs_off_failed_alerts_keeps_each_events_order_and_records_delivery(store: Store) -> None:
    t0, t1 = "2026-11-29T00:00:00Z", "2026-11-29T00:05:00Z"
    first, second = (DriftEvent("prod", k, "drift", t0, f"{k} changed") for k in ("k1", "k2"))
    store.save_run(make_run(t0), now=t0, snapshot=SNAP, transitions=Transitions(opened=(first, second)))
    opened = {e.flow_key: e.id for e in store.events("prod")}
    store.save_run(make_run(t1), now=t1, transitions=Transitions(resolved=(Resolution(opened["k1"], t1, "back"),)))
    open1, open2, resolved1 = store.pending_alerts()
    assert [st.alert_event(a)[0] for a in (open1, open2, resolved1)] == ["opened", "opened", "resolved"]
    _, event = st.alert_event(resolved1)
    assert (event.id, event.flow_key, event.resolved_at, event.resolution) == (opened["k1"], "k1", t1, "back")
    # "resolved" of k1 waits for "opened" of k1: Slack must never show them the other way round.
    assert [a.id for a in store.due_alerts(t1)] == [open1.id, open2.id]

    failed = store.mark_alert_failed(open1.id, "slack: ratelimited", next_attempt_at="2026-11-29T00:06:00Z")
    assert (failed.attempts, failed.last_error, failed.next_attempt_at, failed.sent_at) == (
        1, "slack: ratelimited", "2026-11-29T00:06:00Z", None)
    assert [a.id for a in store.due_alerts(t1)] == [open2.id]  # backing off, and k1's resolution behind it
    assert [a.id for a in store.due_alerts("2026-11-29T00:06:00Z")] == [open1.id, open2.id]
    assert [a.id for a in store.due_alerts("2026-11-29T00:06:00Z", limit=1)] == [open1.id]
    again = store.mark_alert_failed(open1.id, "slack: 503")  # no time given: due again at once
    assert (again.attempts, again.next_attempt_at) == (2, None)
    assert [a.id for a in store.due_alerts(t1)] == [open1.id, open2.id]

    sent = store.mark_alert_sent(open1.id, "2026-11-29T00:07:00Z", channel="C0123456", ts="1764403620.000100")
    assert (sent.sent_at, sent.attempts, sent.last_error, sent.next_attempt_at, sent.slack_channel,
            sent.slack_ts) == ("2026-11-29T00:07:00Z", 3, None, None, "C0123456", "1764403620.000100")
    assert [a.id for a in store.due_alerts(t1)] == [open2.id, resolved1.id]
    assert [a.id for a in store.pending_alerts()] == [open2.id, resolved1.id]
    with pytest.raises(InputError) as e:
        store.mark_alert_failed("4242", "x")
    assert str(e.value) == "unknown alert 4242"


def test_a_damaged_alert_payload_is_one_line() -> None:
    with pytest.raises(StoreError) as e:
        st.alert_event(st.Alert("7", "2026-11-29T00:00:00Z", "[1, 2"))
    assert str(e.value) == "alert 7 has a damaged payload"
    with pytest.raises(StoreError) as e:
        st.alert_event(st.Alert("7", "2026-11-29T00:00:00Z", '{"change": "opened", "cluster": 3}'))
    assert str(e.value).startswith("alert 7 has a damaged payload: ")


def test_a_failing_write_leaves_nothing_behind(store: Store) -> None:
    before = store.table_counts()
    bad = Transitions(opened=(DriftEvent("prod", "k", "drift", "2026-11-29T00:00:00Z", "x"),),
                      resolved=(Resolution("4242", "2026-11-29T00:00:00Z", "gone"),))
    with pytest.raises(InputError) as e:
        store.save_run(make_run("2026-11-29T00:00:00Z"), now="2026-11-29T00:00:00Z", snapshot=SNAP,
                       transitions=bad)
    assert str(e.value) == "unknown drift event 4242 of cluster prod"
    assert store.table_counts() == before  # not the cluster, the snapshot, the results, the run, the event


# ------------------------------------------------------------------------------------------- retention
def test_prune_keeps_baselines_and_accepted_runs(store: Store) -> None:
    old = store.save_run(make_run("2026-01-01T00:00:00Z", results(flip=5), snap=SNAP2), now="2026-01-01T00:00:00Z",
                         snapshot=SNAP2)
    accepted = store.save_run(make_run("2026-01-02T00:00:00Z", results(flip=6)), now="2026-01-02T00:00:00Z",
                              snapshot=SNAP)
    store.accept(accepted, by="bob", now="2026-01-02T00:00:00Z")
    baseline = store.save_run(make_run("2026-01-03T00:00:00Z"), now="2026-01-03T00:00:00Z", known_good=True)
    older_kg = store.save_run(make_run("2026-01-02T12:00:00Z", results(flip=7)), now="2026-01-03T00:00:00Z",
                              known_good=True)
    recent = store.save_run(make_run("2026-11-28T00:00:00Z", results(flip=8)), now="2026-11-28T00:00:00Z")
    report = store.prune("2026-11-29T00:00:00Z", retention_days=90)
    assert report.runs == 2 and report.snapshots == 1 and report.result_sets == 2 and report.flow_results == 2
    kept = {h.id for h in store.history(limit=10)}
    assert kept == {accepted, baseline, recent}
    assert old not in kept and older_kg not in kept
    # What is left still reads completely.
    assert store.get_run(recent).results[8].outcome == Outcome.TIMEOUT
    assert store.get_run(accepted).results[6].outcome == Outcome.TIMEOUT
    assert store.prune("2026-11-29T00:00:00Z", retention_days=90) == st.PruneReport()


def test_prune_keeps_the_baseline_known_good_picks_among_runs_that_started_together(store: Store) -> None:
    """Two old known-good runs with one start time (an import, two replicas): known_good() takes the newer id,
    and prune must keep that very run, or the next run would be judged against nothing."""
    t = "2026-01-05T00:00:00Z"
    first = store.save_run(make_run(t, results(flip=3)), now=t, snapshot=SNAP, known_good=True)
    second = store.save_run(make_run(t, results(flip=4)), now=t, known_good=True)
    assert store.known_good("prod", "sha256:suite-1").id == second
    assert store.prune("2026-11-29T00:00:00Z", retention_days=90).runs == 1
    assert [h.id for h in store.history(limit=10)] == [second] and first != second
    assert store.known_good("prod", "sha256:suite-1").results[4].outcome == Outcome.TIMEOUT  # flip=4: second


# ---------------------------------------------------------------------------------------- export/import
def test_export_import_round_trip(store: Store, tmp_path) -> None:
    a = store.save_run(make_run("2026-11-29T00:00:00Z"), now="2026-11-29T00:00:00Z", snapshot=SNAP,
                       known_good=True)
    b = store.save_run(make_run("2026-11-29T00:05:00Z", results(flip=2), snap=SNAP2), now="2026-11-29T00:05:00Z",
                       snapshot=SNAP2)
    bundle = json.loads(json.dumps(store.export_bundle(store.cluster_run_ids("prod"), now="2026-11-29T01:00:00Z")))
    assert bundle["schema"] == st.BUNDLE_SCHEMA and len(bundle["runs"]) == 2 and len(bundle["snapshots"]) == 2
    with Store.open(f"sqlite:///{tmp_path / 'other.db'}", migrate=True) as other:
        report = other.import_bundle(bundle, now="2026-11-29T02:00:00Z")
        assert len(report.imported) == 2 and report.skipped == 0
        assert other.import_bundle(bundle, now="2026-11-29T02:00:00Z") == st.ImportReport((), 2)
        for old_id, new_id in zip((a, b), report.imported, strict=True):
            assert dataclasses.replace(other.get_run(new_id), id=None) == dataclasses.replace(
                store.get_run(old_id), id=None)
        assert other.known_good("prod", "sha256:suite-1").id == report.imported[0]
        assert other.snapshot(snapshot_digest(SNAP2)) == SNAP2


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda b: b.update(schema=2), "bundle schema 2 is newer than this netpol-drift reads (1); "
                                   "upgrade netpol-drift to import it"),
    (lambda b: b.update(format="x"), 'not a netpol-drift-bundle (no "format": "netpol-drift-bundle")'),
    (lambda b: b["runs"][1].update(cluster=5), "runs[1].cluster: expected str, got 5"),
    (lambda b: b["runs"][1]["results"][0].update(outcome="blocked"),
     "runs[1].results[0].outcome: expected one of connected, refused, timeout, unreachable, error, "
     'skipped, unsettled, got "blocked"'),
    (lambda b: b["snapshots"].update({k: {"pods": []} for k in b["snapshots"]}),
     "snapshots.sha256:"),
])
def test_bad_bundles_write_nothing(store: Store, mutate, message: str) -> None:
    store.save_run(make_run("2026-11-29T00:00:00Z"), now="2026-11-29T00:00:00Z", snapshot=SNAP)
    store.save_run(make_run("2026-11-29T00:05:00Z"), now="2026-11-29T00:05:00Z")
    bundle = json.loads(json.dumps(store.export_bundle(["1", "2"], now="2026-11-29T01:00:00Z")))
    for run in bundle["runs"]:
        run["cluster"] = "elsewhere"  # so that a good run would be imported, not skipped as a duplicate
    mutate(bundle)
    before = store.table_counts()
    with pytest.raises(InputError) as e:
        store.import_bundle(bundle, now="2026-11-29T02:00:00Z")
    assert str(e.value).startswith(message)
    assert store.table_counts() == before


def test_two_writers_on_one_database_both_succeed(db_url: str) -> None:
    """The service saving runs while a person runs `accept`: writers wait for each other, none fails."""
    import threading

    with Store.open(db_url, migrate=True) as a, Store.open(db_url) as b:
        first = a.save_run(make_run("2026-11-29T00:00:00Z"), now="2026-11-29T00:00:00Z", snapshot=SNAP)
        errors: list[str] = []

        def writer(store: Store, hour: int) -> None:
            try:
                for minute in range(25):
                    store.save_run(make_run(f"2026-11-29T{hour:02d}:{minute:02d}:00Z", results(flip=minute % 3)),
                                   now="2026-11-29T00:00:00Z")
                    store.accept(first, by=f"writer-{hour}", now="2026-11-29T00:00:00Z")
            except Exception as e:  # collected: an exception in a thread would not fail the test by itself
                errors.append(repr(e))

        threads = [threading.Thread(target=writer, args=(s, h)) for s, h in ((a, 1), (b, 2))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert a.table_counts()["runs"] == 51


def test_alembic_check_from_the_repository(db_url: str, monkeypatch) -> None:
    """`alembic check` with the repository's alembic.ini (what a developer runs after editing schema.py)."""
    from pathlib import Path

    from alembic import command
    from alembic.config import Config

    st.upgrade(db_url)
    monkeypatch.setenv("NETPOL_DRIFT_STORE_URL", db_url)
    cfg = Config(str(Path(__file__).resolve().parents[1] / "alembic.ini"))
    command.check(cfg)  # raises AutogenerateDiffsDetected when the models and migrations disagree
    command.downgrade(cfg, "base")
    assert st.current_revision(db_url) is None


def test_alembic_from_the_repository_reads_the_store_url_through_settings(tmp_path, monkeypatch) -> None:
    """`alembic -x config=FILE upgrade head` migrates the database the settings name, and the environment is
    read by the settings loader (its strictness included), not by env.py on its own."""
    import argparse
    from pathlib import Path

    from alembic import command
    from alembic.config import Config

    monkeypatch.chdir(tmp_path)  # alembic.ini used to name sqlite:///netpol-drift.db here
    path = tmp_path / "from-settings.db"
    settings = tmp_path / "netpol-drift.yaml"
    settings.write_text(f"store: {{url: 'sqlite:///{path}'}}\n")
    cfg = Config(str(Path(__file__).resolve().parents[1] / "alembic.ini"))
    cfg.cmd_opts = argparse.Namespace(x=[f"config={settings}"])
    command.upgrade(cfg, "head")
    assert st.current_revision(f"sqlite:///{path}") == st.head_revision()
    assert not (tmp_path / "netpol-drift.db").exists()

    monkeypatch.setenv("NETPOL_DRIFT_STORE_URI", "sqlite:///typo.db")
    with pytest.raises(InputError) as e:
        command.downgrade(cfg, "base")
    assert str(e.value).startswith("environment: NETPOL_DRIFT_STORE_URI: unknown setting")
    assert st.current_revision(f"sqlite:///{path}") == st.head_revision()


def test_current_revision_of_a_missing_sqlite_file_creates_nothing(tmp_path) -> None:
    path = tmp_path / "absent.db"
    with pytest.raises(StoreError) as e:
        st.current_revision(f"sqlite:///{path}")
    assert str(e.value) == f"no database at {path} (create it with `netpol-drift db upgrade`)"
    assert not path.exists()

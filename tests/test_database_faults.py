"""The database unavailable (issue 15 item 3) below the service: a real PostgreSQL server halted at a chosen
moment (`pg_ctl stop -m immediate`, as a crash or a lost node) and a real SQLite file locked by another writer.

What is asserted: a run is stored whole or not at all (every table's row count is unchanged after a save the
database broke off), the same run saved again once the database is back is stored once (a retry after a lost
COMMIT answer never doubles its drift events or alerts), and an alert that Slack accepted just before the
database went away is recorded when it is back, never sent twice. `serve` holding a run while PostgreSQL is
down and storing it when it returns is tests/test_database_faults_lab.py.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.orm import Session

from monitor.alert import AlertSender
from monitor.compare import Judgement, judge
from monitor.errors import StoreError, StoreUnavailableError
from monitor.models import Outcome, Run, Snapshot
from monitor.settings import Settings
from monitor.snapshot import snapshot_digest
from monitor.store import Store
from tests.postgres import PostgresServer, private_postgres
from tests.slack_standin import SlackStandin
from tests.test_alert import T0, bot, record, replies, results, settings, top_level
from tests.test_history import snap

pytestmark = pytest.mark.postgres


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    """A server of this test's own (the shared one must not be halted): durable commits, so what the server
    answered as committed survives the halt."""
    with private_postgres(durable=True) as server:
        yield server


def judged(store: Store, t, web_db: Outcome, deny: bool) -> tuple[Run, Snapshot, Judgement]:
    """A run judged against the store's baseline exactly as run.record_run does (re-probes agree)."""
    s = snap("shop", deny)
    run = Run("prod", t.isoformat(), t.isoformat(), "schedule", snapshot_digest(s), "sha256:suite", results(web_db))
    baseline = store.known_good("prod", "sha256:suite")
    old = store.snapshot(baseline.snapshot_digest) if baseline else None
    j = judge(run, baseline, old_snapshot=old, new_snapshot=s, open_events=store.open_events("prod"),
              rounds=[{r.key: r.outcome for r in run.results}], settings=Settings().drift, now=t.isoformat())
    return run, s, j


def save(store: Store, run: Run, s: Snapshot, j: Judgement) -> str:
    return store.save_run(run, now=run.started_at, snapshot=s, known_good=j.known_good, transitions=j.transitions)


def test_postgres_halted_inside_the_save_writes_nothing_and_the_retry_stores_the_run_once(postgres) -> None:
    store = Store.open(postgres.create_database(), migrate=True)
    try:
        record(store, T0, Outcome.TIMEOUT)  # the known-good run
        run, s, j = judged(store, T0 + timedelta(minutes=5), Outcome.CONNECTED, deny=False)
        assert len(j.transitions.opened) == 3  # drift, violation and gap of the one flow
        before = store.table_counts()

        halted = []

        def halt_before_commit(session: Session) -> None:
            # Every row of the run is flushed to the server by now; the COMMIT is what never arrives.
            if not halted:
                halted.append(True)
                postgres.halt()

        event.listen(Session, "before_commit", halt_before_commit)
        try:
            with pytest.raises(StoreUnavailableError) as e:
                save(store, run, s, j)
        finally:
            event.remove(Session, "before_commit", halt_before_commit)
        assert halted and str(e.value).startswith("cannot reach database postgresql://")
        assert "\n" not in str(e.value)

        postgres.resume()
        assert store.table_counts() == before  # nothing of the run was written

        first = save(store, run, s, j)
        after = store.table_counts()
        assert after["runs"] == before["runs"] + 1 and after["alert_outbox"] == before["alert_outbox"] + 3
        assert save(store, run, s, j) == first  # saved again (a lost COMMIT answer): the same run, nothing new
        assert store.table_counts() == after
        assert len(store.open_events("prod")) == 3
    finally:
        store.close()


def test_sqlite_locked_by_another_writer_fails_the_save_whole_and_it_stores_once_released(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    store = Store.open(f"sqlite:///{path}?timeout=0.5", migrate=True)
    try:
        record(store, T0, Outcome.TIMEOUT)
        run, s, j = judged(store, T0 + timedelta(minutes=5), Outcome.CONNECTED, deny=False)
        before = store.table_counts()
        other = sqlite3.connect(path, isolation_level=None)  # another process's writer (`accept`, a migration)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("UPDATE runs SET accepted_by = 'someone else'")
            with pytest.raises(StoreUnavailableError) as e:
                save(store, run, s, j)
            assert str(e.value) == f"save run failed on sqlite:///{path}?timeout=0.5: database is locked"
            assert store.table_counts() == before  # readers go on (WAL), and nothing of the run is there
        finally:
            other.execute("ROLLBACK")
            other.close()
        first = save(store, run, s, j)
        assert save(store, run, s, j) == first
        assert store.table_counts()["runs"] == before["runs"] + 1 and len(store.open_events("prod")) == 3
    finally:
        store.close()


def test_an_alert_slack_took_just_before_the_database_went_away_is_recorded_later_never_sent_twice(
        postgres) -> None:
    store = Store.open(postgres.create_database(), migrate=True)
    try:
        record(store, T0, Outcome.TIMEOUT)
        record(store, T0 + timedelta(minutes=5), Outcome.CONNECTED, deny=False)
        with SlackStandin() as slack:
            sender = AlertSender(store, bot(slack), settings())
            post = sender.target.post

            def post_then_database_gone(message, thread=None, key=None):
                posted = post(message, thread, key=key)
                if thread is None:  # Slack has the message; the store has not recorded it yet
                    postgres.halt()
                return posted

            sender.target.post = post_then_database_gone
            report = sender.deliver(T0 + timedelta(minutes=5))
            assert report.sent == 1 and report.store_error is not None and len(top_level(slack)) == 1
            sender.target.post = post
            requests = slack.requests
            for minutes in (6, 7):  # passes while the database is still away: nothing is sent
                assert sender.deliver(T0 + timedelta(minutes=minutes)).store_error is not None
            assert slack.requests == requests

            postgres.resume()
            report = sender.deliver(T0 + timedelta(minutes=8))
            assert report.store_error is None
            [message] = top_level(slack)  # still the one message
            assert len(replies(slack, message.ts)) == 1  # and its thread details, once
            assert store.pending_alerts() == [] and store.details_due() == []
            sender.deliver(T0 + timedelta(minutes=30))
            assert len(top_level(slack)) == 1 and len(replies(slack, message.ts)) == 1
    finally:
        store.close()


def test_a_database_that_cannot_be_reached_is_one_line_and_unavailable(tmp_path: Path) -> None:
    """What serve sees when PostgreSQL is not there: one line, the password never in it, and the kind of error
    the service holds runs for."""
    server = PostgresServer()  # never started: its socket directory exists, nothing listens
    try:
        with pytest.raises(StoreUnavailableError) as e:
            Store.open(server.url().replace("postgresql://", "postgresql://u:pw-in-url@"), migrate=True)
        assert isinstance(e.value, StoreError) and "\n" not in str(e.value) and "pw-in-url" not in str(e.value)
    finally:
        server.stop()


def test_serve_holds_the_runs_the_database_refused_and_stores_them_in_order_once_it_is_back(
        tmp_path: Path, postgres) -> None:
    """The service's side, below the lab test: runs held while PostgreSQL is halted (as `_execute` holds them),
    the periodic job failing quietly while it is down, then storing them oldest first, each once, judged with
    the re-probes they made (none here: their changes stay unconfirmed, no event, no alert)."""
    import yaml

    from monitor.cluster import ClusterAdapter
    from monitor.metrics import Metrics
    from monitor.service import Service, _Held
    from monitor.settings import load_settings
    from tests.test_service import sample, write_config

    config = write_config(tmp_path)
    data = yaml.safe_load(config.read_text())
    config.write_text(yaml.safe_dump(data | {"store": {"url": postgres.create_database()}}))
    settings = load_settings(config, env={})
    metrics = Metrics()
    svc = Service(settings, config_path=str(config), metrics=metrics,
                  connect=lambda: ClusterAdapter.connect(settings.cluster))
    svc._leading = True  # as the Lease holder (the scheduler is not started: the test drives the jobs)
    try:
        store = svc.open_store()
        record(store, T0, Outcome.TIMEOUT)
        postgres.halt()
        for n in (1, 2):
            t = T0 + timedelta(minutes=5 * n)
            run, s, _ = judged_offline(t)
            svc._hold(_Held(run, s, settings, "suite", t, ()), f"r{n}", StoreUnavailableError("cannot reach database"))
        assert sample(metrics.render(), "netpol_drift_runs_held") == 2.0
        errors = sample(metrics.render(), "netpol_drift_store_errors_total")
        svc._store_held_job()  # still down: nothing lost, one more error counted
        assert sample(metrics.render(), "netpol_drift_runs_held") == 2.0
        assert sample(metrics.render(), "netpol_drift_store_errors_total") == errors + 1

        postgres.resume()
        svc._store_held_job()
        assert sample(metrics.render(), "netpol_drift_runs_held") == 0.0
        stored = sorted(store.history("prod"), key=lambda r: r.started_at)
        assert [r.started_at[:16] for r in stored] == ["2026-11-30T08:00", "2026-11-30T08:05", "2026-11-30T08:10"]
        assert not any(r.known_good for r in stored[1:]) and store.open_events("prod") == []
        svc._store_held_job()  # nothing held: nothing stored twice
        assert len(store.history("prod")) == 3
    finally:
        if svc._store is not None:
            svc._store.close()


def judged_offline(t) -> tuple[Run, Snapshot, None]:
    s = snap("shop", False)
    return Run("prod", t.isoformat(), t.isoformat(), "change", snapshot_digest(s), "sha256:suite",
               results(Outcome.CONNECTED)), s, None


def test_a_sqlite_timeout_that_is_not_a_number_is_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}?timeout=soon"
    with pytest.raises(StoreError) as e:
        Store.open(url, migrate=True)
    assert str(e.value) == f"database URL {url}: timeout must be a number of seconds"
    assert not (tmp_path / "h.db").exists()  # refused before anything was created

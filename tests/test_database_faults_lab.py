"""The database unavailable while `netpol-drift serve` runs in the lab (issue 15 item 3): real probe pods, a real
policy edit, a real PostgreSQL server of the test's own halted mid-run (`pg_ctl stop -m immediate`), a real
SQLite file locked by another writer, Slack through the stand-in.

Each test asserts: the run probed while the database was away is held (`netpol_drift_runs_held`, and
`netpol_drift_store_errors_total` moves), serve keeps running and says so on /readyz, the run is stored whole
once the database is back, the drift it saw is alerted exactly once (by the next run that confirms it), and no
probe pod is left behind (the `start` fixture).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lab.fixtures import Lab
from tests.postgres import PostgresServer, private_postgres
from tests.test_alert_lab import quiet, slack, start, top_level, wait_for  # noqa: F401 (fixtures)
from tests.test_live_history_lab import suite_of
from tests.test_live_lab import deploy_three_tier
from tests.test_service_lab import Serve, break_api_to_db

pytestmark = [pytest.mark.lab, pytest.mark.postgres]


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    with private_postgres(durable=True) as server:
        yield server


def touch_namespace(lab: Lab, ns: str, value: str) -> None:
    """A label no policy reads: it triggers a run and changes nothing that run judges."""
    lab.api.merge_patch(f"/api/v1/namespaces/{ns}", {"metadata": {"labels": {"netpol-drift-test-touch": value}}})


def started_runs(s: Serve) -> int:
    return s.log.count(" starting (trigger ")


def held_then_stored(lab: Lab, ns: str, s: Serve, standin, down, up, unready: bool) -> None:
    """The common middle: a policy edit, the database taken away once its run has started, the run held, the
    database back, the run stored, the next run alerting once."""
    assert s.wait_runs(1)[0].known_good
    runs_before = started_runs(s)
    break_api_to_db(lab, ns)
    wait_for(lambda: started_runs(s) > runs_before, "the change-triggered run", s)
    down()  # mid-run: its probe pods are being created or probed right now
    # (a second change event during the run may add a second held run: both must be stored, in order)
    wait_for(lambda: s.metric("netpol_drift_runs_held") >= 1.0, "the run held", s, timeout=120)
    assert s.metric("netpol_drift_store_errors_total") >= 1.0
    assert s.get("/healthz")[0] == 200
    if unready:  # PostgreSQL gone; a locked SQLite file still reads (WAL), so serve stays ready then
        status, body = s.get("/readyz")
        assert status == 503 and json.loads(body)["checks"]["store"]["ok"] is False
    assert "not stored yet (held until the database is back)" in s.log
    assert top_level(standin) == []

    up()
    wait_for(lambda: s.metric("netpol_drift_runs_held") == 0.0, "the held run stored", s, timeout=60)
    runs = s.runs()
    assert len(runs) >= 2 and runs[1].trigger == "change" and not any(r.known_good for r in runs[1:])
    assert wait_for(lambda: s.get("/readyz")[0] == 200, "ready again", s)

    touch_namespace(lab, ns, "1")  # the next run re-probes the change (if the held one could not), alerts
    s.wait_runs(len(runs) + 1)
    [msg] = wait_for(lambda: top_level(standin), "the drift alert", s)
    assert f"{ns}/api -> {ns}/db 5432/TCP  allowed -> blocked" in msg.text
    assert quiet(standin, 8) <= 1 and len(top_level(standin)) == 1  # exactly once (its thread details aside)
    assert s.proc.poll() is None


def test_postgres_halted_mid_run_the_run_is_held_stored_when_back_and_alerted_once(
        lab: Lab, lab_namespace: str, start, slack, postgres: PostgresServer) -> None:  # noqa: F811
    ns = lab_namespace
    deploy_three_tier(lab, ns)
    s = start(suite_of(ns, "api-to-db"), store={"url": postgres.create_database()})
    held_then_stored(lab, ns, s, slack, postgres.halt, postgres.resume, unready=True)


def test_sqlite_locked_by_another_writer_mid_run_the_run_is_held_and_stored_when_released(
        lab: Lab, lab_namespace: str, start, slack, tmp_path: Path) -> None:  # noqa: F811
    ns = lab_namespace
    deploy_three_tier(lab, ns)
    path = tmp_path / "locked.db"
    s = start(suite_of(ns, "api-to-db"), store={"url": f"sqlite:///{path}?timeout=2"})
    other: list[sqlite3.Connection] = []

    def lock() -> None:  # another writer (a migration, `accept` from a shell) holds the write lock
        conn = sqlite3.connect(path, isolation_level=None, timeout=30)
        conn.execute("BEGIN IMMEDIATE")
        other.append(conn)

    def release() -> None:
        time.sleep(1)
        other[0].execute("ROLLBACK")
        other[0].close()

    held_then_stored(lab, ns, s, slack, lock, release, unready=False)

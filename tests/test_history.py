"""The history commands end to end through monitor.cli.main: output shapes, exit codes, exact errors."""

from __future__ import annotations

import json

import pytest

from monitor import store as st
from monitor.cli import main
from monitor.compare import judge
from monitor.models import (
    FlowResult,
    LabelSelector,
    Namespace,
    NetworkPolicy,
    Outcome,
    Pod,
    Run,
    Snapshot,
    Verdict,
    labels_of,
)
from monitor.settings import DriftSettings
from monitor.snapshot import snapshot_digest
from monitor.store import Store

A, D = Verdict.ALLOW, Verdict.DENY


def snap(ns: str, deny: bool) -> Snapshot:
    return Snapshot.build(
        namespaces=[Namespace(ns)],
        pods=[Pod(ns, "web-1", labels_of({"app": "web"}), "10.0.0.1", workload="Deployment/web"),
              Pod(ns, "db-0", labels_of({"app": "db"}), "10.0.0.2", workload="StatefulSet/db")],
        policies=[NetworkPolicy(ns, "deny-db", LabelSelector(labels_of({"app": "db"})))] if deny else [])


def flows(ns: str, db_open: bool) -> tuple[FlowResult, ...]:
    c, t = Outcome.CONNECTED, Outcome.TIMEOUT
    return (FlowResult("web-db", f"{ns}/web", f"{ns}/db", 5432, "TCP", D, D if not db_open else A,
                       c if db_open else t, A if db_open else D, 1.2 if db_open else None, 1),
            FlowResult("db-web", f"{ns}/db", f"{ns}/web", 80, "TCP", A, A, c, A, 0.8, 1))


def save(store: Store, cluster: str, ns: str, t: str, deny: bool, **kw) -> str:
    s = snap(ns, deny)
    run = Run(cluster, t, t, "schedule", snapshot_digest(s), "sha256:suite", flows(ns, not deny))
    return store.save_run(run, now=t, snapshot=s, **kw)


@pytest.fixture
def db(db_url: str) -> str:
    """prod: run 1 known-good (db denied), run 2 the deny policy removed (a violation + drift event);
    staging: run 3 like prod's run 1, in namespace shop-stg."""
    with Store.open(db_url, migrate=True) as store:
        save(store, "prod", "shop", "2026-11-28T10:00:00Z", deny=True, known_good=True)
        s2 = snap("shop", False)
        run2 = Run("prod", "2026-11-28T10:05:00Z", "2026-11-28T10:05:00Z", "watch", snapshot_digest(s2),
                   "sha256:suite", flows("shop", True))
        j = judge(run2, store.known_good("prod", "sha256:suite"), old_snapshot=snap("shop", True),
                  new_snapshot=s2, open_events=[], rounds=[{run2.results[0].key: Outcome.CONNECTED}],
                  settings=DriftSettings(), now=run2.started_at)
        store.save_run(run2, now=run2.started_at, snapshot=s2, transitions=j.transitions)
        save(store, "staging", "shop-stg", "2026-11-28T09:00:00Z", deny=True)
    return db_url


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_history_table_and_json(db: str, capsys) -> None:
    code, out, _ = cli(capsys, "history", "--db", db)
    lines = out.splitlines()
    assert code == 0 and lines[0].split() == ["RUN", "CLUSTER", "STARTED", "TRIGGER", "STATUS", "FLOWS",
                                              "VIOLATIONS", "GAPS", "SKIPPED", "KNOWN-GOOD"]
    assert [ln.split()[0] for ln in lines[1:]] == ["2", "1", "3"]
    assert lines[2].split()[-1] == "yes"
    code, out, _ = cli(capsys, "history", "--db", db, "--cluster", "prod", "--limit", "1", "--format", "json")
    runs = json.loads(out)["runs"]
    assert code == 0 and len(runs) == 1
    assert {k: runs[0][k] for k in ("id", "cluster", "trigger", "violations", "known_good")} == {
        "id": "2", "cluster": "prod", "trigger": "watch", "violations": 1, "known_good": False}
    code, out, _ = cli(capsys, "history", "--db", db, "--cluster", "nowhere")
    assert (code, out) == (0, "no runs stored for cluster nowhere\n")


def test_show_lists_flows_and_events(db: str, capsys) -> None:
    code, out, _ = cli(capsys, "show", "2", "--db", db)
    assert code == 0
    assert out.startswith("run 2 of prod: 2026-11-28T10:05:00Z .. 2026-11-28T10:05:00Z, watch, ok\n")
    assert "web-db  shop/web  shop/db" in out and "violation" in out
    assert "opened drift web-db|shop/web|shop/db|5432/TCP: timeout -> connected since known-good cause: " \
           "config (each): NetworkPolicy shop/deny-db removed" in out
    code, out, _ = cli(capsys, "show", "2", "--db", db, "--format", "json")
    data = json.loads(out)
    assert data["run"]["results"][0]["outcome"] == "connected"
    assert sorted(e["kind"] for e in data["events"]) == ["drift", "violation"]  # intent allows it: no gap


def test_accept_moves_the_baseline(db: str, capsys) -> None:
    code, out, _ = cli(capsys, "accept", "2", "--by", "carol", "--db", db)
    assert code == 0
    assert out == ("run 2 of prod (2026-11-28T10:05:00Z) is now the known-good baseline, accepted by carol\n")
    with Store.open(db) as store:
        assert store.known_good("prod", "sha256:suite").id == "2"


def test_diff_two_runs_with_causes(db: str, capsys) -> None:
    code, out, _ = cli(capsys, "diff", "1", "2", "--db", db, "--format", "json")
    data = json.loads(out)
    assert code == 1
    assert data["snapshot_changes"] == ["NetworkPolicy shop/deny-db removed"]
    (flow,) = data["flows"]
    assert flow["key"] == "web-db|shop/web|shop/db|5432/TCP"
    assert (flow["a"]["outcome"], flow["b"]["outcome"]) == ("timeout", "connected")
    assert flow["cause"]["kind"] == "config" and flow["cause"]["changes"] == ["NetworkPolicy shop/deny-db removed"]
    code, out, _ = cli(capsys, "diff", "1", "1", "--db", db)
    assert code == 0 and out.endswith("no flow changed\n")


def test_compare_clusters_with_namespace_map(db: str, capsys) -> None:
    code, out, _ = cli(capsys, "compare", "--cluster", "staging", "--cluster", "prod", "--db", db,
                       "--map-namespace", "shop-stg=shop", "--format", "json")
    data = json.loads(out)
    assert code == 1 and (data["a"]["run"], data["b"]["run"]) == ("3", "2")
    assert data["same"] == 1
    assert [(f["key"], f["a"]["verdict"], f["b"]["verdict"]) for f in data["flows"]] == [
        ("web-db|shop/web|shop/db|5432/TCP", "deny", "allow")]
    # At a time before prod's drift, the two agree.
    code, out, _ = cli(capsys, "compare", "--cluster", "staging", "--cluster", "prod", "--db", db,
                       "--map-namespace", "shop-stg=shop", "--at", "2026-11-28T10:01:00Z")
    assert code == 0 and out.splitlines()[-1] == "2 flows agree, 0 differ, 0 only in staging, 0 only in prod"
    # Without the map nothing aligns.
    code, out, _ = cli(capsys, "compare", "--cluster", "staging", "--cluster", "prod", "--db", db)
    assert out.splitlines()[-1] == "0 flows agree, 0 differ, 2 only in staging, 2 only in prod"


def test_export_import_between_databases(db: str, capsys, tmp_path) -> None:
    code, out, _ = cli(capsys, "export", "--cluster", "prod", "--db", db)
    assert code == 0
    bundle = tmp_path / "bundle.json"
    bundle.write_text(out)
    other = f"sqlite:///{tmp_path / 'other.db'}"
    assert cli(capsys, "db", "upgrade", "--db", other)[0] == 0
    assert cli(capsys, "import", str(bundle), "--db", other)[1] == "imported 2 runs (0 already present)\n"
    assert cli(capsys, "import", str(bundle), "--db", other)[1] == "imported 0 runs (2 already present)\n"
    code, out, _ = cli(capsys, "export", "1", "--db", db)
    assert json.loads(out)["runs"][0]["known_good"] is True


# ------------------------------------------------------------------------------------------ bad input
def test_unknown_run_is_one_line_exit_2(db: str, capsys) -> None:
    for argv in (["show", "42"], ["accept", "42"], ["diff", "1", "42"], ["export", "42"]):
        code, out, err = cli(capsys, *argv, "--db", db)
        assert (code, out, err) == (2, "", "netpol-drift: error: unknown run 42 (see netpol-drift history)\n")


def test_newer_bundle_is_refused_and_nothing_is_written(db: str, capsys, tmp_path) -> None:
    _, out, _ = cli(capsys, "export", "--cluster", "prod", "--db", db)
    data = json.loads(out)
    data["schema"] = 7
    for run in data["runs"]:
        run["cluster"] = "new-cluster"
    path = tmp_path / "future.json"
    path.write_text(json.dumps(data))
    code, out, err = cli(capsys, "import", str(path), "--db", db)
    assert (code, out) == (2, "")
    assert err == (f"netpol-drift: error: {path}: bundle schema 7 is newer than this netpol-drift reads (1); "
                   "upgrade netpol-drift to import it\n")
    # A bundle that is broken half-way through: validated first, so not even its first run lands.
    data["schema"] = 1
    data["runs"][1]["results"][0]["port"] = "eighty"
    path.write_text(json.dumps(data))
    code, _, err = cli(capsys, "import", str(path), "--db", db)
    assert code == 2 and err == (f"netpol-drift: error: {path}: runs[1].results[0].port: expected int, "
                                 'got "eighty"\n')
    with Store.open(db) as store:
        assert "new-cluster" not in store.clusters()
    path.write_text("{not json")
    code, _, err = cli(capsys, "import", str(path), "--db", db)
    assert code == 2 and err.startswith(f"netpol-drift: error: {path}: not valid JSON: ")


def test_unreachable_database_is_one_line_without_password(capsys) -> None:
    url = "postgresql://monitor:hunter2@127.0.0.1:1/history"
    for argv in (["history"], ["db", "upgrade"], ["show", "1"]):
        code, out, err = cli(capsys, *argv, "--db", url)
        assert code == 2 and out == ""
        assert err.startswith("netpol-drift: error: cannot reach database postgresql://monitor@127.0.0.1:1/history: ")
        assert "hunter2" not in err and err.count("\n") == 1


def test_bad_arguments(db: str, capsys) -> None:
    cases = [
        (["compare", "--cluster", "prod"], "--cluster: give exactly two clusters, got 1"),
        (["compare", "--cluster", "a", "--cluster", "prod"], "no run of cluster 'a' (see netpol-drift history)"),
        (["compare", "--cluster", "staging", "--cluster", "prod", "--at", "yesterday"],
         "--at: not an ISO 8601 time: 'yesterday'"),
        (["compare", "--cluster", "staging", "--cluster", "prod", "--map-namespace", "x"],
         "--map-namespace: expected A_NS=B_NS, got 'x'"),
        (["compare", "--cluster", "staging", "--cluster", "prod", "--map-namespace", "shop-stg=shop",
          "--map-namespace", "shop-stg=pay"],
         "--map-namespace: expected each namespace in one pair, got 'shop-stg=shop' and 'shop-stg=pay'"),
        (["export"], "export: give a run id or --cluster NAME (one of them)"),
        (["export", "--cluster", "nope"], "no runs of cluster 'nope' (see netpol-drift history)"),
        (["history", "--limit", "0"], "--limit: must be at least 1, got 0"),
        (["db", "downgrade", "nonsense"], "cannot downgrade to 'nonsense': "),
    ]
    for argv, message in cases:
        code, _, err = cli(capsys, *argv, "--db", db)
        assert code == 2 and err.startswith(f"netpol-drift: error: {message}"), (argv, err)


def test_db_commands_and_url_from_config(tmp_path, capsys) -> None:
    path = tmp_path / "sub" / "h.db"
    config = tmp_path / "netpol-drift.yaml"
    config.write_text(f"store:\n  url: sqlite:///{path}\n")
    code, out, _ = cli(capsys, "--config", str(config), "db", "upgrade")
    assert (code, out) == (0, f"sqlite:///{path}: schema at revision 0006\n")
    assert cli(capsys, "--config", str(config), "db", "current")[1] == f"sqlite:///{path}: revision 0006 (current)\n"
    code, out, _ = cli(capsys, "--config", str(config), "db", "downgrade", "base")
    assert out == f"sqlite:///{path}: schema at revision base (empty)\n"
    assert cli(capsys, "--config", str(config), "db", "current")[1] == (
        f"sqlite:///{path}: revision none (needs upgrade to {st.head_revision()})\n")
    code, _, err = cli(capsys, "--config", str(config), "history")
    assert code == 2 and "has no netpol-drift schema" in err


def test_db_prune(db: str, capsys) -> None:
    code, out, _ = cli(capsys, "db", "prune", "--days", "3650", "--db", db)
    assert (code, out) == (0, "pruned 0 runs older than 3650 days (0 snapshots, 0 result sets, 0 results, "
                              "0 events, 0 sent alerts)\n")
    code, _, err = cli(capsys, "db", "prune", "--days", "0", "--db", db)
    assert (code, err) == (2, "netpol-drift: error: --days: must be at least 1, got 0\n")


def test_db_current_on_a_missing_file_says_so_and_creates_nothing(tmp_path, capsys) -> None:
    path = tmp_path / "absent.db"
    code, out, err = cli(capsys, "db", "current", "--db", f"sqlite:///{path}")
    assert (code, out) == (2, "")
    assert err == f"netpol-drift: error: no database at {path} (create it with `netpol-drift db upgrade`)\n"
    assert not path.exists()

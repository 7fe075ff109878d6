"""What the dashboard pages show, on both databases (SQLite and a real PostgreSQL): the history chart's
buckets aggregated in SQL, the run grid, the cache of built result sets. The browser side is test_dashboard.py."""

from __future__ import annotations

import pytest

from monitor.store import Store
from monitor.web import views
from tests.dashboard_seed import CASE_WITH_MARKUP, seed


def test_history_buckets_pick_the_worst_run_and_the_longest_duration(db_url):
    with Store.open(db_url, migrate=True) as store:
        ids = seed(store)
        day = views.history_view(store, "prod", days=1)
        assert [(b["run"], b["runs"], b["ok"], b["violated"], b["skipped"], b["drifted"], b["duration_s"])
                for b in day["series"]] == [(ids["good"], 1, 2, 0, 1, 0, 4.0), (ids["drift"], 1, 1, 1, 1, 1, 7.0)]
        month = views.history_view(store, "prod", days=30)
        assert [(b["run"], b["runs"], b["violated"], b["duration_s"]) for b in month["series"]] == \
            [(ids["drift"], 2, 1, 7.0)]
        assert month["runs"] == 2 and month["max_flows"] == 3 and month["longest_s"] == 7.0
        assert [(e["kind"], e["opened_run"]) for e in month["events"]] == [("drift", ids["drift"]),
                                                                           ("violation", ids["drift"])] or \
            sorted((e["kind"], e["opened_run"]) for e in month["events"]) == [("drift", ids["drift"]),
                                                                              ("violation", ids["drift"])]
        assert views.history_view(store, "nope", days=30) is None


def test_run_view_grid_and_cache(tmp_path):
    with Store.open(f"sqlite:///{tmp_path}/v.db", migrate=True) as store:
        ids = seed(store)
        cache: dict = {}
        first = views.run_view(store, ids["drift"], cache=cache)
        assert len(cache) == 1
        g = {x["port"]: x for x in first["grids"]}
        db = g["5432/TCP"]
        cell = db["cells"][db["sources"].index("shop/web")][db["destinations"].index("shop/db")]
        assert cell[:3] == ["violation", True, "✓"]
        assert cell[3].startswith(f"shop/web -> shop/db 5432/TCP\n[{CASE_WITH_MARKUP}] expected deny, "
                                  "policies say allow, observed allow (connected) - DRIFT\n")
        # A cache hit gives the same page; a filter applies to the cached results.
        assert views.run_view(store, ids["drift"], cache=cache) == first
        only = views.run_view(store, ids["drift"], state="drift", cache=cache)
        assert [f["key"].split("|")[0] for f in only["flows"]] == [CASE_WITH_MARKUP] and only["filter"]["matching"] == 1
        # The known-good run has other results (another result set): built on its own.
        views.run_view(store, ids["good"], cache=cache)
        assert len(cache) == 2


def test_serve_dashboard_waits_for_the_database_the_leader_creates(tmp_path):
    """`serve` opens its own Store on the first page view: before the first run has created the database the
    pages answer 503 with the store's one-line reason, afterwards they work without a restart."""
    import json
    import urllib.error
    import urllib.request

    from monitor.web import WebServer, create_app
    from monitor.web.dashboard import dashboard_routes
    from tests.dashboard_seed import free_port

    url = f"sqlite:///{tmp_path}/later.db"

    class Health:
        def alive(self) -> bool:
            return True

        def readiness(self) -> list:
            return []

    web = WebServer(create_app(Health(), None, dashboard_routes(lambda: Store.open(url))),
                    f"127.0.0.1:{free_port()}")
    web.start()
    try:
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{web.port}/api/clusters")
        with e.value:
            assert e.value.code == 503
            assert json.loads(e.value.read()) == {
                "error": f"no database at {tmp_path}/later.db (create it with `netpol-drift db upgrade`)"}
        with Store.open(url, migrate=True) as store:
            seed(store)
        with urllib.request.urlopen(f"http://127.0.0.1:{web.port}/api/clusters") as r:
            assert [c["name"] for c in json.loads(r.read())["clusters"]] == ["prod", "staging"]
    finally:
        web.stop()


def _hourly_oracle(store: Store, cluster: str, hours_per_bucket: int, since: str) -> list[tuple]:
    """The chart's buckets computed from the runs themselves, in Python: what run_hours must add up to."""
    from datetime import UTC, datetime

    def t(iso: str) -> float:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).replace(tzinfo=UTC).timestamp()

    origin, size = t(since), hours_per_bucket * 3600
    buckets: dict[int, list] = {}
    for r in store.history(cluster, limit=10_000):
        if t(r.started_at) >= origin:
            buckets.setdefault(int((t(r.started_at) - origin) // size), []).append(r)
    out = []
    for b, runs in sorted(buckets.items()):
        worst = max(runs, key=lambda r: (r.violations + r.skipped, int(r.id)))
        longest = max(t(r.finished_at) - t(r.started_at) for r in runs)
        out.append((b, len(runs), worst.id, worst.violations, max(r.gaps for r in runs), worst.skipped,
                    worst.results - worst.violations - worst.skipped, longest))
    return out


def test_hourly_aggregates_equal_the_runs_through_save_prune_and_upgrade(db_url):
    """run_hours (kept as runs are written, recounted by prune, filled by migration 0006) gives the chart the
    same buckets as the runs it sums: the worst run, the longest duration, the number of runs."""
    from monitor.models import Run
    from monitor.snapshot import snapshot_digest
    from monitor.store import downgrade, upgrade
    from tests.dashboard_seed import flows, snap

    s = snap("shop", deny=True)
    with Store.open(db_url, migrate=True) as store:
        for i in range(40):  # every 23 minutes from 00:07: several runs an hour, hours across two days
            minute = 7 + 23 * i
            start = f"2026-11-2{8 + minute // 1440}T{minute % 1440 // 60:02d}:{minute % 60:02d}:00Z"
            end = start[:-3] + f"{(i % 7) * 7 + 1:02d}Z"
            run = Run("prod", start, end, "schedule", snapshot_digest(s), "sha256:suite", flows("shop", i % 5 == 0))
            rid = store.save_run(run, now=start, snapshot=s)
            if i == 2:
                store.accept(rid, by="alice", now=start)
        since = "2026-11-28T00:00:00Z"
        for hours in (1, 2, 24):
            assert store.run_buckets("prod", since, hours * 3600) == _hourly_oracle(store, "prod", hours, since)
        # Prune to a cutoff inside an hour: the early hours keep only the accepted run, the cutoff's hour its
        # newer runs.
        store.prune("2026-11-29T06:30:00Z", retention_days=1)
        after = _hourly_oracle(store, "prod", 1, since)
        assert after[0][1] == 1 and store.run_buckets("prod", since, 3600) == after
        assert sum(b[1] for b in after) < 40
    # Migration 0006 fills the table from the runs already stored.
    assert downgrade(db_url, "0005") == "0005"
    assert upgrade(db_url) == "0006"
    with Store.open(db_url) as store:
        assert store.run_buckets("prod", since, 3600) == after


def test_stored_grid_comes_back_as_built():
    """The store keeps a grid in columns (state and mark characters, NUL-joined hover texts); what it reads
    back equals what monitor.grid built, empty cells and several ports included, and a hover text with a NUL
    of its own (a case may be named anything) is kept as JSON instead."""
    from dataclasses import replace

    from monitor.grid import grid
    from monitor.store.encoding import _decode_grid, _encode_grid
    from tests.dashboard_seed import flows

    results = [*flows("shop", True), *flows("shop", False)]
    results.append(replace(results[1], case="web-cache", source="shop/web", destination="shop/cache"))
    built = grid(results)
    assert any(c is None for g in built for row in g["cells"] for c in row)
    blob = _encode_grid(built)
    assert blob[:1] == b"C" and _decode_grid(blob) == built
    odd = grid([replace(results[0], case="a\0b"), *results[1:]])
    blob = _encode_grid(odd)
    assert blob[:1] == b"J" and _decode_grid(blob) == odd


def test_drift_is_marked_on_the_flow_line_of_a_shared_grid():
    """A cell with two flows (two cases between the same pair on one port): the run's drifted one gets
    " - DRIFT" after its own line; the stored grid, shared by every run of the set, stays as it was."""
    import copy
    from dataclasses import replace

    from monitor.grid import grid, with_drift
    from tests.dashboard_seed import flows

    first = flows("shop", True)[1]  # shop/db -> shop/web 80/TCP
    second = replace(first, case="db-web-again", explanation="second flow")
    shared = grid([first, second])
    before = copy.deepcopy(shared)
    marked = with_drift(shared, {second.key, "not|a|flow|of/this-run", "bad-key"})
    cell = marked[0]["cells"][0][0]
    assert cell[1] is True and cell[3].split("\n")[1:] == [
        "[db-web] expected allow, policies say allow, observed allow (connected)",
        "policy shop/allow-web allows every peer",
        "[db-web-again] expected allow, policies say allow, observed allow (connected) - DRIFT",
        "second flow"]
    assert shared == before and with_drift(shared, set()) == shared

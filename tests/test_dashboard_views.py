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

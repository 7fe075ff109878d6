"""Security review checks that need no cluster (issue 15 item 9): the HTTP port of `serve` serves nothing
writable. Every route of the app `serve` builds (health, readiness, metrics, every dashboard page, its JSON API
and static files) is asked with POST, PUT, PATCH and DELETE over a real socket: each must refuse (405), while a
GET of the same path is served, so the list of paths cannot be empty or wrong. Secrets never reaching logs,
store, dashboard or bundles: tests/test_secrets.py.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request

import pytest
from starlette.routing import Mount, Route

from monitor.metrics import Metrics
from monitor.store import Store
from monitor.web import WebServer, create_app
from monitor.web.dashboard import Access, dashboard_routes
from tests.dashboard_seed import free_port, seed
from tests.test_service import FixedHealth

WRITES = ("POST", "PUT", "PATCH", "DELETE")


def status(url: str, method: str) -> int:
    req = urllib.request.Request(url, method=method, data=b"{}" if method != "GET" else None)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as e:
        e.close()
        return e.code


def concrete(path: str, ids: dict[str, str]) -> str:
    """A route's path with its parameters filled with things that exist (a run, a cluster)."""
    path = re.sub(r"\{run[^}]*\}", ids["drift"], path)
    return re.sub(r"\{cluster[^}]*\}", "prod", path)


QUERIES = {"/compare/runs": "?a={good}&b={drift}", "/snapshots/diff": "?a={good}&b={drift}",
           "/compare/clusters": "?a=prod&b=staging"}


def test_every_route_of_serve_refuses_writes(tmp_path) -> None:
    with Store.open(f"sqlite:///{tmp_path / 'h.db'}", migrate=True) as store:
        ids = seed(store)
        app = create_app(FixedHealth(), Metrics().asgi_app(), dashboard_routes(lambda: store, Access()))
        paths = []
        for route in app.routes:
            if isinstance(route, Mount):
                paths.append(route.path + "/dashboard.js")
            else:
                assert isinstance(route, Route), route
                path = concrete(route.path, ids)
                paths.append(path + QUERIES.get(path.removeprefix("/api"), "").format(**ids))
        assert {"/healthz", "/readyz", "/metrics", "/api", "/static/dashboard.js"} <= set(paths)
        assert len(paths) >= 16  # the six pages, their six API twins, /api, health, readiness, metrics, static
        web = WebServer(app, f"127.0.0.1:{free_port()}")
        web.start()
        try:
            base = f"http://127.0.0.1:{web.port}"
            for path in paths:
                assert status(base + path, "GET") == 200, path
                refused = {m: status(base + path, m) for m in WRITES}
                assert refused == dict.fromkeys(WRITES, 405), (path, refused)
        finally:
            web.stop()


@pytest.mark.parametrize("path", ["/metrics", "/healthz", "/readyz"])
def test_the_operational_endpoints_answer_head_and_get_only(tmp_path, path) -> None:
    web = WebServer(create_app(FixedHealth(), Metrics().asgi_app()), f"127.0.0.1:{free_port()}")
    web.start()
    try:
        base = f"http://127.0.0.1:{web.port}"
        assert status(base + path, "HEAD") == 200 and status(base + path, "OPTIONS") == 405
    finally:
        web.stop()

"""The read-only dashboard: HTML pages (Jinja2, autoescaped) and their JSON twins under /api/, on the app.

`dashboard_routes(open_store, access)` returns the routes that `create_app` mounts next to /metrics; `serve`
and `netpol-drift dashboard` both use it. Every route is GET (Starlette answers other methods 405); every
response carries a strict Content-Security-Policy (scripts and styles only from /static/, no inline code),
so that a label value the cluster chose can never run in a reader's browser; Jinja2 escapes everything,
and no template marks cluster data safe. Access: an optional bearer token (NETPOL_DRIFT_WEB_TOKEN) and/or a
header that a trusted authenticating proxy sets (web.trusted_proxy_header); /healthz, /readyz and /metrics
stay open for the kubelet and Prometheus.
This module must not import the store package (an opener comes in), write anything, or decide drift.
"""

from __future__ import annotations

import hmac
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from html import escape as _esc
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from monitor.errors import InputError, NetpolDriftError
from monitor.grid import STATES
from monitor.web import views

HERE = Path(__file__).parent
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}
MAX_DAYS = 3660
MAX_FLOWS = 100_000
RUN_CACHE_ENTRIES = 8  # grids of result sets (a 40,000-cell one is ~20 MB): the recent runs people open


@dataclass(frozen=True)
class Access:
    """Who may read the dashboard: nobody checked (both None), a bearer token, a trusted proxy's header."""

    token: str | None = None
    proxy_header: str | None = None

    def allows(self, request: Request) -> bool:
        if self.token is None and self.proxy_header is None:
            return True
        if self.proxy_header and request.headers.get(self.proxy_header):
            return True
        if self.token:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token.encode())
        return False


def dashboard_access(settings: Any) -> Access:
    return Access(token=settings.secrets.web_token, proxy_header=settings.web.trusted_proxy_header)


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.globals["grid_rows"] = grid_rows
    env.globals["STATE_TEXT"] = views.STATE_TEXT
    env.globals["FLOW_FILTERS"] = views.FLOW_FILTERS
    return env


def grid_rows(g: dict) -> Markup:
    """The <tr> rows of one grid. Written here rather than as a template loop: a 200 x 200 grid is 40,000
    cells, which Jinja2 renders in seconds and this in tens of milliseconds. Every cluster-sourced string
    (names, hover texts) is escaped with html.escape (quotes too: they land in attributes); state and mark
    are looked up in monitor.grid's fixed vocabularies (the grid comes back from the database)."""
    out = []
    for source, row in zip(g["sources"], g["cells"], strict=True):
        titles = _escape_all([c[3] for c in row if c])
        cells, k = [], 0
        for c in row:
            if c:
                state = _STATE_CLASS.get(c[0], "unobserved")
                cells.append(f'<td class="cell {state}{" drift" if c[1] is True else ""}"'
                             f' title="{titles[k]}">{_CELL_MARK.get(c[2], "?")}</td>')
                k += 1
            else:
                cells.append('<td class="cell none"></td>')
        out.append(f'<tr><th scope="row" class="src">{_esc(source)}</th>{"".join(cells)}</tr>')
    return Markup("\n".join(out))


_STATE_CLASS = {s: s for s in STATES}
_CELL_MARK = {m: m for m in ("✓", "✗", "?")}


def _escape_all(texts: list[str]) -> list[str]:
    """html.escape of each text, as one call over their join: a 200-cell row is one escape, not 200."""
    joined = "\0".join(texts)
    if joined.count("\0") != max(0, len(texts) - 1):  # a text with a NUL of its own: one by one
        return [_esc(t) for t in texts]
    return _esc(joined).split("\0")


class LazyStore:
    """Opens the store on first use, so that `serve` starts before its first run has created the database."""

    def __init__(self, opener: Callable[[], Any]) -> None:
        self._opener = opener
        self._store: Any = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        with self._lock:
            if self._store is None:
                self._store = self._opener()
            return self._store

    def close(self) -> None:
        with self._lock:
            if self._store is not None:
                self._store.close()
                self._store = None


class _Lru:
    """A small least-recently-used mapping (get and set only), safe across Starlette's worker threads."""

    def __init__(self, size: int) -> None:
        self.size, self.lock, self.items = size, threading.Lock(), OrderedDict()

    def get(self, key: Any, default: Any = None) -> Any:
        with self.lock:
            if key not in self.items:
                return default
            self.items.move_to_end(key)
            return self.items[key]

    def __setitem__(self, key: Any, value: Any) -> None:
        with self.lock:
            self.items[key] = value
            self.items.move_to_end(key)
            while len(self.items) > self.size:
                self.items.popitem(last=False)


class _NotFound(Exception):
    pass


def dashboard_routes(open_store: Callable[[], Any], access: Access = Access()) -> list[BaseRoute]:
    env = environment()
    store = LazyStore(open_store)
    built_runs = _Lru(RUN_CACHE_ENTRIES)

    def page(name: str, build: Callable[[Request], dict]) -> tuple[Callable, Callable]:
        """A page and its JSON twin from one builder: the same dict renders both."""
        def data(request: Request) -> tuple[dict | None, Response | None]:
            if not access.allows(request):
                return None, _secure(Response("authentication required\n", 401, media_type="text/plain",
                                              headers={"WWW-Authenticate": 'Bearer realm="netpol-drift"'}))
            try:
                return build(request), None
            except (_NotFound, LookupError) as e:
                return None, _problem(request, 404, str(e))
            except InputError as e:  # the store says "unknown run 7" as an input error: here it is a 404
                return None, _problem(request, 404 if str(e).startswith("unknown run") else 400, str(e))
            except NetpolDriftError as e:  # the database is unreachable, not migrated...
                return None, _problem(request, 503, str(e))

        def html(request: Request) -> Response:
            d, err = data(request)
            if err is not None:
                return err
            # Streamed: the browser paints the page head while a 40,000-cell grid is still on its way.
            return _secure(StreamingResponse(_chunks(env.get_template(name).generate(
                d=d, path=request.url.path, query=request.query_params)), media_type="text/html; charset=utf-8"))

        def api(request: Request) -> Response:
            d, err = data(request)
            return err if err is not None else _secure(JSONResponse(d))

        return html, api

    def _problem(request: Request, status: int, message: str) -> Response:
        if request.url.path.startswith("/api/"):
            return _secure(JSONResponse({"error": message}, status_code=status))
        return _secure(HTMLResponse(env.get_template("error.html").render(status=status, message=message,
                                                                          path=request.url.path), status))

    def clusters(request: Request) -> dict:
        return views.clusters_view(store.get())

    def history(request: Request) -> dict:
        days = _int(request, "days", 30, 1, MAX_DAYS)
        d = views.history_view(store.get(), request.path_params["cluster"], days=days)
        if d is None:
            raise _NotFound(f"no runs of cluster {request.path_params['cluster']!r}")
        return d

    def run(request: Request) -> dict:
        state = request.query_params.get("state", "all")
        if state not in views.FLOW_FILTERS:
            raise InputError(f"must be one of {', '.join(views.FLOW_FILTERS)}, got {state!r}", field="state")
        return views.run_view(store.get(), request.path_params["run"], state=state, cache=built_runs,
                              q=request.query_params.get("q", ""), limit=_int(request, "limit", 500, 1, MAX_FLOWS))

    def compare_runs(request: Request) -> dict:
        return views.compare_runs_view(store.get(), _arg(request, "a"), _arg(request, "b"))

    def compare_clusters(request: Request) -> dict:
        from monitor.compare import parse_namespace_map

        mapping = parse_namespace_map(request.query_params.getlist("map"), "map")
        return views.compare_clusters_view(store.get(), _arg(request, "a"), _arg(request, "b"), mapping,
                                           request.query_params.get("at") or None)

    def snapshot_diff(request: Request) -> dict:
        return views.snapshot_diff_view(store.get(), _arg(request, "a"), _arg(request, "b"))

    def docs(request: Request) -> dict:
        return {"endpoints": API_DOCS}

    routes: list[BaseRoute] = []
    for path, name, build in (("/", "clusters.html", clusters),
                              ("/clusters/{cluster:path}", "history.html", history),
                              ("/runs/{run}", "run.html", run),
                              ("/compare/runs", "compare_runs.html", compare_runs),
                              ("/compare/clusters", "compare_clusters.html", compare_clusters),
                              ("/snapshots/diff", "snapshot_diff.html", snapshot_diff)):
        html, api = page(name, build)
        routes.append(Route(path, html, methods=["GET"]))
        routes.append(Route("/api/clusters" if path == "/" else "/api" + path, api, methods=["GET"]))
    docs_html, _ = page("api.html", docs)
    # Templates compiled now, with the routes, not by the first reader of each page (~0.1 s for the run page).
    for name in env.list_templates(filter_func=lambda n: n.endswith(".html")):
        env.get_template(name)
    routes.append(Route("/api", docs_html, methods=["GET"]))
    routes.append(Mount("/static", app=_Guarded(StaticFiles(directory=HERE / "static"), access), name="static"))
    return routes


def _chunks(pieces: Iterator[str], size: int = 256 * 1024) -> Iterator[bytes]:
    """Jinja2 yields thousands of small strings and Starlette hops to a thread for each one: send ~256 KB at
    a time, and the page head before a big grid so that the browser paints it while the grid arrives."""
    buf: list[str] = []
    n, limit = 0, 1024  # the first chunk small: the page head goes out before any grid is even built
    for piece in pieces:
        if len(piece) >= size:  # a grid: what came before it goes first, on its own
            if buf:
                yield "".join(buf).encode()
                buf, n = [], 0
            yield piece.encode()
            continue
        buf.append(piece)
        n += len(piece)
        if n >= limit:
            yield "".join(buf).encode()
            buf, n, limit = [], 0, size
    if buf:
        yield "".join(buf).encode()


def _arg(request: Request, name: str) -> str:
    value = request.query_params.get(name)
    if not value:
        raise InputError("missing query parameter", field=name)
    return value


def _int(request: Request, name: str, default: int, low: int, high: int) -> int:
    text = request.query_params.get(name)
    if text is None:
        return default
    if not text.isdigit() or not low <= int(text) <= high:
        raise InputError(f"must be a whole number from {low} to {high}, got {text!r}", field=name)
    return int(text)


def _secure(response: Response) -> Response:
    response.headers.update(SECURITY_HEADERS)
    return response


class _Guarded:
    """Static files behind the same access check and headers as the pages."""

    def __init__(self, app: Any, access: Access) -> None:
        self.app, self.access = app, access

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if not self.access.allows(Request(scope)):
            await _secure(Response("authentication required\n", 401, media_type="text/plain"))(scope, receive, send)
            return

        async def send_secure(message: dict) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []),
                                      *((k.lower().encode(), v.encode()) for k, v in SECURITY_HEADERS.items())]
            await send(message)
        await self.app(scope, receive, send_secure)


API_DOCS = [
    {"path": "/api/clusters", "page": "/", "params": "",
     "returns": "each cluster's last run (counts, duration), open drift/violation/gap events, last known-good run"},
    {"path": "/api/clusters/{cluster}", "page": "/clusters/{cluster}", "params": "days (1-3660, default 30)",
     "returns": "runs of the window bucketed for the chart (series: ok, violated, gaps, skipped, drifted, "
                "duration_s, the worst run of each bucket), drift events (events), the 20 latest runs (recent)"},
    {"path": "/api/runs/{run}", "page": "/runs/{run}",
     "params": "state (all|violation|gap|unobserved|drift), q (substring of case, source, destination, port), "
               "limit (default 500)",
     "returns": "the run summary, its events, one grid per port (sources x destinations; each cell [state, "
                "drift, mark, hover text] or null) and the filtered flows"},
    {"path": "/api/compare/runs?a=RUN&b=RUN", "page": "/compare/runs?a=RUN&b=RUN", "params": "a, b",
     "returns": "aligned flows, differences first, with the snapshot change that caused each"},
    {"path": "/api/compare/clusters?a=NAME&b=NAME", "page": "/compare/clusters?a=NAME&b=NAME",
     "params": "a, b, map (A_NS=B_NS, repeatable: renames a's namespaces), at (ISO 8601: latest runs at or before)",
     "returns": "the latest runs of two clusters aligned by flow, differences first"},
    {"path": "/api/snapshots/diff?a=RUN&b=RUN", "page": "/snapshots/diff?a=RUN&b=RUN", "params": "a, b",
     "returns": "policies changed between the two runs' snapshots (unified diff of their canonical JSON), "
                "namespace and pod labels added/removed/changed, other changes in words"},
]

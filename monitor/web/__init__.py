"""The HTTP side of `serve`: one ASGI app (Starlette) on one port (uvicorn), built by `create_app`.

Job: /healthz (the process is alive), /readyz (every readiness check of the service passes: 200, else 503,
with the checks as JSON), /metrics (prometheus_client's ASGI app, handed in by monitor.metrics). The dashboard
adds its pages to the same app through `create_app(..., routes=[...])` (monitor/web/dashboard.py, with
views.py building what each page shows); `netpol-drift dashboard` passes no metrics app. `WebServer` runs
uvicorn in a thread so that the service's main loop keeps the signals.
This module must not import prometheus_client (monitor/metrics.py owns it), kubernetes or the store, nor
decide readiness itself: the service says what is ready.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import BaseRoute, Route

from monitor.settings import parse_listen

log = logging.getLogger(__name__)


class Health(Protocol):
    def alive(self) -> bool: ...

    def readiness(self) -> Sequence[Any]: ...  # objects with name, ok, detail (monitor.service.Check)


class _Asgi:
    """Serves a bare ASGI app at one exact path (a Mount would answer /metrics with a redirect to /metrics/)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        await self.app(scope, receive, send)


def create_app(health: Health, metrics_app: Any | None, routes: Sequence[BaseRoute] = ()) -> Starlette:
    def healthz(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok\n") if health.alive() else PlainTextResponse("stopping\n", status_code=503)

    def readyz(request: Request) -> JSONResponse:
        # A sync endpoint: Starlette runs it in its thread pool, so the blocking checks never stall the loop.
        checks = list(health.readiness())
        ready = all(c.ok for c in checks)
        return JSONResponse({"ready": ready, "checks": {c.name: {"ok": c.ok, "detail": c.detail} for c in checks}},
                            status_code=200 if ready else 503)

    # GET (and HEAD) only, like every route here: the port serves nothing writable (an ASGI app as endpoint
    # would otherwise answer any method).
    metrics = [Route("/metrics", _Asgi(metrics_app), methods=["GET"])] if metrics_app is not None else []
    return Starlette(routes=[Route("/healthz", healthz), Route("/readyz", readyz), *metrics, *routes])


class WebServer:
    """uvicorn on `web.listen`, in a daemon thread; `stop()` lets open requests finish first."""

    def __init__(self, app: Starlette, listen: str) -> None:
        host, port = parse_listen(listen)
        self.server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                                    access_log=False, lifespan="off"))
        self._thread = threading.Thread(target=self.server.run, name="web", daemon=True)

    def start(self, timeout: float = 10.0) -> None:
        self._thread.start()
        end = time.monotonic() + timeout
        while not self.server.started and self._thread.is_alive() and time.monotonic() < end:
            time.sleep(0.02)
        if not self.server.started:
            from monitor.errors import InputError

            raise InputError("cannot listen there (address in use or not local?)", field="web.listen")

    @property
    def port(self) -> int:
        """The bound port (useful with port 0 in tests)."""
        return self.server.servers[0].sockets[0].getsockname()[1]

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10.0)

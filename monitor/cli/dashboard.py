"""The `dashboard` sub-command: the read-only dashboard on a database, without probing anything.

For a laptop against a shared PostgreSQL or an imported bundle: the same app as `serve` (monitor/web/), with
/healthz and /readyz but no /metrics, no scheduler, no cluster. Parse, open, serve until Ctrl-C; no logic here.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dashboard", help="serve the read-only web dashboard on a database (no probing)",
                       description="Serves the dashboard pages and their JSON API (/api) for the runs stored in "
                                   "a database, as `serve` does, without probing a cluster. Access as configured "
                                   "by web.trusted_proxy_header and NETPOL_DRIFT_WEB_TOKEN.")
    p.add_argument("--db", metavar="URL", help="database URL (default: the store.url setting)")
    p.add_argument("--listen", metavar="ADDR", default="127.0.0.1:8080",
                   help="HOST:PORT (default 127.0.0.1:8080: a laptop's dashboard is not for the network unless asked)")
    p.set_defaults(func=dashboard_command)


class _Health:
    """Alive while serving; ready while the database answers."""

    def __init__(self, store) -> None:
        self.store = store

    def alive(self) -> bool:
        return True

    def readiness(self) -> list:
        from types import SimpleNamespace

        try:
            self.store.clusters()
            return [SimpleNamespace(name="store", ok=True, detail="")]
        except Exception as e:  # readiness reports any failure, it never raises
            return [SimpleNamespace(name="store", ok=False, detail=str(e))]


def dashboard_command(args: argparse.Namespace) -> int:
    from monitor.settings import load_settings, parse_listen
    from monitor.store import Store, safe_url
    from monitor.web import WebServer, create_app
    from monitor.web.dashboard import dashboard_access, dashboard_routes

    settings = load_settings(getattr(args, "config", None))
    listen = args.listen
    parse_listen(listen, "--listen")
    url = args.db or settings.store.url
    store = Store.open(url, password=settings.secrets.database_password)  # fails fast: exit 2, one line
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    web = WebServer(create_app(_Health(store), None, dashboard_routes(lambda: store, dashboard_access(settings))),
                    listen)
    web.start()
    print(f"netpol-drift dashboard on http://{listen} (database {safe_url(url)})", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    stop.wait()
    web.stop()
    store.close()
    return 0

"""A seeded store and the dashboard served from it, for the browser tests, the screenshots and the benchmark.

The runs go through the real Store.save_run path with compare.judge deciding drift, as in tests/test_history.py.
prod: run 1 known-good (db denied), run 2 the policy removed (a violation and a confirmed drift), with a hostile
label value and a policy name with quotes; staging: run 3 like prod's run 1 in namespace shop-stg.
`python -m tests.dashboard_seed DIR` writes the README's screenshots of the main pages into DIR.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from monitor.compare import judge
from monitor.models import (
    FlowResult,
    LabelSelector,
    Namespace,
    NetworkPolicy,
    Outcome,
    Pod,
    PolicyRule,
    Run,
    Snapshot,
    Verdict,
    labels_of,
)
from monitor.settings import DriftSettings
from monitor.snapshot import snapshot_digest
from monitor.store import Store
from monitor.web import WebServer, create_app
from monitor.web.dashboard import Access, dashboard_routes

A, D = Verdict.ALLOW, Verdict.DENY
HOSTILE_LABEL = "<script>alert(1)</script>"
QUOTED_POLICY = "deny-\"db\"-'x'"
CASE_WITH_MARKUP = "web-db<img src=x onerror=alert(2)>"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def snap(ns: str, deny: bool, hostile: bool = False) -> Snapshot:
    web_labels = {"app": "web", **({"note": HOSTILE_LABEL} if hostile else {})}
    policies = [NetworkPolicy(ns, QUOTED_POLICY, LabelSelector(labels_of({"app": "db"})))] if deny else []
    policies.append(NetworkPolicy(ns, "allow-web", LabelSelector(labels_of({"app": "web"})),
                                  ingress=(PolicyRule(),)))
    return Snapshot.build(
        namespaces=[Namespace(ns, labels_of({"team": "shop"}))],
        pods=[Pod(ns, "web-1", labels_of(web_labels), "10.0.0.1", workload="Deployment/web"),
              Pod(ns, "db-0", labels_of({"app": "db"}), "10.0.0.2", workload="StatefulSet/db"),
              Pod(ns, "cache-0", labels_of({"app": "cache"}), "10.0.0.3", workload="StatefulSet/cache")],
        policies=policies)


def flows(ns: str, db_open: bool) -> tuple[FlowResult, ...]:
    c, t, s = Outcome.CONNECTED, Outcome.TIMEOUT, Outcome.SKIPPED
    return (FlowResult(CASE_WITH_MARKUP, f"{ns}/web", f"{ns}/db", 5432, "TCP", D, A if db_open else D,
                       c if db_open else t, A if db_open else D, 1.2 if db_open else None, 1,
                       explanation=f"policy {ns}/{QUOTED_POLICY} selects the destination"),
            FlowResult("db-web", f"{ns}/db", f"{ns}/web", 80, "TCP", A, A, c, A, 0.8, 1,
                       explanation=f"policy {ns}/allow-web allows every peer"),
            FlowResult("cache-web", f"{ns}/cache", f"{ns}/web", 80, "TCP", A, A, s, Verdict.SKIPPED, None, 0,
                       reason="no pod of the source identity"))


def save(store: Store, cluster: str, ns: str, t: str, deny: bool, **kw) -> str:
    s = snap(ns, deny)
    run = Run(cluster, t, t[:-3] + "04Z", "schedule", snapshot_digest(s), "sha256:suite", flows(ns, not deny))
    return store.save_run(run, now=t, snapshot=s, **kw)


def seed(store: Store) -> dict[str, str]:
    """Returns the run ids by name: good, drift, staging."""
    good = save(store, "prod", "shop", "2026-11-28T10:00:00Z", deny=True, known_good=True)
    s2 = snap("shop", False, hostile=True)
    run2 = Run("prod", "2026-11-28T10:05:00Z", "2026-11-28T10:05:07Z", "watch", snapshot_digest(s2),
               "sha256:suite", flows("shop", True))
    j = judge(run2, store.known_good("prod", "sha256:suite"), old_snapshot=snap("shop", True), new_snapshot=s2,
              open_events=[], rounds=[{run2.results[0].key: Outcome.CONNECTED}], settings=DriftSettings(),
              now=run2.started_at)
    drift = store.save_run(run2, now=run2.started_at, snapshot=s2, transitions=j.transitions)
    staging = save(store, "staging", "shop-stg", "2026-11-28T09:00:00Z", deny=True)
    return {"good": good, "drift": drift, "staging": staging}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Healthy:
    def alive(self) -> bool:
        return True

    def readiness(self) -> list:
        return []


@contextlib.contextmanager
def serving(store: Store, access: Access | None = None) -> Iterator[str]:
    """The dashboard app on a real uvicorn socket; yields its base URL."""
    web = WebServer(create_app(_Healthy(), None, dashboard_routes(lambda: store, access or Access())),
                    f"127.0.0.1:{free_port()}")
    web.start()
    try:
        yield f"http://127.0.0.1:{web.port}"
    finally:
        web.stop()


def launch(playwright):
    # Debian's chromium, never a browser that Playwright downloads. Root in a container has no user namespace
    # for the sandbox. Missing, the tests fail (not skip): `make test` installs it (make system-deps).
    if not Path(CHROMIUM).exists():
        raise RuntimeError(f"no {CHROMIUM}: install Debian's chromium with `make system-deps`")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])


def screenshots(out: Path) -> None:
    import tempfile

    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(f"sqlite:///{tmp}/shots.db", migrate=True)
        for hour in range(47):  # two days of hourly runs before the seeded ones: a chart with history
            save(store, "prod", "shop", f"2026-11-26T{hour % 24:02d}:00:00Z".replace("26T", f"{26 + hour // 24}T"),
                 deny=True, known_good=True)
        ids = seed(store)
        with serving(store) as base, sync_playwright() as p:
            browser = launch(p)
            page = browser.new_page(viewport={"width": 1100, "height": 760})
            for name, path in (("clusters", "/"), ("history", "/clusters/prod?days=7"),
                               ("run", f"/runs/{ids['drift']}"),
                               ("compare", "/compare/clusters?a=staging&b=prod&map=shop-stg=shop"),
                               ("snapshot-diff", f"/snapshots/diff?a={ids['good']}&b={ids['drift']}")):
                page.goto(base + path)
                if name == "run":  # the grid is below the facts: show it rather than the page top
                    page.locator(".grid-section").first.scroll_into_view_if_needed()
                    page.mouse.move(0, 0)
                page.screenshot(path=str(out / f"dashboard-{name}.png"))
            browser.close()
        store.close()


if __name__ == "__main__":
    screenshots(Path(sys.argv[1] if len(sys.argv) > 1 else "docs"))

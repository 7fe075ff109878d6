"""The dashboard in real headless Chromium (Debian's package, driven by Playwright) against a seeded SQLite store.

Pages load without a console error (a CSP violation is one), matrix cells have the colours of their state,
the seeded drift is on the timeline and links to its run, compare lists the difference first, hostile label
values and policy names render as text, the JSON API says what the page shows; the access rules, the
read-only methods and the headers over a real socket; `matrix --format html` as one self-contained file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from monitor.cli import main
from monitor.store import Store
from monitor.web.dashboard import CSP, Access
from tests.dashboard_seed import (
    CASE_WITH_MARKUP,
    HOSTILE_LABEL,
    QUOTED_POLICY,
    free_port,
    launch,
    seed,
    serving,
)

GREEN, RED, GREY, YELLOW = "rgb(46, 157, 79)", "rgb(209, 51, 47)", "rgb(207, 216, 227)", "rgb(255, 243, 191)"
DRIFT_OUTLINE = "rgb(123, 44, 191)"


@pytest.fixture(scope="module")
def seeded(tmp_path_factory):
    path = tmp_path_factory.mktemp("dash") / "dash.db"
    store = Store.open(f"sqlite:///{path}", migrate=True)
    ids = seed(store)
    yield store, ids, f"sqlite:///{path}"
    store.close()


@pytest.fixture(scope="module")
def site(seeded):
    store, ids, _ = seeded
    with serving(store) as base:
        yield base, ids


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    """A page that records console errors, page errors and dialogs: each test asserts there were none."""
    context = browser.new_context()
    pg = context.new_page()
    pg.problems, pg.requests = [], []
    pg.on("request", lambda r: pg.requests.append(r.url))
    pg.on("console", lambda m: pg.problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.problems.append(f"page error: {e}"))

    def on_dialog(d):
        pg.problems.append(f"dialog: {d.message}")
        d.dismiss()
    pg.on("dialog", on_dialog)
    yield pg
    context.close()


def api(base: str, path: str, headers: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(base + path, headers=headers or {})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        with e:
            body = e.read()
        return e.code, json.loads(body) if e.headers.get_content_type() == "application/json" else {}


def cell(page, port: str, source: str, destination: str):
    """The grid cell of (source, destination) on a port, found through the headers as a reader would."""
    grid = page.locator(f'table.grid[data-port="{port}"]')
    col = [t.strip() for t in grid.locator("thead th.dst").all_inner_texts()].index(destination) + 1
    row = grid.locator("tbody tr", has=page.locator("th.src", has_text=source))
    return row.locator("td").nth(col - 1)


def style(locator, prop: str) -> str:
    return locator.evaluate(f"e => getComputedStyle(e).{prop}")


# ------------------------------------------------------------------------------------------------ pages
def test_every_page_loads_with_its_assets_and_no_error(site, page):
    base, ids = site
    paths = ["/", "/clusters/prod", f"/runs/{ids['drift']}", f"/compare/runs?a={ids['good']}&b={ids['drift']}",
             "/compare/clusters?a=staging&b=prod&map=shop-stg=shop",
             f"/snapshots/diff?a={ids['good']}&b={ids['drift']}", "/api"]
    for path in paths:
        resp = page.goto(base + path)
        assert resp.status == 200, path
        assert resp.headers["content-security-policy"] == CSP
        # The stylesheet applied (the header is dark) and the script ran (sortable headers got a handler).
        assert style(page.locator("header"), "backgroundColor") == "rgb(29, 36, 48)", path
        assert page.locator("table.sortable th").count() == 0 or \
            page.locator("table.sortable th").first.evaluate("e => (e.click(), e.getAttribute('aria-sort'))") \
            == "ascending", path  # the script ran: a click sorts
    assert all(u.startswith(base) for u in page.requests), page.requests  # no CDN, nothing from elsewhere
    assert page.problems == []


def test_run_page_cells_have_the_colour_of_their_state(site, page):
    base, ids = site
    page.goto(f"{base}/runs/{ids['drift']}")
    violated = cell(page, "5432/TCP", "shop/web", "shop/db")
    assert "violation" in violated.get_attribute("class").split()
    assert style(violated, "backgroundColor") == RED
    # The drifted cell is marked: an outline in the drift colour.
    assert style(violated, "outlineColor") == DRIFT_OUTLINE and style(violated, "outlineStyle") == "solid"
    title = violated.get_attribute("title")
    assert "expected deny, policies say allow, observed allow (connected) - DRIFT" in title
    assert f"policy shop/{QUOTED_POLICY} selects the destination" in title
    ok = cell(page, "80/TCP", "shop/db", "shop/web")
    assert style(ok, "backgroundColor") == GREEN and style(ok, "outlineStyle") == "none"
    skipped = cell(page, "80/TCP", "shop/cache", "shop/web")
    assert style(skipped, "backgroundColor") == YELLOW
    assert "not observed" in skipped.get_attribute("title")
    # The known-good run: the same flow blocked, as expected.
    page.goto(f"{base}/runs/{ids['good']}")
    assert style(cell(page, "5432/TCP", "shop/web", "shop/db"), "backgroundColor") == GREY
    assert page.problems == []


def test_seeded_drift_is_on_the_timeline_and_links_to_its_run(site, page):
    base, ids = site
    page.goto(f"{base}/clusters/prod")
    drift = page.locator("#timeline a.event.drift")
    assert drift.count() == 1
    assert drift.get_attribute("data-flow") == f"{CASE_WITH_MARKUP}|shop/web|shop/db|5432/TCP"
    # Over 30 days both runs share a bar: the worst of them, linking to the run with the violation.
    bars = page.locator("#runs-chart a")
    assert bars.count() == 1 and bars.get_attribute("href") == f"/runs/{ids['drift']}"
    title = bars.locator("title").text_content()
    assert "(worst of 2 runs from " in title and title.endswith("): 1 ok, 1 violated, 0 gaps, 1 skipped, 1 drifted")
    drift.locator("circle").click()
    page.wait_for_url(f"{base}/runs/{ids['drift']}")
    assert page.locator("h1").inner_text().startswith(f"Run {ids['drift']} of prod")
    page.goto(f"{base}/clusters/prod?days=1")  # 5-minute bars: one per run
    assert [a.get_attribute("href") for a in page.locator("#runs-chart a").all()] == \
        [f"/runs/{ids['good']}", f"/runs/{ids['drift']}"]
    assert page.problems == []


def test_compare_lists_the_seeded_difference_first(site, page):
    base, ids = site
    page.goto(f"{base}/compare/clusters?a=staging&b=prod&map=shop-stg=shop")
    rows = page.locator("#aligned tbody tr")
    first = rows.nth(0)
    # Alphabetically "cache-web" and "db-web" come before it: only differences-first puts it on top.
    assert first.get_attribute("class") == "differs"
    assert first.locator("td.key").inner_text() == f"{CASE_WITH_MARKUP}|shop/web|shop/db|5432/TCP"
    assert [rows.nth(i).get_attribute("class") for i in range(1, rows.count())] == ["same", "same"]
    page.goto(f"{base}/compare/runs?a={ids['good']}&b={ids['drift']}")
    assert page.locator("#aligned tbody tr").nth(0).get_attribute("class") == "differs"
    assert f"NetworkPolicy shop/{QUOTED_POLICY} removed" in page.locator("ul.changes").inner_text()
    assert page.problems == []


def test_hostile_names_and_labels_render_as_text(site, page):
    base, ids = site
    page.goto(f"{base}/snapshots/diff?a={ids['good']}&b={ids['drift']}")
    labels = page.locator("#labels").inner_text()
    assert f"note={HOSTILE_LABEL}" in labels
    assert QUOTED_POLICY in page.locator("section.policy h3").inner_text()
    page.goto(f"{base}/runs/{ids['drift']}")
    assert page.locator("#flow-table tbody tr").first.locator("td").first.inner_text() in (CASE_WITH_MARKUP,
                                                                                          "db-web", "cache-web")
    assert CASE_WITH_MARKUP in page.locator("#flow-table").inner_text()
    assert page.locator("main script, main img").count() == 0  # nothing the cluster said became an element
    page.goto(f"{base}/clusters/prod")
    assert CASE_WITH_MARKUP in page.locator("#events").inner_text()
    assert page.problems == []  # in particular: no dialog


def test_json_api_matches_the_page(site, page):
    base, ids = site
    _, run = api(base, f"/api/runs/{ids['drift']}")
    page.goto(f"{base}/runs/{ids['drift']}")
    rows = page.locator("#flow-table tbody tr")
    assert rows.count() == len(run["flows"]) == 3
    assert [rows.nth(i).get_attribute("data-key") for i in range(3)] == [f["key"] for f in run["flows"]]
    for g in run["grids"]:
        for i, src in enumerate(g["sources"]):
            for j, dst in enumerate(g["destinations"]):
                c = g["cells"][i][j]
                if c:
                    td = cell(page, g["port"], src, dst)
                    assert td.get_attribute("title") == c[3] and td.inner_text() == c[2]
    _, clusters = api(base, "/api/clusters")
    page.goto(base + "/")
    table = page.locator("#clusters tbody tr")
    assert [table.nth(i).locator("td").first.inner_text() for i in range(table.count())] == \
        [c["name"] for c in clusters["clusters"]] == ["prod", "staging"]
    prod = clusters["clusters"][0]
    assert prod["open_events"]["drift"] == 1 and prod["last_known_good"]["id"] == ids["good"]
    _, cmp = api(base, "/api/compare/clusters?a=staging&b=prod&map=shop-stg=shop")
    page.goto(f"{base}/compare/clusters?a=staging&b=prod&map=shop-stg=shop")
    keys = page.locator("#aligned td.key").all_inner_texts()
    assert keys == [f["key"] for f in cmp["flows"]]
    _, hist = api(base, "/api/clusters/prod")
    page.goto(f"{base}/clusters/prod")
    assert page.locator("#events tbody tr").count() == len(hist["events"])
    assert page.problems == []


def test_pages_work_without_javascript(site, browser):
    base, ids = site
    context = browser.new_context(java_script_enabled=False)
    pg = context.new_page()
    pg.goto(f"{base}/runs/{ids['drift']}")
    pg.select_option("select[name=state]", "violation")
    pg.click("form.inline button[type=submit]")
    pg.wait_for_url("**state=violation**")
    rows = pg.locator("#flow-table tbody tr")
    assert rows.count() == 1 and rows.first.get_attribute("data-key").startswith(CASE_WITH_MARKUP)
    context.close()


def test_sorting_and_filtering_with_javascript(site, page):
    base, ids = site
    page.goto(f"{base}/runs/{ids['drift']}")
    page.locator("#flow-table thead th", has_text="source").click()
    sources = page.locator("#flow-table tbody tr td:nth-child(2)").all_inner_texts()
    assert sources == sorted(sources) and sources[0] == "shop/cache"
    page.fill("#flow-table ~ * input, input[data-target=flow-table]", "cache")
    assert page.locator("#flow-table tbody tr:not([hidden])").count() == 1
    assert page.problems == []


# ------------------------------------------------------------------------------- access, methods, headers
def test_read_only_and_errors(site):
    base, ids = site
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        for path in (f"/runs/{ids['drift']}", "/api/clusters", "/static/dashboard.js"):
            req = urllib.request.Request(base + path, method=method, data=b"")
            with pytest.raises(urllib.error.HTTPError) as e:
                urllib.request.urlopen(req)
            e.value.close()
            assert e.value.code == 405, (method, path)
    assert api(base, "/api/runs/999") == (404, {"error": "unknown run 999 (see netpol-drift history)"})
    assert api(base, "/api/clusters/nope") == (404, {"error": "no runs of cluster 'nope'"})
    assert api(base, f"/api/runs/{ids['drift']}?state=bad") == \
        (400, {"error": "state: must be one of all, violation, gap, unobserved, drift, got 'bad'"})
    assert api(base, "/api/compare/runs?a=1") == (400, {"error": "b: missing query parameter"})
    assert api(base, "/api/compare/clusters?a=staging&b=prod&map=shop-stg") == \
        (400, {"error": "map: expected A_NS=B_NS, got 'shop-stg'"})
    with urllib.request.urlopen(base + "/static/dashboard.js") as r:
        assert r.headers["Content-Security-Policy"] == CSP and r.headers["X-Content-Type-Options"] == "nosniff"


def test_bearer_token_and_trusted_proxy_header(seeded):
    store, _, _ = seeded
    with serving(store, Access(token="s3cret", proxy_header="X-Forwarded-User")) as base:
        assert api(base, "/api/clusters")[0] == 401
        assert api(base, "/api/clusters", {"Authorization": "Bearer wrong"})[0] == 401
        assert api(base, "/api/clusters", {"Authorization": "Bearer s3cret"})[0] == 200
        assert api(base, "/api/clusters", {"X-Forwarded-User": "alice"})[0] == 200
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(base + "/static/dashboard.css")
        e.value.close()
        assert e.value.code == 401
        with urllib.request.urlopen(base + "/healthz") as r:  # the kubelet has no token
            assert r.status == 200


def test_alert_links_resolve_to_the_run_page(site, page):
    """monitor/alert.py links each incident to `web.external_url` + `/runs/<run id>`."""
    base, ids = site
    external_url = base + "/"
    page.goto(f"{external_url.rstrip('/')}/runs/{ids['drift']}")
    assert page.locator("h1").inner_text().startswith(f"Run {ids['drift']} of prod")


# ------------------------------------------------------------------------------------- the two commands
def test_dashboard_command_serves_a_database(seeded, tmp_path):
    _, ids, url = seeded
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "monitor", "dashboard", "--db", url, "--listen",
                             f"127.0.0.1:{port}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "NETPOL_DRIFT_WEB_TOKEN": "t0ken"})
    try:
        line = proc.stdout.readline()
        assert line.startswith(f"netpol-drift dashboard on http://127.0.0.1:{port}")
        base = f"http://127.0.0.1:{port}"
        assert api(base, "/api/clusters")[0] == 401
        code, data = api(base, f"/api/runs/{ids['drift']}", {"Authorization": "Bearer t0ken"})
        assert code == 200 and data["run"]["cluster"] == "prod"
        assert api(base, "/readyz")[0] == 200
        assert api(base, "/metrics")[0] == 404  # no probing, no metrics
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err


def test_dashboard_command_bad_database_is_one_line(tmp_path, capsys):
    assert main(["dashboard", "--db", f"sqlite:///{tmp_path}/none.db"]) == 2
    assert capsys.readouterr().err == (f"netpol-drift: error: no database at {tmp_path}/none.db "
                                       "(create it with `netpol-drift db upgrade`)\n")
    assert main(["dashboard", "--db", f"sqlite:///{tmp_path}/none.db", "--listen", "nope"]) == 2
    assert "--listen: web.listen: must be HOST:PORT" in capsys.readouterr().err


def test_offline_matrix_html_is_one_self_contained_file(tmp_path, browser, capsys):
    manifests = tmp_path / "m"
    manifests.mkdir()
    (manifests / "all.yaml").write_text(f"""
apiVersion: v1
kind: Pod
metadata: {{name: web, namespace: shop, labels: {{app: web, note: "{HOSTILE_LABEL}"}}}}
spec: {{containers: [{{name: c, image: x, ports: [{{containerPort: 80}}]}}]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: db, namespace: shop, labels: {{app: db}}}}
spec: {{containers: [{{name: c, image: x, ports: [{{containerPort: 5432}}]}}]}}
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: db-from-web, namespace: shop}}
spec:
  podSelector: {{matchLabels: {{app: db}}}}
  ingress: [{{from: [{{podSelector: {{matchLabels: {{app: web}}}}}}], ports: [{{port: 5432}}]}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {{name: web-closed, namespace: shop}}
spec: {{podSelector: {{matchLabels: {{app: web}}}}, policyTypes: [Ingress]}}
""")
    assert main(["matrix", "--manifests", str(manifests), "--format", "html"]) == 0
    html = capsys.readouterr().out
    out = tmp_path / "matrix.html"
    out.write_text(html)
    assert "<link" not in html and 'src="' not in html  # everything inline: a CI artifact stands alone
    context = browser.new_context()
    pg = context.new_page()
    requests, dialogs = [], []
    pg.on("request", lambda r: requests.append(r.url))
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pg.goto(out.as_uri())
    assert requests == [out.as_uri()] and dialogs == []
    allowed = cell(pg, "5432/TCP", "shop/web", "shop/db")
    denied = cell(pg, "80/TCP", "shop/db", "shop/web")
    assert style(allowed, "backgroundColor") == GREEN and allowed.inner_text() == "✓"
    assert style(denied, "backgroundColor") == GREY and denied.inner_text() == "✗"
    assert "shop/web-closed" in denied.get_attribute("title")
    # The same grid as the JSON contract says.
    assert main(["matrix", "--manifests", str(manifests), "--format", "json"]) == 0
    flows = json.loads(capsys.readouterr().out)["flows"]
    assert {(f["from"], f["to"], f["port"]): f["allowed"] for f in flows} == {
        ("shop/web", "shop/db", 5432): True, ("shop/web", "shop/db", 80): False,
        ("shop/db", "shop/web", 5432): False, ("shop/db", "shop/web", 80): False}
    context.close()


def test_screenshots_in_docs_are_small_pngs():
    docs = Path(__file__).resolve().parents[1] / "docs"
    shots = sorted(docs.glob("dashboard-*.png"))
    assert [p.name for p in shots] == ["dashboard-clusters.png", "dashboard-compare.png", "dashboard-history.png",
                                       "dashboard-run.png", "dashboard-snapshot-diff.png"]
    for p in shots:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size < 200_000
    readme = (docs.parent / "README.md").read_text()
    assert all(f"docs/{p.name}" in readme for p in shots)


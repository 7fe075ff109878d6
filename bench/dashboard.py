"""The dashboard's speed: a 200 x 200 identity run page, and a cluster's history over a year of runs.

- run page: one stored run of 200 source identities x 200 destination identities on one port (39,800 flows,
  each with an explanation), through the real Store; timed as HTTP GETs over loopback to the app on uvicorn
  (store read, view building, template rendering, transfer), and the same page's first paint and first
  contentful paint in headless Chromium (Debian's, through Playwright).
- history page: `/clusters/production` (30 days, the default) and `?days=365` on a year of 5-minute runs of
  500 cases (105,120 runs) with a drift event every three days. `--year-db FILE` builds it once (kept for
  reruns): the first `--seed-days` days go through Store.save_run exactly as `python -m bench store-year`
  does (its populate()), and are then copied forward in SQL, shifted by whole seed periods, up to 365 days,
  because writing 105,120 runs through the store takes ~30 min of one core (bench/RESULTS.md) and the
  history page reads only the runs and drift_events tables. A finished store-year database works as is.
Targets (issue 14): run page < 300 ms server-side and first paint < 1 s; history of a year < 300 ms.

    python -m bench dashboard [--year-db FILE [--seed-days 14]] [--identities 200] [--repeat 10]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import tempfile
import time
import urllib.request
from datetime import datetime, timedelta

from monitor.models import FlowResult, Outcome, Pod, Run, Snapshot, Verdict, labels_of
from monitor.snapshot import snapshot_digest
from monitor.store import Store
from tests.dashboard_seed import launch, serving


def matrix_snapshot(n: int) -> Snapshot:
    return Snapshot.build(pods=[Pod(f"team-{i // 10:02d}", f"app-{i}-0", labels_of({"app": f"app-{i}"}),
                                    f"10.0.{i // 250}.{i % 250 + 1}", workload=f"Deployment/app-{i}")
                                for i in range(n)])


def matrix_run(n: int) -> Run:
    """n x n identities on 8080/TCP: a third allowed, the rest denied, a few violations, gaps and skips."""
    results = []
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            src, dst = f"team-{i // 10:02d}/app-{i}", f"team-{j // 10:02d}/app-{j}"
            allowed = (i + j) % 3 == 0
            expected = Verdict.ALLOW if allowed else Verdict.DENY
            observed, outcome = expected, Outcome.CONNECTED if allowed else Outcome.TIMEOUT
            if (i * 7 + j) % 397 == 0:  # a violation
                observed, outcome = Verdict.ALLOW, Outcome.CONNECTED
            if (i * 11 + j) % 509 == 0:  # not verified
                observed, outcome = Verdict.SKIPPED, Outcome.SKIPPED
            results.append(FlowResult(f"c{i}-{j}", src, dst, 8080, "TCP", expected, expected, outcome, observed,
                                      0.8 if outcome == Outcome.CONNECTED else None, 1,
                                      explanation=f"{'allowed by' if allowed else 'denied: no rule of'} "
                                                  f"{dst.split('/')[0]}/allow-from-team-{i // 10:02d} "
                                                  f"(ingress rule 1, port 8080/TCP)"))
    return Run("bench", "2026-11-30T10:00:00Z", "2026-11-30T10:00:42Z", "schedule", snapshot_digest(matrix_snapshot(n)),
               "sha256:suite", tuple(results))


def year_database(path: str, seed_days: int) -> None:
    """See the module docstring: a seed through the store, then copies shifted forward, then drift events."""
    import random
    import sqlite3

    from bench.store_year import RUNS_PER_DAY, populate

    if not os.path.exists(path):
        with Store.open(f"sqlite:///{path}", migrate=True) as store:
            populate(store, seed_days * RUNS_PER_DAY, 500, random.Random(20261129), "production")
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        first, last, n = db.execute("SELECT min(started_at), max(started_at), count(*) FROM runs").fetchone()
        if n >= 365 * RUNS_PER_DAY:
            return
        days = int((datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds() // 86400)
        cols = ("cluster_id, suite_id, snapshot_id, result_set_id, \"trigger\", status, error, known_good, "
                "accepted_by, accepted_at, n_results, n_violations, n_gaps, n_skipped, volatile, trigger_detail")
        end = (datetime.fromisoformat(first) + timedelta(days=365)).isoformat(" ")
        seed_end = (datetime.fromisoformat(first) + timedelta(days=days)).isoformat(" ")
        for k in range(1, 365 // days + 1):
            shift = f"'+{k * days} days'"
            db.execute(f"INSERT INTO runs ({cols}, started_at, finished_at) SELECT {cols}, "
                       f"strftime('%Y-%m-%d %H:%M:%f000', started_at, {shift}), "
                       f"strftime('%Y-%m-%d %H:%M:%f000', finished_at, {shift}) FROM runs "
                       f"WHERE started_at < ? AND strftime('%Y-%m-%d %H:%M:%f000', started_at, {shift}) < ? "
                       "ORDER BY started_at", (seed_end, end))
        # A drift event every three days, resolved an hour later, on one of the suite's flows.
        runs = db.execute("SELECT id, started_at FROM runs WHERE id % 864 = 0 ORDER BY started_at").fetchall()
        for i, (run_id, at) in enumerate(runs):
            db.execute("INSERT INTO drift_events (cluster_id, flow_key, kind, detail, cause, opened_at, "
                       "opened_run_id, resolved_at, resolved_run_id, resolution) VALUES (1, ?, 'drift', "
                       "'timeout -> refused since known-good', NULL, ?, ?, ?, ?, 'recovered')",
                       (f"case-{i % 500:03d}|team-00/app-{i % 10}|team-01/app-3|8080/TCP", at, run_id, at,
                        run_id + 12))


def time_get(url: str, repeat: int) -> dict:
    samples, size = [], 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        with urllib.request.urlopen(url) as r:
            size = len(r.read())
        samples.append((time.perf_counter() - t0) * 1000)
    return {"median_ms": statistics.median(samples), "max_ms": max(samples), "first_ms": samples[0],
            "bytes": size}


def server_cpu(store: Store, run_id: str, repeat: int) -> dict:
    """CPU time of the server's part, in-process (wall time on a shared, loaded machine says little):
    building the page data cold (store read, classification, grid) and from the cache, and writing the HTML."""
    from monitor.web import views
    from monitor.web.dashboard import _chunks, environment

    env = environment()
    cold, warm, html = [], [], []
    for _ in range(repeat):
        cache: dict = {}
        c0 = time.process_time()
        d = views.run_view(store, run_id, cache=cache)
        c1 = time.process_time()
        d = views.run_view(store, run_id, cache=cache)
        c2 = time.process_time()
        for _chunk in _chunks(env.get_template("run.html").generate(d=d, path="/", query={})):
            pass
        c3 = time.process_time()
        cold.append((c1 - c0) * 1000)
        warm.append((c2 - c1) * 1000)
        html.append((c3 - c2) * 1000)
    return {"cold_ms": statistics.median(cold), "warm_ms": statistics.median(warm),
            "html_ms": statistics.median(html)}


def paint(url: str, repeat: int) -> dict:
    from playwright.sync_api import sync_playwright

    fp, fcp, load = [], [], []
    with sync_playwright() as p:
        browser = launch(p)
        for _ in range(repeat):
            page = browser.new_page()
            page.goto(url, wait_until="load")
            page.wait_for_function("performance.getEntriesByType('paint').length > 0", timeout=30_000)
            entries = page.evaluate("() => Object.fromEntries(performance.getEntriesByType('paint')"
                                    ".map(e => [e.name, e.startTime]))")
            nav = page.evaluate("() => performance.getEntriesByType('navigation')[0].loadEventEnd")
            fp.append(entries.get("first-paint", float("nan")))
            fcp.append(entries.get("first-contentful-paint", float("nan")))
            load.append(nav)
            page.close()
        browser.close()
    return {"first_paint_ms": statistics.median(fp), "fcp_ms": statistics.median(fcp),
            "load_ms": statistics.median(load)}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench dashboard")
    parser.add_argument("--identities", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--year-db", help="a year's SQLite database (built there when missing or short)")
    parser.add_argument("--seed-days", type=int, default=14)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.open(f"sqlite:///{tmp}/matrix.db", migrate=True)
        run = matrix_run(args.identities)
        run_id = store.save_run(run, now=run.started_at, snapshot=matrix_snapshot(args.identities))
        with serving(store) as base:
            url = f"{base}/runs/{run_id}"
            page = time_get(url, args.repeat)
            api = time_get(f"{base}/api/runs/{run_id}", args.repeat)
            browser = paint(url, max(3, args.repeat // 2))
        cpu = server_cpu(store, run_id, max(3, args.repeat // 2))
        store.close()
    n = args.identities
    print(f"load average {os.getloadavg()[0]:.1f}")
    print(f"run page, {n} x {n} identities ({len(run.results)} flows): GET median {page['median_ms']:.0f} ms "
          f"(max {page['max_ms']:.0f}, first {page['first_ms']:.0f}), {page['bytes'] / 1e6:.1f} MB HTML; "
          f"API median {api['median_ms']:.0f} ms ({api['bytes'] / 1e6:.1f} MB)")
    print(f"run page server CPU (medians): page data cold {cpu['cold_ms']:.0f} ms (store read + classify + "
          f"grid), from the cache {cpu['warm_ms']:.0f} ms; HTML {cpu['html_ms']:.0f} ms")
    print(f"run page in headless Chromium: first paint {browser['first_paint_ms']:.0f} ms, first contentful "
          f"paint {browser['fcp_ms']:.0f} ms, load event {browser['load_ms']:.0f} ms (medians)")
    if args.year_db:
        year_database(args.year_db, args.seed_days)
        store = Store.open(f"sqlite:///{args.year_db}")
        with serving(store) as base:
            for days in (30, 365):
                r = time_get(f"{base}/clusters/production?days={days}", args.repeat)
                a = time_get(f"{base}/api/clusters/production?days={days}", args.repeat)
                print(f"history page of a year's database, {days} days: GET median {r['median_ms']:.0f} ms "
                      f"(max {r['max_ms']:.0f}, first {r['first_ms']:.0f}), {r['bytes'] / 1e3:.0f} kB; "
                      f"API median {a['median_ms']:.0f} ms")
            r = time_get(f"{base}/", args.repeat)
            print(f"clusters page of a year's database: GET median {r['median_ms']:.0f} ms")
        store.close()
    return 0

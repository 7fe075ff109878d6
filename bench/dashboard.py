"""The dashboard's speed: a 200 x 200 identity run page, and a cluster's history over a year of runs.

- run page: stored runs of 200 source identities x 200 destination identities on one port (39,800 flows,
  each with an explanation), written through the real Store (three runs, three result sets: the second and
  third differ from the first in one flow each); then a dashboard on a freshly opened Store (as `netpol-drift
  dashboard` or a restarted `serve` has) answers HTTP GETs over loopback on uvicorn: the FIRST GET of each
  run (nothing cached: store read, view, template, transfer) and then repeated GETs; wall time and the
  process's CPU time (server + the in-process HTTP client) of each; the same page's first paint and first
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


def matrix_run(n: int, variant: int = 0, started: str = "2026-11-30T10:00:00Z") -> Run:
    """n x n identities on 8080/TCP: a third allowed, the rest denied, a few violations, gaps and skips.
    variant k > 0: flow k observed the other way (a new result set, as one changed flow makes)."""
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
            if variant and len(results) == variant:
                observed = Verdict.DENY if observed == Verdict.ALLOW else Verdict.ALLOW
                outcome = Outcome.CONNECTED if observed == Verdict.ALLOW else Outcome.REFUSED
            results.append(FlowResult(f"c{i}-{j}", src, dst, 8080, "TCP", expected, expected, outcome, observed,
                                      0.8 if outcome == Outcome.CONNECTED else None, 1,
                                      explanation=f"{'allowed by' if allowed else 'denied: no rule of'} "
                                                  f"{dst.split('/')[0]}/allow-from-team-{i // 10:02d} "
                                                  f"(ingress rule 1, port 8080/TCP)"))
    return Run("bench", started, started[:-3] + "42Z", "schedule", snapshot_digest(matrix_snapshot(n)),
               "sha256:suite", tuple(results))


def year_database(path: str, seed_days: int) -> None:
    """See the module docstring: a seed through the store, then copies shifted forward, then drift events."""
    import random
    import sqlite3

    from bench.store_year import RUNS_PER_DAY, populate
    from monitor.store import downgrade, upgrade

    url = f"sqlite:///{path}"
    if not os.path.exists(path):
        with Store.open(url, migrate=True) as store:
            populate(store, seed_days * RUNS_PER_DAY, 500, random.Random(20261129), "production")
    upgrade(url)
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
    # The copies went around the store: count them into run_hours the way the migration does.
    downgrade(url, "0005")
    upgrade(url)


def get(url: str) -> tuple[float, float, int]:
    """One GET: (wall ms, this process's CPU ms: the server's threads and the client, bytes)."""
    c0, t0 = time.process_time(), time.perf_counter()
    with urllib.request.urlopen(url) as r:
        size = len(r.read())
    return (time.perf_counter() - t0) * 1000, (time.process_time() - c0) * 1000, size


def time_get(url: str, repeat: int) -> dict:
    samples = [get(url) for _ in range(repeat)]
    return {"median_ms": statistics.median(s[0] for s in samples), "max_ms": max(s[0] for s in samples),
            "first_ms": samples[0][0], "cpu_ms": statistics.median(s[1] for s in samples), "bytes": samples[-1][2]}


def server_cpu(url: str, run_id: str, other_id: str, repeat: int) -> dict:
    """CPU time of the server's part alone, in-process, without HTTP, on one open Store that has served a
    page of another run before (its SQL statements compiled, as in a running dashboard): the page data of
    `run_id` with nothing of it cached (a new run's first view: store read, drift marks, flows table), the
    same from the dashboard's cache, and writing the HTML."""
    from monitor.web import views
    from monitor.web.dashboard import _chunks, environment

    env = environment()
    cold, warm, html = [], [], []
    with Store.open(url) as store:
        views.run_view(store, other_id, cache={})
        for _ in range(repeat):
            cache: dict = {}
            c0 = time.process_time()
            views.run_view(store, run_id, cache=cache)
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
            "html_ms": statistics.median(html), "cold_range": (min(cold), max(cold))}


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
    parser.add_argument("--matrix-db", help="keep the 200 x 200 runs' database here (written when missing)")
    args = parser.parse_args(argv)
    n = args.identities
    print(f"load average {os.getloadavg()[0]:.1f} at the start; {os.cpu_count()} CPUs")
    with tempfile.TemporaryDirectory() as tmp:
        path = args.matrix_db or f"{tmp}/matrix.db"
        url = f"sqlite:///{path}"
        if not os.path.exists(path):
            with Store.open(url, migrate=True) as store:
                for k, at in enumerate(("2026-11-30T10:00:00Z", "2026-11-30T10:05:00Z", "2026-11-30T10:10:00Z")):
                    run = matrix_run(n, variant=k * 1000, started=at)
                    c0, t0 = time.process_time(), time.perf_counter()
                    store.save_run(run, now=at, snapshot=matrix_snapshot(n))
                    print(f"save_run of run {k + 1} ({len(run.results)} flows, {'all' if k == 0 else 'one'} new): "
                          f"{time.perf_counter() - t0:.1f} s wall, {time.process_time() - c0:.1f} s CPU")
        from monitor.grid import grid

        results = matrix_run(n).results
        c0 = time.process_time()
        grid(results)
        print(f"building the grid when a result set is written: {(time.process_time() - c0) * 1000:.0f} ms CPU")
        with Store.open(url) as store, serving(store) as base:  # a dashboard that has seen nothing yet
            for k, rid in enumerate(("2", "3", "1")):
                wall, cpu, size = get(f"{base}/runs/{rid}")
                print(f"run page {n} x {n}, FIRST view of run {rid} (new result set, nothing cached"
                      f"{'; the process' + chr(39) + 's first request' if k == 0 else ''}): "
                      f"{wall:.0f} ms wall, {cpu:.0f} ms CPU, {size / 1e6:.1f} MB HTML")
            wall, cpu, _ = get(f"{base}/runs/2?state=violation")
            print(f"  first view filtered (?state=violation: every result read and classified): "
                  f"{wall:.0f} ms wall, {cpu:.0f} ms CPU")
            page = time_get(f"{base}/runs/1", args.repeat)
            api = time_get(f"{base}/api/runs/1", args.repeat)
            browser = paint(f"{base}/runs/3", max(3, args.repeat // 2))
        cpu = server_cpu(url, "1", "2", max(3, args.repeat // 2))
    print(f"run page, {n} x {n} identities ({len(results)} flows), repeated views: GET median "
          f"{page['median_ms']:.0f} ms wall (max {page['max_ms']:.0f}), {page['cpu_ms']:.0f} ms CPU, "
          f"{page['bytes'] / 1e6:.1f} MB HTML; API median {api['median_ms']:.0f} ms wall, {api['cpu_ms']:.0f} ms CPU "
          f"({api['bytes'] / 1e6:.1f} MB)")
    lo, hi = cpu["cold_range"]
    print(f"run page server CPU without HTTP (medians): page data of a run not viewed before "
          f"{cpu['cold_ms']:.0f} ms ({lo:.0f}-{hi:.0f}), from the dashboard's cache {cpu['warm_ms']:.0f} ms; "
          f"HTML {cpu['html_ms']:.0f} ms")
    print(f"run page in headless Chromium: first paint {browser['first_paint_ms']:.0f} ms, first contentful "
          f"paint {browser['fcp_ms']:.0f} ms, load event {browser['load_ms']:.0f} ms (medians)")
    if args.year_db:
        year_database(args.year_db, args.seed_days)
        with Store.open(f"sqlite:///{args.year_db}") as store, serving(store) as base:
            for days in (30, 365):
                first = get(f"{base}/clusters/production?days={days}")
                r = time_get(f"{base}/clusters/production?days={days}", args.repeat)
                a = time_get(f"{base}/api/clusters/production?days={days}", args.repeat)
                print(f"history page of a year's database, {days} days: first GET {first[0]:.0f} ms wall "
                      f"({first[1]:.0f} ms CPU); median {r['median_ms']:.0f} ms wall (max {r['max_ms']:.0f}), "
                      f"{r['cpu_ms']:.0f} ms CPU, {r['bytes'] / 1e3:.0f} kB; API median {a['median_ms']:.0f} ms "
                      f"wall, {a['cpu_ms']:.0f} ms CPU")
            r = time_get(f"{base}/", args.repeat)
            print(f"clusters page of a year's database: GET median {r['median_ms']:.0f} ms wall, "
                  f"{r['cpu_ms']:.0f} ms CPU")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0

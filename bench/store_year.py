"""A simulated year of 5-minute runs in the SQLite store: size per run, total size, query latency.

105,120 runs (one every 5 minutes for 365 days) of a 500-case suite, through the real Store.save_run path
(one transaction per run, as the service does). Each day 1% of the results (5) change value, at random runs
of that day, and the snapshot changes with them; every run has fresh probe latencies for its connected
flows. Then, on the finished database:
- the cost of an unchanged run: file growth over 5,000 more unchanged runs, on a copy, after checkpoints;
- the whole file size;
- `history --limit 100`, `show RUN` and `compare --cluster A --cluster B` timed in-process through the CLI
  entry point (store opening, schema check, queries and rendering included; interpreter start-up not).
Targets (issue 5): unchanged run < 1 KB, year < 500 MB, each command < 100 ms.

    python -m bench store-year [--runs N] [--cases N] [--dir DIR] [--keep]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta

from monitor.cli import main as cli_main
from monitor.models import (
    FlowResult,
    LabelSelector,
    Namespace,
    NetworkPolicy,
    Outcome,
    Pod,
    Run,
    Snapshot,
    Verdict,
    labels_of,
)
from monitor.snapshot import snapshot_digest
from monitor.store import Store

START = datetime(2026, 1, 1, tzinfo=UTC)
STEP = timedelta(minutes=5)
RUNS_PER_DAY = 288


def iso(t: datetime) -> str:
    return t.isoformat(timespec="seconds").replace("+00:00", "Z")


def make_snapshot(day: int, namespaces: int = 20, pods_per_ns: int = 10) -> Snapshot:
    """A realistic-sized snapshot (200 pods, 40 policies); one label moves each day."""
    nss, pods, policies = [], [], []
    for n in range(namespaces):
        ns = f"team-{n:02d}"
        nss.append(Namespace(ns, labels_of({"team": f"t{n}", "env": "prod", "rev": str(day if n == 0 else 0)})))
        for p in range(pods_per_ns):
            pods.append(Pod(ns, f"app-{p}-5d8f7c-{n:02d}{p:03d}", labels_of({"app": f"app-{p}", "tier": "web"}),
                            f"10.{n}.{p}.1", workload=f"ReplicaSet/app-{p}-5d8f7c", node=f"node-{p % 5}"))
        policies.append(NetworkPolicy(ns, "default-deny", LabelSelector(), frozenset({"Ingress", "Egress"})))
        policies.append(NetworkPolicy(ns, "allow-web", LabelSelector(labels_of({"tier": "web"}))))
    return Snapshot.build(nss, pods, (), policies)


_CACHE: dict[tuple[int, int], tuple] = {}


def make_results(cases: int, state: list[int], rng: random.Random) -> tuple[FlowResult, ...]:
    """state[i] is the current value of result i (a counter that changes when the result changes)."""
    out = []
    lognorm = rng.lognormvariate
    for i in range(cases):
        fields = _CACHE.get((i, state[i]))
        if fields is None:
            fields = _CACHE[(i, state[i])] = _fields(i, state[i])
        latency = round(lognorm(0.5, 0.6), 3) if fields[5] == Verdict.ALLOW else None
        out.append(FlowResult(*fields[:9], latency, 1, fields[9]))
    return tuple(out)


def _fields(i: int, value: int) -> tuple:
    """The stable fields of result i when its value is `value` (FlowResult's first nine, then explanation)."""
    ns_a, ns_b = f"team-{i % 20:02d}", f"team-{(i // 20) % 20:02d}"
    if i % 2 == 0:
        outcome, verdict = Outcome.CONNECTED, Verdict.ALLOW
        explanation = f"allowed by {ns_b}/allow-web (rev {value})"
    else:
        # A deny flow whose dataplane switches between dropping and rejecting: a raw-outcome change that is
        # no violation, as most day-to-day changes are.
        outcome = Outcome.TIMEOUT if value % 2 == 0 else Outcome.REFUSED
        verdict, explanation = Verdict.DENY, f"denied: {ns_b}/default-deny selects it"
    return (f"case-{i:03d}", f"{ns_a}/app-{i % 10}", f"{ns_b}/app-{(i + 3) % 10}", 8080 + i % 3, "TCP",
            verdict, verdict, outcome, verdict, explanation)


def populate(store: Store, runs: int, cases: int, rng: random.Random, cluster: str,
             suite: str = "sha256:suite-year") -> dict:
    state = [0] * cases
    changes_per_day = max(1, cases // 100)
    snap = make_snapshot(0)
    snap_digest = snapshot_digest(snap)
    started = time.perf_counter()
    schedule: dict[int, int] = {}
    changed_runs = 0
    for n in range(runs):
        day, slot = divmod(n, RUNS_PER_DAY)
        if slot == 0:
            # This day's changes, at random runs of the day; the snapshot moves with the first one.
            schedule = {}
            for _ in range(changes_per_day):
                at = rng.randrange(RUNS_PER_DAY)
                schedule[at] = schedule.get(at, 0) + 1
        new_snapshot = None
        if slot in schedule and day > 0:
            for _ in range(schedule[slot]):
                state[rng.randrange(cases)] += 1
            snap = make_snapshot(day * RUNS_PER_DAY + slot)
            snap_digest, new_snapshot = snapshot_digest(snap), snap
            changed_runs += 1
        t = START + n * STEP
        run = Run(cluster, iso(t), iso(t + timedelta(seconds=4)), "schedule", snap_digest, suite,
                  make_results(cases, state, rng))
        store.save_run(run, now=iso(t), snapshot=snap if new_snapshot is not None or n == 0 else None,
                       known_good=True)
        if n and n % 10000 == 0:
            rate = n / (time.perf_counter() - started)
            print(f"  {cluster}: {n} runs, {rate:.0f} runs/s", flush=True)
    return {"seconds": time.perf_counter() - started, "changed_runs": changed_runs}


def file_size(path: str) -> int:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


def time_cli(argv: list[str], repeat: int = 20) -> dict:
    """Wall and CPU time of one command, in-process (each call opens its own Store, as a CLI process would).
    CPU time is reported too because a loaded machine inflates wall time without saying so."""
    samples, cpu = [], []
    for _ in range(repeat):
        sink = io.StringIO()
        t0, c0 = time.perf_counter(), time.process_time()
        with contextlib.redirect_stdout(sink):
            code = cli_main(argv)
        samples.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.process_time() - c0) * 1000)
        if code not in (0, 1):
            raise SystemExit(f"{argv} exited {code}")
    return {"median_ms": statistics.median(samples), "max_ms": max(samples), "first_ms": samples[0],
            "cpu_ms": statistics.median(cpu)}


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    return (f"{os.cpu_count()} CPUs ({cpu}), Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
            f"{platform.system()} {platform.release()}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench store-year")
    parser.add_argument("--runs", type=int, default=365 * RUNS_PER_DAY)
    parser.add_argument("--cases", type=int, default=500)
    parser.add_argument("--dir", default=None, help="where the database goes (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the database afterwards")
    parser.add_argument("--measure-only", action="store_true",
                        help="measure an existing DIR/year.db (from an earlier --keep run) without loading")
    args = parser.parse_args(argv)
    if args.measure_only and not args.dir:
        parser.error("--measure-only needs --dir")
    workdir = args.dir or tempfile.mkdtemp(prefix="netpol-drift-bench-")
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "year.db")
    url = f"sqlite:///{path}"
    rng = random.Random(20261129)
    print(f"machine: {machine()}")
    if not args.measure_only:
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                os.remove(path + suffix)
        print(f"store-year: {args.runs} runs x {args.cases} cases into {path}")
        with Store.open(url, migrate=True) as store:
            prod = populate(store, args.runs, args.cases, rng, "production")
            # A second, small cluster so that `compare` has two sides (a day of staging runs).
            populate(store, RUNS_PER_DAY, args.cases, rng, "staging")
        print(f"loaded in {prod['seconds']:.0f} s ({args.runs / prod['seconds']:.0f} runs/s); "
              f"{prod['changed_runs']} runs with changed results")
    with Store.open(url) as store:
        counts = store.table_counts()
    args.runs = counts["runs"] - RUNS_PER_DAY
    total = file_size(path)
    print(f"rows: {counts}")

    # Cost of an unchanged run: growth of a copy over 5,000 more unchanged runs.
    copy = os.path.join(workdir, "copy.db")
    shutil.copy(path, copy)
    before = file_size(copy)
    extra = 5000
    with Store.open(f"sqlite:///{copy}") as store:
        last = store.get_run(store.history("production", limit=1)[0].id)
        t0 = START + args.runs * STEP
        for i in range(extra):
            t = t0 + i * STEP
            results = tuple(r if r.latency_ms is None else
                            FlowResult(**{**{f: getattr(r, f) for f in r.__slots__},
                                          "latency_ms": round(rng.lognormvariate(0.5, 0.6), 3)})
                            for r in last.results)
            store.save_run(Run("production", iso(t), iso(t), "schedule", last.snapshot_digest, last.suite_digest,
                               results), now=iso(t), known_good=True)
    per_run = (file_size(copy) - before) / extra
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(copy + suffix)

    with Store.open(url) as store:
        newest = store.history("production", limit=1)[0].id
    timings = {
        "history --limit 100": time_cli(["history", "--limit", "100", "--db", url]),
        "history --cluster production --limit 100 --format json":
            time_cli(["history", "--cluster", "production", "--limit", "100", "--format", "json", "--db", url]),
        f"show {newest}": time_cli(["show", newest, "--db", url]),
        f"show {newest} --format json": time_cli(["show", newest, "--format", "json", "--db", url]),
        "compare --cluster staging --cluster production":
            time_cli(["compare", "--cluster", "staging", "--cluster", "production", "--db", url]),
        "compare ... --at 2026-01-01T12:00:00Z":
            time_cli(["compare", "--cluster", "staging", "--cluster", "production", "--at",
                      "2026-01-01T12:00:00Z", "--db", url]),
    }
    print(f"unchanged run: {per_run:.0f} bytes (target < 1024)")
    print(f"whole year: {total / 1e6:.1f} MB for {args.runs + RUNS_PER_DAY} runs (target < 500 MB)")
    for name, t in timings.items():
        print(f"{name}: median {t['median_ms']:.1f} ms (CPU {t['cpu_ms']:.1f} ms), max {t['max_ms']:.1f} ms, "
              f"first {t['first_ms']:.1f} ms (target < 100 ms)")
    # The whole process too, as a person typing the command sees it: interpreter start and imports included.
    for argv in (["history", "--limit", "100"], ["show", newest],
                 ["compare", "--cluster", "staging", "--cluster", "production"]):
        walls = []
        for _ in range(5):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "monitor", *argv, "--db", url], stdout=subprocess.DEVNULL,
                           check=False)
            walls.append((time.perf_counter() - t0) * 1000)
        print(f"process `netpol-drift {' '.join(argv)}`: median {statistics.median(walls):.0f} ms wall")
    print(f"load average during the measurements: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    ok = per_run < 1024 and total < 500e6 and all(t["median_ms"] < 100 for t in timings.values())
    if not args.keep and not args.dir:
        shutil.rmtree(workdir, ignore_errors=True)
    print("store-year: " + ("all targets met" if ok else "TARGET MISSED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

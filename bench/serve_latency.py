"""Benchmark: from applying a breaking NetworkPolicy to the stored run that reports the drift, with `serve`.

Target (issue 11): median of 10 under 10 s in the lab. `serve` runs as a subprocess with the monitor's
ServiceAccount and the default debounce (3 s); each round applies a policy that cuts api -> db, waits until the
store holds the run with the confirmed drift, then restores the policy and waits for the run that resolves it.
Breakdown per round, from the stored run: trigger (edit -> run start: watch event + debounce), probe (run
start -> probing done: snapshot, plan, probe pods), confirm+store (-> the run is readable in the store:
re-probe round, judgement, transaction, and this script's 0.1 s polling).
Needs root and the lab (`python -m tests.lab up`). Leaves nothing: its namespace is deleted, serve stopped.
Usage: python -m bench.serve_latency [--rounds 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from bench.lab_serve import lab_missing, run_span, serve_three_tier


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.serve_latency")
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args(argv)
    missing = lab_missing("serve_latency")
    if missing:
        print(missing, file=sys.stderr)
        return 2

    from monitor.store import Store

    rounds: list[tuple[float, float, float, float]] = []
    with serve_three_tier("bench-serve", 18931) as served:
        first, _ = served.stored_run(lambda r: r.known_good, "known-good run")
        seen = {first.id}
        for _ in range(args.rounds):
            applied = time.time()
            served.break_db()
            run, stored = served.stored_run(lambda r: r.id not in seen and r.violations > 0, "drift run")
            seen.add(run.id)
            start, end = run_span(run)
            rounds.append((stored - applied, start - applied, end - start, stored - end))
            served.restore_db()
            back, _ = served.stored_run(lambda r: r.id not in seen and r.violations == 0, "resolving run")
            seen.add(back.id)
        with Store.open(served.db) as store:
            drift_events = [e for e in store.events("lab") if e.kind == "drift"]

    totals = sorted(r[0] for r in rounds)
    median = statistics.median(totals)
    print(f"policy apply -> stored drift run, {len(rounds)} rounds (serve, debounce 3 s, lab):")
    for i, (total, trig, probe, store) in enumerate(rounds, 1):
        print(f"  round {i:2d}: {total:5.2f}s = trigger {trig:4.2f}s + run {probe:4.2f}s + confirm/store {store:4.2f}s")
    print(f"median {median:.2f}s, min {totals[0]:.2f}s, max {totals[-1]:.2f}s; medians of the parts: trigger "
          f"{statistics.median(r[1] for r in rounds):.2f}s, run {statistics.median(r[2] for r in rounds):.2f}s, "
          f"confirm/store {statistics.median(r[3] for r in rounds):.2f}s; {len(drift_events)} drift events stored")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end")
    ok = median < 10 and len(drift_events) >= len(rounds)
    print(f"target (median < 10 s): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

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
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml


def _iso(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.serve_latency")
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("serve_latency: needs root and the lab (python -m tests.lab up)", file=sys.stderr)
        return 2

    from monitor.errors import StoreError
    from monitor.store import Store
    from tests.lab import control
    from tests.lab.fixtures import Lab
    from tests.test_live_lab import REPO, _env, deploy_three_tier, netpol, three_tier_suite

    if not control.apiserver_ready():
        print("serve_latency: the lab is not up (python -m tests.lab up)", file=sys.stderr)
        return 2
    lab = Lab()
    ns = f"bench-serve-{secrets.token_hex(3)}"
    lab.create_namespace(ns)
    work = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    db = f"sqlite:///{work / 'history.db'}"
    good = netpol("db-from-api", {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress"],
                                  "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "api"}}}],
                                               "ports": [{"port": 5432}]}]})
    bad = netpol("db-from-api", {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress"],
                                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "nobody"}}}],
                                              "ports": [{"port": 5432}]}]})
    proc = None
    rounds: list[tuple[float, float, float, float]] = []
    try:
        deploy_three_tier(lab, ns)
        suite = three_tier_suite(ns)
        # No violation in the suite: the first run becomes the known-good baseline drift is measured from.
        suite["cases"] = [c for c in suite["cases"] if c["name"] in ("frontend-to-api", "api-to-db",
                                                                     "frontend-to-db-denied")]
        (work / "suite.yaml").write_text(yaml.safe_dump(suite))
        (work / "config.yaml").write_text(yaml.safe_dump({
            "cluster": {"name": "lab", "kubeconfig": str(lab.monitor_kubeconfig)},
            "probe": {"namespace": "netpol-drift", "timeout_seconds": 1.0, "run_deadline_seconds": 60},
            "store": {"url": db}, "suite": str(work / "suite.yaml"),
            "schedule": {"interval_seconds": 3600, "jitter_seconds": 0}, "web": {"listen": "127.0.0.1:18931"}}))
        log = (work / "serve.log").open("w")
        proc = subprocess.Popen([sys.executable, "-m", "monitor", "serve", "--config", str(work / "config.yaml")],
                                cwd=REPO, env=_env(), stdout=log, stderr=subprocess.STDOUT)

        def runs_with(pred, timeout: float = 90.0):
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                if proc.poll() is not None:
                    raise RuntimeError(f"serve exited: {(work / 'serve.log').read_text()[-2000:]}")
                try:
                    with Store.open(db) as store:
                        found = [r for r in store.history("lab") if pred(r)]
                except StoreError:  # not created yet
                    found = []
                if found:
                    return found[0], time.time()
                time.sleep(0.1)
            raise RuntimeError(f"no such run within {timeout}s: {(work / 'serve.log').read_text()[-2000:]}")

        first, _ = runs_with(lambda r: r.known_good)
        seen = {first.id}
        for _ in range(args.rounds):
            applied = time.time()
            lab.apply([bad], namespace=ns)
            run, stored = runs_with(lambda r: r.id not in seen and r.violations > 0)
            seen.add(run.id)
            start, end = _iso(run.started_at), _iso(run.finished_at)
            rounds.append((stored - applied, start - applied, end - start, stored - end))
            lab.apply([good], namespace=ns)
            back, _ = runs_with(lambda r: r.id not in seen and r.violations == 0)
            seen.add(back.id)
        with Store.open(db) as store:
            drift_events = [e for e in store.events("lab") if e.kind == "drift"]
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)
        lab.delete_namespace(ns, timeout=120)

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

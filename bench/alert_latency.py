"""Benchmark: from applying a breaking NetworkPolicy to the Slack message arriving at a local Slack stand-in.

Target (issue 12): median of 10 under 15 s in the lab. `serve` runs as a subprocess with the monitor's
ServiceAccount, a bot token and `slack.base_url` pointing at tests/slack_standin.py in this process; each round
applies a policy that cuts api -> db, waits for the top-level chat.postMessage, then restores the policy and
waits for the chat.update that marks the incident resolved (so every round starts from known-good).
Breakdown per round: trigger (edit -> run start: watch event + debounce), run (run start -> probes done:
snapshot, plan, probe pods), re-probe+store (probes done -> the run is readable in the store: confirmation
round, judgement, one transaction; the time of serve's "stored as" log line), send (that line -> message at
the stand-in: the after-run hook reads the outbox, renders, posts).
Needs root and the lab (`python -m tests.lab up`). Leaves nothing: its namespace is deleted, serve stopped.
Usage: python -m bench.alert_latency [--rounds 10]
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
from datetime import UTC, datetime
from pathlib import Path

import yaml


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _logged(log: Path, needle: str) -> float | None:
    """When serve logged a line (its after-run summary: the run is stored, the alert hook comes next)."""
    for line in log.read_text().splitlines():
        if needle in line:
            stamp = line[:23]  # logging's asctime: 2026-11-30 08:31:02,123 (UTC on the lab machine)
            return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").replace(tzinfo=UTC).timestamp()
    return None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.alert_latency")
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        print("alert_latency: needs root and the lab (python -m tests.lab up)", file=sys.stderr)
        return 2

    from monitor.errors import StoreError
    from monitor.store import Store
    from tests.lab import control
    from tests.lab.fixtures import Lab
    from tests.slack_standin import TOKEN, SlackStandin
    from tests.test_live_lab import REPO, _env, deploy_three_tier, netpol, three_tier_suite

    if not control.apiserver_ready():
        print("alert_latency: the lab is not up (python -m tests.lab up)", file=sys.stderr)
        return 2
    lab = Lab()
    ns = f"bench-alert-{secrets.token_hex(3)}"
    lab.create_namespace(ns)
    work = Path(tempfile.mkdtemp(prefix="bench-alert-"))
    db = f"sqlite:///{work / 'history.db'}"
    good = netpol("db-from-api", {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress"],
                                  "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "api"}}}],
                                               "ports": [{"port": 5432}]}]})
    bad = netpol("db-from-api", {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress"],
                                 "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "nobody"}}}],
                                              "ports": [{"port": 5432}]}]})
    slack = SlackStandin().start()
    proc = None
    rounds: list[tuple[float, float, float, float, float]] = []
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
            "schedule": {"interval_seconds": 3600, "jitter_seconds": 0}, "web": {"listen": "127.0.0.1:18932"},
            "slack": {"channel": "#netpol-alerts", "base_url": slack.base_url},
            # Ten break/restore rounds within minutes are flapping by design: measure alerts, not the quiet.
            "alert": {"flap_opens": 0}}))
        log = (work / "serve.log").open("w")
        env = _env() | {"NETPOL_DRIFT_SLACK_TOKEN": TOKEN}
        proc = subprocess.Popen([sys.executable, "-m", "monitor", "serve", "--config", str(work / "config.yaml")],
                                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)

        def wait(pred, what: str, timeout: float = 90.0):
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                if proc.poll() is not None:
                    raise RuntimeError(f"serve exited: {(work / 'serve.log').read_text()[-2000:]}")
                found = pred()
                if found:
                    return found, time.time()
                time.sleep(0.1)
            raise RuntimeError(f"no {what} within {timeout}s: {(work / 'serve.log').read_text()[-2000:]}")

        def runs():
            try:
                with Store.open(db) as store:
                    return store.history("lab")
            except StoreError:  # not created yet
                return []

        wait(lambda: [r for r in runs() if r.known_good], "known-good run")
        seen = {r.id for r in runs()}
        for _ in range(args.rounds):
            posted = len([m for m in slack.of("chat.postMessage") if not m.body.get("thread_ts")])
            updates = len(slack.of("chat.update"))
            applied = time.time()
            lab.apply([bad], namespace=ns)
            [run], stored = wait(lambda: [r for r in runs() if r.id not in seen and r.violations > 0][:1],
                                 "drift run")
            seen.add(run.id)
            msgs, _ = wait(lambda n=posted: [m for m in slack.of("chat.postMessage")
                                             if not m.body.get("thread_ts")][n:], "Slack message")
            arrived = msgs[0].at
            start, end = _ts(run.started_at), _ts(run.finished_at)
            stored = min(stored, _logged(work / "serve.log", f"stored as {run.id},") or stored)
            rounds.append((arrived - applied, start - applied, end - start, stored - end, arrived - stored))
            lab.apply([good], namespace=ns)
            wait(lambda n=updates: len(slack.of("chat.update")) > n, "resolution")
            seen.update(r.id for r in runs())
        top = [m for m in slack.of("chat.postMessage") if not m.body.get("thread_ts")]
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)
        slack.stop()
        lab.delete_namespace(ns, timeout=120)

    totals = sorted(r[0] for r in rounds)
    median = statistics.median(totals)
    print(f"policy apply -> Slack message at the stand-in, {len(rounds)} rounds (serve, lab):")
    for i, (total, trig, run, store, send) in enumerate(rounds, 1):
        print(f"  round {i:2d}: {total:5.2f}s = trigger {trig:4.2f}s + run {run:4.2f}s + re-probe/store "
              f"{store:4.2f}s + send {send:4.2f}s")
    med = [statistics.median(r[i] for r in rounds) for i in range(1, 5)]
    print(f"median {median:.2f}s, min {totals[0]:.2f}s, max {totals[-1]:.2f}s; medians of the parts: trigger "
          f"{med[0]:.2f}s, run {med[1]:.2f}s, re-probe/store {med[2]:.2f}s, send {med[3]:.2f}s; "
          f"{len(top)} top-level messages for {len(rounds)} edits")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end")
    ok = median < 15 and len(top) == len(rounds)
    print(f"target (median < 15 s, one message per edit): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

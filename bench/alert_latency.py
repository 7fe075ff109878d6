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
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.lab_serve import lab_missing, run_span, serve_three_tier


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
    missing = lab_missing("alert_latency")
    if missing:
        print(missing, file=sys.stderr)
        return 2

    from tests.slack_standin import TOKEN, SlackStandin

    slack = SlackStandin().start()
    rounds: list[tuple[float, float, float, float, float]] = []

    def top_level() -> list:
        return [m for m in slack.of("chat.postMessage") if not m.body.get("thread_ts")]

    try:
        with serve_three_tier("bench-alert", 18932, env={"NETPOL_DRIFT_SLACK_TOKEN": TOKEN}, config={
                "slack": {"channel": "#netpol-alerts", "base_url": slack.base_url},
                # Ten break/restore rounds within minutes are flapping by design: measure alerts, not the quiet.
                "alert": {"flap_opens": 0}}) as served:
            served.stored_run(lambda r: r.known_good, "known-good run")
            seen = {r.id for r in served.runs()}
            for _ in range(args.rounds):
                posted, updates = len(top_level()), len(slack.of("chat.update"))
                applied = time.time()
                served.break_db()
                run, stored = served.stored_run(lambda r: r.id not in seen and r.violations > 0, "drift run")
                seen.add(run.id)
                msgs, _ = served.wait(lambda n=posted: top_level()[n:], "Slack message")
                arrived = msgs[0].at
                start, end = run_span(run)
                stored = min(stored, _logged(served.work / "serve.log", f"stored as {run.id},") or stored)
                rounds.append((arrived - applied, start - applied, end - start, stored - end, arrived - stored))
                served.restore_db()
                served.wait(lambda n=updates: len(slack.of("chat.update")) > n, "resolution")
                seen.update(r.id for r in served.runs())
            top = top_level()
    finally:
        slack.stop()

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

"""Benchmark: probe fan-out in the lab. 2,000 flows (50 source identities x 40 targets), one probe pod per
source identity, against one probe pod per flow, measured in the same process on the same lab.

Target (issue 4): the fan-out run (snapshot, plan, probe, evaluate) under 20 s wall with at most 50 probe pods,
and at least 10x faster than one probe pod per flow. The per-flow baseline runs on a sample of flows (default
100, same runner, same concurrency) and is extrapolated linearly to 2,000 flows; the output says so.
Needs root and the lab (`python -m tests.lab up`); the run uses the monitor's ServiceAccount kubeconfig.
This module must not leave anything behind: its namespace is deleted at the end, also on failure.
Usage: python -m bench.probe_fanout [--sources 50] [--destinations 10] [--ports 4] [--baseline-sample 100]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import sys
import time
from datetime import UTC, datetime

from bench.lab_serve import lab_missing


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.probe_fanout")
    ap.add_argument("--sources", type=int, default=50)
    ap.add_argument("--destinations", type=int, default=10)
    ap.add_argument("--ports", type=int, default=4)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--baseline-sample", type=int, default=100)
    args = ap.parse_args(argv)
    missing = lab_missing("probe_fanout")
    if missing:
        print(missing, file=sys.stderr)
        return 2

    from monitor.cluster import ClusterAdapter
    from monitor.models import Outcome
    from monitor.probe.runner import ProbeTask, run_probes
    from monitor.probe.wire import ProbeTarget
    from monitor.run import run_once
    from monitor.settings import ClusterSettings, ProbeSettings, Settings
    from monitor.suite import parse_suite
    from tests.lab.fixtures import Lab, pod_manifest
    lab = Lab()
    ns = f"bench-fanout-{secrets.token_hex(3)}"
    ports = [8001 + i for i in range(args.ports)]
    lab.create_namespace(ns)
    try:
        t0 = time.monotonic()
        dst = [pod_manifest(f"dst-{i}", {"role": "dst", "dst": str(i)}, tcp=ports) for i in range(args.destinations)]
        # Sources only need a network namespace: a sleeping process, no listeners.
        src = [pod_manifest(f"src-{i:02d}", {"role": "src", "team": "a" if i % 2 else "b"}, tcp=[],
                            command=["sleep", "3600"]) for i in range(args.sources)]
        lab.run_pods(ns, dst + src, timeout=120)
        since = time.time()
        # Team a may reach the first half of the ports, team b nothing: connected and refused both occur.
        lab.apply([{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "dst"},
                    "spec": {"podSelector": {"matchLabels": {"role": "dst"}}, "policyTypes": ["Ingress"],
                             "ingress": [{"from": [{"podSelector": {"matchLabels": {"team": "a"}}}],
                                          "ports": [{"port": p} for p in ports[: max(1, len(ports) // 2)]]}]}}],
                  namespace=ns)
        lab.wait_synced(since=since, timeout=60)
        setup = time.monotonic() - t0

        suite = parse_suite({"name": "fanout", "cases": [
            {"name": f"src-{i:02d}-to-dst", "from": {"namespace": ns, "pod": f"src-{i:02d}"},
             "to": {"namespace": ns, "labels": {"role": "dst"}}, "ports": ports,
             "expect": "allow" if i % 2 else "deny"} for i in range(args.sources)]})
        settings = Settings(
            cluster=ClusterSettings(name="lab", kubeconfig=str(lab.monitor_kubeconfig)),
            probe=ProbeSettings(namespace="netpol-drift", timeout_seconds=1.0, concurrency=args.concurrency,
                                run_deadline_seconds=120))
        adapter = ClusterAdapter.connect(settings.cluster)
        try:
            started = time.monotonic()
            live = run_once(adapter, suite, settings, datetime.now(UTC), f"bf{secrets.token_hex(4)}")
            fanout_wall = time.monotonic() - started
            flows = live.run.results
            observed = sum(1 for f in flows if f.outcome is not Outcome.SKIPPED)
            wrong = sum(1 for f in flows if f.observed and f.verdict != f.intent)
            outcomes = {o.value: sum(1 for f in flows if f.outcome is o) for o in Outcome}
            latencies = sorted(f.latency_ms for f in flows if f.latency_ms is not None)

            # Baseline: the same runner, one probe pod per flow, on a sample of the flows just probed.
            tasks = []
            rep = {p.name: p for p in live.snapshot.pods}
            for f in flows[: args.baseline_sample]:
                src_pod = rep[f.source.split("/", 1)[1]]
                dst_pod = rep[f.destination.split("/", 1)[1]]
                tasks.append(ProbeTask(f.source, ns, src_pod.labels, (ProbeTarget(dst_pod.ip, f.port),)))
            base_settings = dataclasses.replace(settings.probe, concurrency=args.concurrency)
            started = time.monotonic()
            reports, base_pods = run_probes(adapter, tasks, base_settings, f"bb{secrets.token_hex(4)}")
            base_wall = time.monotonic() - started
            base_ok = sum(1 for r in reports if r.outcomes and r.outcomes[0] is not None)
        finally:
            adapter.close()
    finally:
        lab.delete_namespace(ns, timeout=120)

    per_flow_extrapolated = base_wall / max(1, len(tasks)) * len(flows)
    speedup = per_flow_extrapolated / fanout_wall
    ok = fanout_wall < 20 and live.probe_pods <= 50 and speedup >= 10 and observed == len(flows) and not wrong
    print(f"lab setup ({args.sources} sources, {args.destinations} destinations x {args.ports} ports): "
          f"{setup:.1f}s")
    print(f"fan-out: {len(flows)} flows, {observed} observed, {wrong} disagreeing with the policies, "
          f"{live.probe_pods} probe pods, concurrency {args.concurrency}: {fanout_wall:.2f}s wall "
          f"(probing {live.probe_seconds:.2f}s)")
    print("outcomes: " + ", ".join(f"{k} {v}" for k, v in outcomes.items() if v)
          + (f"; connect latency median {latencies[len(latencies) // 2]:.0f} ms, max {latencies[-1]:.0f} ms"
             if latencies else ""))
    print(f"per-flow baseline: {len(tasks)} flows sampled, {base_pods} probe pods, {base_ok} results: "
          f"{base_wall:.2f}s -> {per_flow_extrapolated:.1f}s extrapolated to {len(flows)} flows")
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the end "
          f"(other work on the machine slows the lab's kube-router and node agent)")
    print(f"speed-up: {speedup:.1f}x; targets (<20 s, <=50 pods, >=10x): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

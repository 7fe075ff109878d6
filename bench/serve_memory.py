"""Benchmark: resident memory of `serve` with a 1,000-case suite over 100 runs in the lab.

Target (issue 11): under 150 MB after 100 runs, and not growing: the slope of RSS over the last half of the
runs (least squares, KB per run) is reported. The suite: 2 source pods x 20 destination pods x 25 ports =
1,000 cases (one flow each, all allowed: no policy), so each run is 2 probe pods of 500 targets. `serve` runs
with interval_seconds 1, so runs follow each other; RSS (/proc/PID/status VmRSS) is read after each run.
Needs root and the lab. Leaves nothing: its namespace is deleted and serve stopped.
Usage: python -m bench.serve_memory [--runs 100] [--destinations 20] [--ports 25]
"""

from __future__ import annotations

import argparse
import secrets
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import yaml

from bench.lab_serve import lab_missing


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def runs_done(port: int) -> int:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    except OSError:
        return 0
    return int(sum(float(line.split()[-1]) for line in text.splitlines()
                   if line.startswith("netpol_drift_runs_total{")))


def slope(points: list[tuple[int, float]]) -> float:
    n = len(points)
    mx, my = sum(x for x, _ in points) / n, sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.serve_memory")
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--destinations", type=int, default=20)
    ap.add_argument("--ports", type=int, default=25)
    args = ap.parse_args(argv)
    missing = lab_missing("serve_memory")
    if missing:
        print(missing, file=sys.stderr)
        return 2

    from tests.lab.fixtures import Lab, pod_manifest
    from tests.test_live_lab import REPO, _env
    lab = Lab()
    ns = f"bench-mem-{secrets.token_hex(3)}"
    ports = [7001 + i for i in range(args.ports)]
    lab.create_namespace(ns)
    work = Path(tempfile.mkdtemp(prefix="bench-mem-"))
    port = 18932
    proc = None
    samples: list[tuple[int, float]] = []
    errors: dict[str, int] = {}
    try:
        dst = [pod_manifest(f"dst-{i:02d}", {"role": "dst"}, tcp=ports) for i in range(args.destinations)]
        src = [pod_manifest(f"src-{i}", {"role": "src", "src": str(i)}, tcp=[], command=["sleep", "3600"])
               for i in range(2)]
        lab.run_pods(ns, dst + src, timeout=120)
        cases = [{"name": f"s{s}-d{d:02d}-{p}", "from": {"namespace": ns, "pod": f"src-{s}"},
                  "to": {"namespace": ns, "pod": f"dst-{d:02d}"}, "port": p, "expect": "allow"}
                 for s in range(2) for d in range(args.destinations) for p in ports]
        (work / "suite.yaml").write_text(yaml.safe_dump({"name": "memory", "cases": cases}))
        (work / "config.yaml").write_text(yaml.safe_dump({
            "cluster": {"name": "lab", "kubeconfig": str(lab.monitor_kubeconfig)},
            "probe": {"namespace": "netpol-drift", "timeout_seconds": 1.0, "run_deadline_seconds": 120},
            "store": {"url": f"sqlite:///{work / 'history.db'}"}, "suite": str(work / "suite.yaml"),
            "schedule": {"interval_seconds": 1, "jitter_seconds": 0}, "web": {"listen": f"127.0.0.1:{port}"},
            "log_level": "WARNING"}))
        log = (work / "serve.log").open("w")
        started = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "monitor", "serve", "--config", str(work / "config.yaml")],
                                cwd=REPO, env=_env(), stdout=log, stderr=subprocess.STDOUT)
        done = 0
        while done < args.runs:
            if proc.poll() is not None:
                raise RuntimeError(f"serve exited: {(work / 'serve.log').read_text()[-2000:]}")
            now = runs_done(port)
            if now > done:
                done = now
                samples.append((done, rss_mb(proc.pid)))
            time.sleep(0.2)
        wall = time.monotonic() - started
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        for line in text.splitlines():
            if line.startswith("netpol_drift_runs_total{"):
                errors[line.split("{")[1].split("}")[0]] = int(float(line.split()[-1]))
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)
        lab.delete_namespace(ns, timeout=180)

    last = samples[-1][1]
    half = [p for p in samples if p[0] > args.runs // 2]
    kb_per_run = slope(half) * 1024
    first10 = [f"{mb:.0f}" for _, mb in samples[:10]]
    print(f"serve, {len(cases)}-case suite, {samples[-1][0]} runs in {wall:.0f}s ({wall / samples[-1][0]:.1f}s "
          f"per run): RSS {samples[0][1]:.1f} MB after run 1, {last:.1f} MB after run {samples[-1][0]}, "
          f"max {max(mb for _, mb in samples):.1f} MB")
    print(f"first runs (MB): {', '.join(first10)}; slope over runs {half[0][0]}-{half[-1][0]}: "
          f"{kb_per_run:+.1f} KB/run")
    print("runs by label: " + "; ".join(f"{k}: {v}" for k, v in sorted(errors.items())))
    ok = last < 150 and kb_per_run < 50
    print(f"target (< 150 MB, not growing: slope < 50 KB/run): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

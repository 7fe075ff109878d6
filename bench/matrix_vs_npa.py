"""Benchmark: `netpol-drift matrix --format tsv` vs netpol-analyzer (`netpolicy list`), side by side.

Run: `NETPOL_ANALYZER=/path/to/netpolicy python -m bench npa [--sizes 300,1000,10000] [--limit 900]`.

netpol-analyzer (np-guard/netpol-analyzer, v1.4.4 measured) is not on any package registry: build its
`cmd/netpolicy` yourself and point NETPOL_ANALYZER at the binary. Without it the benchmark says so and
measures our side only. Nothing here downloads or builds it.

Manifests from tests/gen.py (Deployments with one replica, or at 10,000 pods the realistic shape of
bench/scale.py; random labels, 2 named container ports each,
NetworkPolicies mixing every v1 feature, the "balanced" mix of bench/matrix_vs_nca.py). netpol-analyzer
rejects a named port in a rule towards an ipBlock ("cannot convert named port for an IP destination"), so
the generator's named policy ports are turned into numbers in rules whose peers include addresses (an
ipBlock peer, or no peers); everything else is the same file for both tools. Each tool runs as a whole
process on the same directory (`netpolicy list --dirpath DIR -o txt -q` against `netpol-drift matrix
--manifests DIR --format tsv`), with a time limit per run; a run over the limit is reported as such, never
as a time. It measures and reports only.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.matrix_vs_nca import machine, ours_executable  # noqa: E402
from tests.gen import generate_cluster, write_manifests  # noqa: E402

# pods -> generator arguments (namespaces x pods per namespace, policies: one per 10 pods up to 2,000)
SIZES = {300: dict(namespaces=3, pods_per_ns=100, policies=30),
         1000: dict(namespaces=10, pods_per_ns=100, policies=100),
         # 10,000 pods in the realistic shape of bench/scale.py (ReplicaSets of 5 Pods, 20 port layouts)
         10000: dict(namespaces=500, pods_per_ns=20, policies=2000, workload_kind="Pod", replicas=5,
                     port_layouts=20)}
MIX = dict(egress_share=0.5, ipblock_share=0.1, ports_per_pod=2)


def accepted_by_netpol_analyzer(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Named policy ports become port numbers in rules whose peers include addresses (an ipBlock, or no peers
    at all): netpol-analyzer refuses those. The rest is unchanged."""
    for o in objs:
        if o["kind"] != "NetworkPolicy":
            continue
        for direction, key in (("ingress", "from"), ("egress", "to")):
            for rule in o["spec"].get(direction, []):
                peers = rule.get(key) or []  # no peers: every address too
                if not peers or any("ipBlock" in p for p in peers):
                    for port in rule.get("ports") or []:
                        if isinstance(port.get("port"), str):
                            port["port"] = 8080
    return objs


def timed(cmd: list[str], limit: float) -> float | None:
    """Wall seconds of one whole process, or None when it ran over `limit` (then it is killed)."""
    start = time.perf_counter()
    try:
        subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return None
    except subprocess.CalledProcessError as e:
        raise SystemExit(f"{cmd[0]} failed ({e.returncode}): {e.stderr.decode()[-500:]}") from e
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="300,1000,10000")
    ap.add_argument("--repeat", type=int, default=3, help="runs of our side per size (best and median)")
    ap.add_argument("--limit", type=float, default=900, help="seconds before a netpol-analyzer run is stopped")
    args = ap.parse_args(argv if argv is not None else sys.argv[1:])
    npa = os.environ.get("NETPOL_ANALYZER")
    if not npa or not Path(npa).is_file():
        print(f"NETPOL_ANALYZER is {'not set' if not npa else f'{npa!r}, not a file'}: build netpol-analyzer's "
              "cmd/netpolicy (v1.4.4) and set NETPOL_ANALYZER to its path; measuring our side only.",
              file=sys.stderr)
        npa = None
    print(f"## Matrix vs netpol-analyzer\n\nMachine: {machine()}; load average at start {os.getloadavg()}\n")
    print("| pods | policies | `matrix --format tsv` best / median s | netpol-analyzer s | ratio | load |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="bench-npa-") as tmp:
        for size in (int(s) for s in args.sizes.split(",") if s):
            d = Path(tmp) / str(size)
            write_manifests(accepted_by_netpol_analyzer(generate_cluster(1, **SIZES[size], **MIX)), d)
            load = os.getloadavg()[0]
            ours = [timed([ours_executable(), "matrix", "--manifests", str(d), "--format", "tsv"], 600)
                    for _ in range(args.repeat)]
            done = [t for t in ours if t is not None]
            theirs = timed([npa, "list", "--dirpath", str(d), "-o", "txt", "-q"], args.limit) if npa else None
            load = f"{min(load, os.getloadavg()[0]):.1f}-{max(load, os.getloadavg()[0]):.1f}"
            best = min(done) if done else None
            ours_text = f"{best:.2f} / {statistics.median(done):.2f}" if done else "over the limit"
            theirs_text = "not measured" if not npa else \
                (f"{theirs:.1f}" if theirs is not None else f"> {args.limit:.0f} (stopped)")
            ratio = (f"{theirs / best:.0f}x" if theirs is not None and best else
                     (f"> {args.limit / best:.0f}x" if npa and best else "-"))
            print(f"| {size:,} | {SIZES[size]['policies']:,} | {ours_text} | {theirs_text} | {ratio} | {load} |",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

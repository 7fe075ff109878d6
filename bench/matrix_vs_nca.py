"""Benchmark: `netpol-drift matrix --format tsv` vs network-config-analyzer 2.1.0, and the 10k-pod class matrix.

Run: `python -m bench matrix` or `python bench/matrix_vs_nca.py [--seeds 1,2,3] [--skip-big] [--skip-nca]`.

Part 1, side by side on the same manifests (tests/gen.py, 1,000 pods = 10 namespaces x 100 Deployments,
100 NetworkPolicies, 2 named ports per pod, several seeds and policy mixes): wall time of the whole command
(`netpol-drift matrix --manifests DIR --format tsv` against `nca --connectivity -r DIR -o txt_no_fw_rules
--output_endpoints pods`), each in a fresh process, and a check that both list the same pod pairs with the
same connection sets (modulo the known NCA bug modelled in tests/test_differential_nca.py). Target: >= 20x.
Part 2: 10,000 pods / 500 namespaces / 2,000 policies: load + class-level matrix (monitor.engine.matrix) in
a child process reporting its own times and peak RSS (resource.getrusage), then every row and its
destination groups computed once (rows are made on demand). Target: matrix < 5 s, < 1 GB.
Prints a Markdown report (machine details included) to paste into bench/RESULTS.md. It measures and reports;
it must not change what it measures to meet a target.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python bench/matrix_vs_nca.py` from anywhere
    sys.path.insert(0, str(REPO))

from monitor.engine import EMPTY, ConnSet  # noqa: E402
from monitor.manifests import load_manifests  # noqa: E402
from tests.gen import generate_cluster, write_manifests  # noqa: E402

# Policy mixes: (name, generator keyword arguments). All: 1,000 pods, 100 policies, 2 named ports per pod.
MIXES = [
    ("ingress-heavy", dict(egress_share=0.2, ipblock_share=0.05)),
    ("balanced", dict(egress_share=0.5, ipblock_share=0.1)),
    ("egress-heavy", dict(egress_share=0.9, ipblock_share=0.2)),
]
BIG = dict(namespaces=500, pods_per_ns=20, policies=2000, ports_per_pod=2)
BIG_SHAPES = [
    # Worst case: 10,000 one-pod workloads with random labels and random container ports: ~1 class per pod.
    ("10,000 Deployments, random ports each", dict()),
    # Closer to a real cluster: 2,000 ReplicaSets x 5 pods (with IPs), ports from 20 image layouts.
    ("2,000 ReplicaSets x 5 Pods, 20 port layouts", dict(workload_kind="Pod", replicas=5, port_layouts=20)),
]

_CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
from monitor.manifests import load_manifests
from monitor.engine.matrix import class_matrix
t1 = time.perf_counter()
snapshot = load_manifests(sys.argv[1])
t2, c2 = time.perf_counter(), time.process_time()
m = class_matrix(snapshot)
t3, c3 = time.perf_counter(), time.process_time()
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
# Rows are computed on demand: also time computing every row and its destination groups once (what a full
# listing such as the tsv costs on top of the build).
groups = sum(len(m.row_groups(s)) for s in range(len(m.classes)))
t4, c4 = time.perf_counter(), time.process_time()
print(json.dumps({"pods": len(snapshot.pods), "policies": len(snapshot.policies), "classes": len(m.classes),
                  "atoms": len(m.atoms), "import_s": t1 - t0, "load_s": t2 - t1, "matrix_s": t3 - t2,
                  "peak_rss_mb": rss, "rows_s": t4 - t3, "groups": groups, "matrix_cpu_s": c3 - c2,
                  "rows_cpu_s": c4 - c3,
                  "rows_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown")
    mem = next((line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), "0")
    return (f"nproc {os.cpu_count()}, CPU {cpu}, RAM {int(mem) // 1024 // 1024} GiB, "
            f"Python {platform.python_version()}, {platform.system()} {platform.release()}")


def nca_executable() -> str:
    proc = subprocess.run(["bash", str(REPO / "tests" / "nca" / "install.sh")], capture_output=True, text=True,
                          check=True)
    return proc.stdout.strip().splitlines()[-1]


def ours_executable() -> str:
    exe = Path(sys.executable).with_name("netpol-drift")
    return str(exe) if exe.exists() else "netpol-drift"


def parse_tsv_conns(text: str) -> ConnSet:
    if text == "all":
        return ConnSet.all()
    out = EMPTY
    for group in text.split(";"):
        proto, ports = group.split(":")
        for part in ports.split(","):
            lo, _, hi = part.partition("-")
            out = out | ConnSet.ports(proto, int(lo), int(hi or lo))
    return out


def timed(cmd: list[str], stdout_path: Path) -> float:
    start = time.perf_counter()
    with stdout_path.open("w") as out:
        subprocess.run(cmd, stdout=out, stderr=subprocess.DEVNULL, check=True)
    return time.perf_counter() - start


def side_by_side(seed: int, mix: str, kwargs: dict, work: Path, nca: str) -> dict:
    from tests.test_differential_nca import KNOWN_NCA_BUGS, parse_nca_pods

    d = work / f"{mix}-{seed}"
    write_manifests(generate_cluster(seed, namespaces=10, pods_per_ns=100, policies=100, ports_per_pod=2,
                                     **kwargs), d)
    tsv = work / f"{mix}-{seed}.tsv"
    ours_s = timed([ours_executable(), "matrix", "--manifests", str(d), "--format", "tsv"], tsv)
    nca_out = work / f"{mix}-{seed}.nca.txt"
    nca_s = timed([nca, "--connectivity", "-r", str(d), "-o", "txt_no_fw_rules", "--output_endpoints", "pods",
                   "-f", str(nca_out)], work / "nca.log")
    ours: dict[tuple[str, str], ConnSet] = {}
    for line in tsv.read_text().splitlines():
        src, dst, conns = line.split("\t")
        ours[(src, dst)] = parse_tsv_conns(conns)
    theirs = parse_nca_pods(nca_out.read_text())
    # Pairs where we differ must be explained by the known NCA bug (re-evaluated with the bug modelled).
    diff = {k for k in ours.keys() | theirs.keys() if ours.get(k, EMPTY) != theirs.get(k, EMPTY)}
    explained = 0
    if diff:
        from monitor.engine import Engine

        snapshot = load_manifests(d)
        pods = {p.ref: p for p in snapshot.pods}
        buggy = [Engine(t(snapshot)) for t in KNOWN_NCA_BUGS.values()]
        explained = sum(1 for a, b in diff if any(e.connections(pods[a], pods[b]) == theirs.get((a, b), EMPTY)
                                                  for e in buggy))
    return {"mix": mix, "seed": seed, "pairs_ours": len(ours), "pairs_nca": len(theirs), "differ": len(diff),
            "explained": explained, "ours_s": ours_s, "nca_s": nca_s, "speedup": nca_s / ours_s}


def big_cluster(work: Path, name: str, kwargs: dict, seed: int = 42) -> dict:
    d = work / f"big-{name}"
    t = time.perf_counter()
    write_manifests(generate_cluster(seed, **BIG, **kwargs), d)
    gen_s = time.perf_counter() - t
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(d)], capture_output=True, text=True, check=True,
                          cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    result = json.loads(proc.stdout)
    result["generate_s"] = gen_s
    result["manifest_mb"] = sum(f.stat().st_size for f in d.iterdir()) / 1e6
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="1,2", help="comma-separated seeds per policy mix (default 1,2)")
    ap.add_argument("--mixes", default=",".join(m for m, _ in MIXES), help="comma-separated policy mixes")
    ap.add_argument("--skip-big", action="store_true")
    ap.add_argument("--skip-nca", action="store_true")
    args = ap.parse_args(argv if argv is not None else sys.argv[1:])
    seeds = [int(s) for s in args.seeds.split(",") if s]
    print(f"## Matrix\n\nMachine: {machine()}\n")
    ok = True
    with tempfile.TemporaryDirectory(prefix="bench-matrix-") as tmp:
        work = Path(tmp)
        if not args.skip_nca:
            nca = nca_executable()
            print("1,000 pods (10 ns x 100 Deployments, 2 named ports each), 100 NetworkPolicies; wall time of "
                  "each whole command in a fresh process:\n")
            print("| mix | seed | pairs (ours / NCA) | differing pairs (explained by known NCA bug) | "
                  "`matrix --format tsv` s | NCA s | speedup |")
            print("|---|---|---|---|---|---|---|")
            for mix, kwargs in MIXES:
                if mix not in args.mixes.split(","):
                    continue
                for seed in seeds:
                    r = side_by_side(seed, mix, kwargs, work, nca)
                    ok &= r["differ"] == r["explained"] and r["speedup"] >= 20
                    print(f"| {r['mix']} | {r['seed']} | {r['pairs_ours']} / {r['pairs_nca']} | {r['differ']} "
                          f"({r['explained']}) | {r['ours_s']:.2f} | {r['nca_s']:.1f} | {r['speedup']:.0f}x |",
                          flush=True)
        if not args.skip_big:
            print("\n10,000 pods / 500 namespaces / 2,000 policies, load_manifests + class_matrix in a child "
                  "process:\n")
            print("| pods | YAML MB | pod classes | atoms | load s | class_matrix s (CPU s) | peak RSS MB | every row "
                  "and its groups s (CPU s; groups, peak RSS MB) | load |")
            print("|---|---|---|---|---|---|---|---|---|")
            for i, (label, kwargs) in enumerate(BIG_SHAPES):
                r = big_cluster(work, str(i), kwargs)
                ok &= r["matrix_s"] < 5 and r["peak_rss_mb"] < 1024
                print(f"| {label} | {r['manifest_mb']:.0f} | {r['classes']} | {r['atoms']} | {r['load_s']:.2f} | "
                      f"{r['matrix_s']:.2f} ({r['matrix_cpu_s']:.2f}) | {r['peak_rss_mb']:.0f} | {r['rows_s']:.2f} "
                      f"({r['rows_cpu_s']:.2f}; {r['groups']}, {r['rows_peak_rss_mb']:.0f}) | "
                      f"{os.getloadavg()[0]:.1f} |", flush=True)
    print(f"\nTargets (>= 20x, same pairs and sets; < 5 s and < 1 GB): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

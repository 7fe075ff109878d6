"""Benchmark: every offline command at 10,000 pods as whole processes, a live snapshot of 10,000 pods, and
the class matrix and `check` at 100,000 pods.

Run: `python -m bench scale [--repeat 3] [--skip-100k | --only-100k] [--keep DIR [--reuse]] [--rows-cap S]`.

Clusters are tests/gen.py's realistic shape (ReplicaSets of 5 bare Pods with IPs, ports from 20 image
layouts): 10,000 pods = 500 namespaces x 20 pods, 2,000 NetworkPolicies; 100,000 pods = 5,000 namespaces x
20 pods (20,000 workloads), 20,000 NetworkPolicies. Measured, each in a fresh process, `--repeat` times:
- `netpol-drift matrix --manifests DIR --format tsv > /dev/null` on the YAML file and on the same objects as
  one `kind: List` JSON dump (what `kubectl get -o json` writes);
- `netpol-drift check` with a generated suite of 1,000 cases (600 workload -> workload, 300 labels ->
  workload, 100 namespace-wide -> workload, ports by number and by name);
- `netpol-drift diff --before DIR --after DIR` where the after side has 3 policies removed and 2 opened to
  their namespace;
- a live snapshot (`ClusterAdapter.connect` + `take_snapshot`, the real kubernetes client over HTTP) against
  a stand-in API server in another process that answers the list calls with API-shaped objects (managed
  fields, owner references, conditions and container statuses included): the CPU of the monitor side.
- at 100,000 pods: load + class matrix (build, then its rows and their destination groups, as many as
  `--rows-cap` CPU seconds allow) in a child process, `check` as a whole process, and `plan_suite` (10,000
  pods too) in a child process.
Wall and CPU time (user + sys of the process) come from os.wait4's rusage of each child, peak RSS from GNU
time (/usr/bin/time -f %M: see measure() for why not the child's own ru_maxrss). The machine's load
(os.getloadavg) is printed around every measurement: shared machines make wall times noisy, so the report
gives the best and the median. It measures and reports; it must not change what it measures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
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

REALISTIC = dict(pods_per_ns=20, ports_per_pod=2, workload_kind="Pod", replicas=5, port_layouts=20)
SIZES = {"10k": dict(namespaces=500, policies=2000), "100k": dict(namespaces=5000, policies=20000)}

_MATRIX_CHILD = r"""
import json, sys, time
P, W = time.process_time, time.perf_counter
c0, t0 = P(), W()
from monitor.manifests import load_manifests
from monitor.engine.matrix import class_matrix
snapshot = load_manifests(sys.argv[1])
c1, t1 = P(), W()
m = class_matrix(snapshot)
c2, t2 = P(), W()
# VmHWM: this process's own peak (ru_maxrss would include the memory of the process it was forked from)
rss_built = next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM")) / 1024
rows = groups = 0
cap = float(sys.argv[2])  # seconds of CPU for the row listing (every row when they fit)
while rows < len(m.classes) and P() - c2 < cap:
    groups += len(m.row_groups(rows))
    rows += 1
c3, t3 = P(), W()
print(json.dumps({"pods": len(snapshot.pods), "classes": len(m.classes), "atoms": len(m.atoms), "groups": groups,
                  "rows": rows, "load_s": t1 - t0, "build_s": t2 - t1, "rows_s": t3 - t2, "load_cpu": c1 - c0,
                  "build_cpu": c2 - c1, "rows_cpu": c3 - c2, "rss_built_mb": rss_built}))
"""

_PLAN_CHILD = r"""
import json, sys, time
from monitor.manifests import load_manifests
from monitor.plan import plan_suite
from monitor.suite import load_suite
snapshot, suite = load_manifests(sys.argv[1]), load_suite(sys.argv[2])
c0 = time.process_time()
plan = plan_suite(suite, snapshot)
print(json.dumps({"cpu": time.process_time() - c0, "flows": plan.flow_count, "groups": len(plan.groups)}))
"""

_LIVE_CHILD = r"""
import json, sys, time
c0, t0 = time.process_time(), time.perf_counter()
from monitor.cluster import ClusterAdapter
from monitor.settings import ClusterSettings
from monitor.snapshot import take_snapshot
c1, t1 = time.process_time(), time.perf_counter()
adapter = ClusterAdapter.connect(ClusterSettings(kubeconfig=sys.argv[1], request_timeout_seconds=120))
snap = take_snapshot(adapter, "bench")
c2, t2 = time.process_time(), time.perf_counter()
print(json.dumps({"pods": len(snap.pods), "policies": len(snap.policies), "namespaces": len(snap.namespaces),
                  "import_cpu_s": c1 - c0, "snapshot_cpu_s": c2 - c1, "snapshot_wall_s": t2 - t1}))
"""

_STAND_IN = r"""
import http.server, json, sys
bodies = {}
for name in ("namespaces", "pods", "networkpolicies", "services"):
    with open(f"{sys.argv[1]}/{name}.json", "rb") as f:
        bodies[name] = f.read()
ROUTES = {"/api/v1/namespaces": "namespaces", "/api/v1/pods": "pods", "/api/v1/services": "services",
          "/apis/networking.k8s.io/v1/networkpolicies": "networkpolicies"}

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        name = ROUTES.get(self.path.split("?")[0])
        body = bodies[name] if name else json.dumps({"kind": "Status", "code": 404, "reason": "NotFound",
                                                       "message": "the server could not find the resource"}).encode()
        self.send_response(200 if name else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass

srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(srv.server_address[1], flush=True)
srv.serve_forever()
"""


# ------------------------------------------------------------------------------------------- measuring
TIME = shutil.which("time", path="/usr/bin:/bin")


def measure(cmd: list[str], stdout: Any = subprocess.DEVNULL) -> dict:
    """Wall and CPU (user + sys) of one child process from its rusage; its peak RSS from GNU time.

    Not from the child's own ru_maxrss: Linux keeps, across exec, the high-water mark of the memory the
    child was forked with, so a child of this (big, after generating 100,000 pods) process would report at
    least this process's size. GNU time forks from its own small process and reports the command's."""
    load = os.getloadavg()[0]
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss_file:
        wrapped = [TIME, "-f", "%M", "-o", rss_file.name, *cmd] if TIME else cmd
        start = time.perf_counter()
        proc = subprocess.Popen(wrapped, stdout=stdout, stderr=subprocess.PIPE, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        rss_lines = [x for x in rss_file.read().split() if x.isdigit()]
    err = proc.stderr.read().decode() if proc.stderr else ""
    proc.returncode = os.waitstatus_to_exitcode(status)
    rss = int(rss_lines[-1]) / 1024 if rss_lines else float("nan")  # nan: no GNU time here, not measured
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "rss_mb": rss,
            "rc": proc.returncode, "load": load, "stderr": err[-500:]}


def repeated(cmd: list[str], repeat: int, ok_codes: tuple[int, ...] = (0,)) -> dict:
    runs = [measure(cmd) for _ in range(repeat)]
    bad = [r for r in runs if r["rc"] not in ok_codes]
    if bad:
        raise SystemExit(f"{' '.join(cmd)} exited {bad[0]['rc']}: {bad[0]['stderr']}")
    walls, cpus = [r["wall_s"] for r in runs], [r["cpu_s"] for r in runs]
    return {"wall_best": min(walls), "wall_median": statistics.median(walls), "cpu_best": min(cpus),
            "cpu_median": statistics.median(cpus), "rss_mb": max(r["rss_mb"] for r in runs),
            "load": f"{min(r['load'] for r in runs):.1f}-{max(r['load'] for r in runs):.1f}", "runs": len(runs),
            "rc": runs[0]["rc"]}


# --------------------------------------------------------------------------------------------- inputs
def write_json_dump(objs: list[dict], directory: Path) -> Path:
    """The objects as one `kind: List` (kubectl get -o json), items without kind as the raw API leaves them
    only where kubectl would not add it: kubectl keeps kind/apiVersion on each item, and so does this."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "cluster.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "metadata": {"resourceVersion": ""},
                                "items": objs}, indent=4))
    return path


def write_suite(objs: list[dict], path: Path, cases: int = 1000, seed: int = 7) -> Path:
    """A suite of `cases` cases over the cluster's workloads (names from ownerReferences)."""
    import yaml

    rnd = random.Random(seed)
    workloads: dict[tuple[str, str], dict] = {}
    for o in objs:
        if o["kind"] == "Pod":
            owner = o["metadata"]["ownerReferences"][0]["name"]
            workloads.setdefault((o["metadata"]["namespace"], owner), o)
    keys = sorted(workloads)
    out = []
    for i in range(cases):
        (dns, dname) = rnd.choice(keys)
        dst_pod = workloads[(dns, dname)]
        ports = dst_pod["spec"]["containers"][0]["ports"]
        port = rnd.choice(ports)
        by_name = rnd.random() < 0.4
        case: dict[str, Any] = {"name": f"case-{i}", "to": {"namespace": dns, "workload": f"ReplicaSet/{dname}"},
                                "port": port["name"] if by_name else port["containerPort"],
                                "protocol": port.get("protocol", "TCP"), "expect": rnd.choice(["allow", "deny"])}
        roll = rnd.random()
        (sns, sname) = rnd.choice(keys)
        if roll < 0.6:
            case["from"] = {"namespace": sns, "workload": f"ReplicaSet/{sname}"}
        elif roll < 0.9:
            labels = workloads[(sns, sname)]["metadata"]["labels"]
            case["from"] = {"namespace": sns, "labels": dict(list(labels.items())[:1])} if labels else \
                {"namespace": sns, "workload": f"ReplicaSet/{sname}"}
        else:
            case["from"] = {"namespace": sns}
        out.append(case)
    path.write_text(yaml.safe_dump({"name": "scale", "cases": out}, sort_keys=False))
    return path


def changed_policies(objs: list[dict], seed: int = 11, removed: int = 3, changed: int = 2) -> list[dict]:
    """The same cluster with `removed` NetworkPolicies gone and `changed` ones opened to their namespace."""
    rnd = random.Random(seed)
    policies = [i for i, o in enumerate(objs) if o["kind"] == "NetworkPolicy"]
    gone = set(rnd.sample(policies, removed))
    opened = set(rnd.sample([i for i in policies if i not in gone], changed))
    after = []
    for i, o in enumerate(objs):
        if i in gone:
            continue
        if i in opened:
            o = json.loads(json.dumps(o))
            o["spec"]["ingress"] = [{"from": [{"podSelector": {}}]}]
            o["spec"].setdefault("policyTypes", ["Ingress"])
            if "Ingress" not in o["spec"]["policyTypes"]:
                o["spec"]["policyTypes"].append("Ingress")
        after.append(o)
    return after


def api_objects(objs: list[dict], directory: Path) -> None:
    """List responses of a stand-in API server: objects as the API serves them (uid, managed fields...)."""
    directory.mkdir(parents=True, exist_ok=True)
    ns_items, pod_items, np_items = [], [], []
    for i, o in enumerate(objs):
        meta = {**o["metadata"], "uid": f"00000000-0000-4000-8000-{i:012d}", "resourceVersion": str(1000 + i),
                "creationTimestamp": "2026-11-01T10:00:00Z"}
        if o["kind"] == "Namespace":
            ns_items.append({"metadata": meta, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}})
        elif o["kind"] == "NetworkPolicy":
            np_items.append({"metadata": {**meta, "generation": 1}, "spec": o["spec"]})
        elif o["kind"] == "Pod":
            pod_items.append(_api_pod(o, meta, i))
    for name, kind, items in (("namespaces", "NamespaceList", ns_items), ("pods", "PodList", pod_items),
                              ("networkpolicies", "NetworkPolicyList", np_items), ("services", "ServiceList", [])):
        (directory / f"{name}.json").write_text(json.dumps({
            "kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": "99999"}, "items": items}))


def _api_pod(o: dict, meta: dict, i: int) -> dict:
    container = o["spec"]["containers"][0]
    node = f"node-{i % 50}"
    owner = meta.get("ownerReferences", [{}])[0]
    meta = {**meta, "generateName": f"{owner.get('name', 'w')}-",
            "ownerReferences": [{**owner, "blockOwnerDeletion": True}],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                               "time": "2026-11-01T10:00:00Z", "fieldsType": "FieldsV1",
                               "fieldsV1": {"f:metadata": {"f:generateName": {}, "f:labels": {
                                   f"f:{k}": {} for k in meta.get("labels", {})}, "f:ownerReferences": {}},
                                   "f:spec": {"f:containers": {'k:{"name":"main"}': {
                                       ".": {}, "f:image": {}, "f:name": {}, "f:ports": {}, "f:resources": {}}}}}},
                              {"manager": "kubelet", "operation": "Update", "apiVersion": "v1",
                               "time": "2026-11-01T10:00:05Z", "fieldsType": "FieldsV1", "subresource": "status",
                               "fieldsV1": {"f:status": {"f:conditions": {}, "f:containerStatuses": {},
                                                         "f:podIP": {}, "f:podIPs": {}, "f:phase": {}}}}]}
    ip = o["status"]["podIP"]
    cond = [{"type": t, "status": "True", "lastProbeTime": None, "lastTransitionTime": "2026-11-01T10:00:03Z"}
            for t in ("PodReadyToStartContainers", "Initialized", "Ready", "ContainersReady", "PodScheduled")]
    return {"metadata": meta, "spec": {
        "containers": [{**container, "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
                        "env": [{"name": "LOG_LEVEL", "value": "info"}],
                        "volumeMounts": [{"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/"
                                          "serviceaccount", "readOnly": True}],
                        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File",
                        "imagePullPolicy": "IfNotPresent"}],
        "restartPolicy": "Always", "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
        "serviceAccountName": "default", "nodeName": node, "securityContext": {}, "schedulerName": "default-scheduler",
        "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                         "tolerationSeconds": 300}],
        "volumes": [{"name": "kube-api-access", "projected": {"sources": [{"serviceAccountToken": {
            "expirationSeconds": 3607, "path": "token"}}]}}]},
        "status": {"phase": "Running", "conditions": cond, "hostIP": f"192.168.0.{i % 50 + 1}", "podIP": ip,
                   "podIPs": [{"ip": ip}], "startTime": "2026-11-01T10:00:01Z", "qosClass": "Burstable",
                   "containerStatuses": [{"name": "main", "ready": True, "restartCount": 0, "started": True,
                                          "image": container["image"], "imageID": "sha256:" + "0" * 64,
                                          "containerID": f"containerd://{i:064x}",
                                          "state": {"running": {"startedAt": "2026-11-01T10:00:04Z"}}}]}}


# ------------------------------------------------------------------------------------------------ parts
def live_snapshot(work: Path, objs: list[dict], repeat: int) -> dict:
    api = work / "api"
    api_objects(objs, api)
    server = subprocess.Popen([sys.executable, "-c", _STAND_IN, str(api)], stdout=subprocess.PIPE)
    try:
        port = int(server.stdout.readline())  # type: ignore[union-attr]
        kubeconfig = work / "kubeconfig"
        kubeconfig.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "bench",
            "clusters": [{"name": "bench", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
            "contexts": [{"name": "bench", "context": {"cluster": "bench", "user": "bench"}}],
            "users": [{"name": "bench", "user": {"token": "bench"}}]}))
        runs = []
        for _ in range(repeat):
            proc = subprocess.run([sys.executable, "-c", _LIVE_CHILD, str(kubeconfig)], capture_output=True,
                                  text=True, check=True, cwd=REPO)
            runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    finally:
        server.terminate()
        server.wait()
    cpus = [r["snapshot_cpu_s"] for r in runs]
    walls = [r["snapshot_wall_s"] for r in runs]
    return {**runs[0], "cpu_best": min(cpus), "cpu_median": statistics.median(cpus), "wall_best": min(walls),
            "wall_median": statistics.median(walls), "pods_mb": (api / "pods.json").stat().st_size / 1e6}


def plan_child(directory: Path, suite: Path) -> dict:
    """plan_suite's CPU for a suite on a snapshot (the live run's planning step, without a cluster)."""
    proc = subprocess.run([sys.executable, "-c", _PLAN_CHILD, str(directory), str(suite)], capture_output=True,
                          text=True, check=True, cwd=REPO)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def class_matrix_child(directory: Path, rows_cap_s: float) -> dict:
    with tempfile.TemporaryFile("w+") as out:
        r = measure([sys.executable, "-c", _MATRIX_CHILD, str(directory), str(rows_cap_s)], stdout=out)
        if r["rc"]:
            raise SystemExit(r["stderr"])
        out.seek(0)
        result = json.loads(out.read())
    return {**result, "cpu_s": r["cpu_s"], "rss_mb": r["rss_mb"]}


def row(label: str, r: dict) -> str:
    return (f"| {label} | {r['wall_best']:.2f} / {r['wall_median']:.2f} | {r['cpu_best']:.2f} / "
            f"{r['cpu_median']:.2f} | {r['rss_mb']:.0f} | {r['load']} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-100k", action="store_true")
    ap.add_argument("--only-100k", action="store_true")
    ap.add_argument("--keep", metavar="DIR", help="generate into DIR and keep it (default: a temporary dir)")
    ap.add_argument("--reuse", action="store_true", help="with --keep: use the files already there")
    ap.add_argument("--rows-cap", type=float, default=120.0, metavar="S",
                    help="100,000 pods: CPU seconds for listing rows after the build (default 120)")
    args = ap.parse_args(argv if argv is not None else sys.argv[1:])
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench-scale-"))
    exe = ours_executable()
    print(f"## Scale\n\nMachine: {machine()}; load average at start {os.getloadavg()}\n")
    try:
        if not args.only_100k:
            objs = generate_cluster(42, **SIZES["10k"], **REALISTIC)
            yaml_dir, json_dir, after_dir = work / "10k-yaml", work / "10k-json", work / "10k-after"
            suite = work / "suite.yaml"
            if not (args.reuse and suite.exists()):
                write_manifests(objs, yaml_dir)
                write_json_dump(objs, json_dir)
                write_manifests(changed_policies(objs), after_dir)
                write_suite(objs, suite)
            print("10,000 pods (realistic shape), whole processes, best / median of "
                  f"{args.repeat}:\n")
            print("| command | wall s | CPU s | peak RSS MB | load (1 min) |")
            print("|---|---|---|---|---|")
            print(row("`matrix --format tsv` (YAML, > /dev/null)",
                      repeated([exe, "matrix", "--manifests", str(yaml_dir), "--format", "tsv"], args.repeat)),
                  flush=True)
            print(row("`matrix --format tsv` (JSON List dump, > /dev/null)",
                      repeated([exe, "matrix", "--manifests", str(json_dir), "--format", "tsv"], args.repeat)),
                  flush=True)
            r = repeated([exe, "check", "--manifests", str(yaml_dir), "--suite", str(suite)], args.repeat, (0, 1))
            print(row("`check` (1,000 cases, YAML)", r), flush=True)
            r = repeated([exe, "check", "--manifests", str(json_dir), "--suite", str(suite)], args.repeat, (0, 1))
            print(row("`check` (1,000 cases, JSON)", r), flush=True)
            print(row("`diff --before --after` (3 policies removed, 2 changed, YAML)",
                      repeated([exe, "diff", "--before", str(yaml_dir), "--after", str(after_dir)], args.repeat)),
                  flush=True)
            p = plan_child(json_dir, suite)
            print(f"\n`plan_suite` of the 1,000 cases: CPU {p['cpu']:.2f} s ({p['flows']} flows, {p['groups']} "
                  f"source groups)", flush=True)
            live = live_snapshot(work, objs, args.repeat)
            print(f"\nLive snapshot of {live['pods']} pods, {live['policies']} policies, {live['namespaces']} "
                  f"namespaces from a stand-in API server (pods list {live['pods_mb']:.0f} MB of JSON): CPU "
                  f"{live['cpu_best']:.2f} s best / {live['cpu_median']:.2f} s median, wall {live['wall_best']:.2f} / "
                  f"{live['wall_median']:.2f} s (imports {live['import_cpu_s']:.2f} s CPU apart)", flush=True)
        if not args.skip_100k:
            big, big_json, suite = work / "100k-yaml", work / "100k-json", work / "suite-100k.yaml"
            if not (args.reuse and suite.exists()):
                objs = generate_cluster(42, **SIZES["100k"], **REALISTIC)
                write_manifests(objs, big)
                write_json_dump(objs, big_json)
                write_suite(objs, suite)
                del objs
            print("\n100,000 pods (20,000 ReplicaSets x 5, 5,000 namespaces, 20,000 policies):\n")
            for label, d in (("YAML", big), ("JSON", big_json)):
                m = class_matrix_child(d, args.rows_cap)
                print(f"- class matrix ({label}): {m['classes']} classes, {m['atoms']} atoms; "
                      f"load {m['load_s']:.1f} s wall / {m['load_cpu']:.1f} s CPU, build {m['build_s']:.1f} s wall / "
                      f"{m['build_cpu']:.1f} s CPU (peak RSS {m['rss_built_mb']:.0f} MB); {m['rows']} rows and their "
                      f"{m['groups']} destination groups {m['rows_s']:.1f} s wall / {m['rows_cpu']:.1f} s CPU; "
                      f"process CPU {m['cpu_s']:.1f} s, peak RSS {m['rss_mb']:.0f} MB", flush=True)
            p = plan_child(big_json, suite)
            print(f"- `plan_suite` of the 1,000 cases: CPU {p['cpu']:.2f} s ({p['flows']} flows)", flush=True)
            for label, d in (("YAML", big), ("JSON", big_json)):
                r = repeated([exe, "check", "--manifests", str(d), "--suite", str(suite)], 1, (0, 1))
                print(f"- `check` (1,000 cases, {label}): wall {r['wall_best']:.1f} s, CPU {r['cpu_best']:.1f} s, "
                      f"peak RSS {r['rss_mb']:.0f} MB, load {r['load']}", flush=True)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nload average at end {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The lab node agent: the kubelet of the lab, realizing pods as Linux network namespaces.

Job (LAB.md "Lab node agent contract"): register the lab's nodes (config.NODES: lab-node and lab-node-2, each
Ready with its InternalIP and pod CIDR); schedule Pending pods as kube-scheduler's filters would (nodeName,
nodeSelector and required hostname affinity honoured, cordoned nodes and untolerated NoSchedule/NoExecute taints
skipped, the rest spread over the nodes: the lab has no scheduler, the agent is it; a pod no node fits gets
PodScheduled=False/Unschedulable with kube-scheduler's message and is tried again on every pass) and act as the
kubelet of both nodes: give each pod a network namespace whose host veth is in its node's namespace and an IP
from its node's pod CIDR; report hostIP/podIP while Pending;
wait until its node's kube-router's rules mention the pod IP (probe pods do not wait, as with a real kubelet:
LAB_START_BEFORE_RULES); run each container's command (image ignored; command mapped
to this host, the venv's bin dir first on PATH) in the pod namespace; report Running, then the termination
(exit code, reason, times, the termination message file's content <= 4 KiB); on deletion kill the processes,
remove the namespace, free the IP and delete the pod with grace 0. It survives its own restart: at start it
re-adopts the pods it still has state for and removes every pod namespace no live pod owns.

Like a kubelet it also renews each node's Lease (every 10 s, so the node lifecycle controller keeps the node
Ready), gives every container the `kubernetes` Service's KUBERNETES_SERVICE_* variables, and materializes the
pod's volumes (projected ServiceAccount tokens from the TokenRequest API, refreshed at 80% of their life, the
kube-root-ca.crt ConfigMap, downwardAPI, configMap, secret, emptyDir, persistentVolumeClaim) bind-mounted at
their mountPaths in a mount namespace of the container's own (SANDBOX, which also realizes runAsUser and
readOnlyRootFilesystem).

Conventions: a container whose command is exactly ["lab-listener"], or that has no command at all, runs the lab
listener (tests/lab/listener.py): real TCP and UDP servers on each declared containerPort. A container with a
readinessProbe is never Ready. restartPolicy is treated as Never. activeDeadlineSeconds is enforced.

Must not: touch the root namespace's firewall or links, signal processes it did not start, or run anything
outside the pod namespaces except `ip`, `iptables-save` and `conntrack` in the node namespace.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import datetime as dt
import ipaddress
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import config as C
from . import netns, procs
from .rest import ApiError, Rest

TERMINATION_MESSAGE_LIMIT = 4096
LEASE_SECONDS = 40  # as a kubelet: renewed every 10 s, the node lifecycle controller's grace period is 40-50 s
KUBE_ROUTER_WAIT = float(os.environ.get("LAB_KUBE_ROUTER_WAIT", "30"))
# Which pods start their containers without waiting for kube-router's rules, as a real kubelet does (the CNI
# programs a new pod's rules, and adds its IP to other pods' allow-lists, with a lag): `probe` (default: pods
# labelled netpol-drift.io/probe=true, so every live test meets the race the monitor must survive), `all`, or
# `none` (every pod waits: the lab's old, kinder behaviour).
START_BEFORE_RULES = os.environ.get("LAB_START_BEFORE_RULES", "probe")
if START_BEFORE_RULES not in ("probe", "all", "none"):
    raise SystemExit(f"LAB_START_BEFORE_RULES={START_BEFORE_RULES!r}: expected probe, all or none")
PROBE_LABEL = "netpol-drift.io/probe"
# kube-scheduler's filter reasons (v1.36.3: plugins nodeunschedulable, tainttoleration, nodeaffinity) and the
# message its default preemption adds when no victim could help (every reason here is "unresolvable").
UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"  # a cordoned node; DaemonSet pods tolerate it
REASON_CORDONED = "node(s) were unschedulable"
REASON_TAINTED = "node(s) had untolerated taint(s)"
REASON_AFFINITY = "node(s) didn't match Pod's node affinity/selector"
# How long after a racing pod's containers start its IP reaches the API (and so kube-router): the lag with which
# a CNI programs a new pod's rules. kube-router alone, on an idle lab, syncs faster than a Python process starts.
RULES_LAG = float(os.environ.get("LAB_RULES_LAG", "1.0"))
POLL = 0.2
KUBERNETES_SERVICE_ENV = {
    "KUBERNETES_SERVICE_HOST": C.KUBERNETES_SERVICE_IP, "KUBERNETES_SERVICE_PORT": "443",
    "KUBERNETES_SERVICE_PORT_HTTPS": "443", "KUBERNETES_PORT": f"tcp://{C.KUBERNETES_SERVICE_IP}:443",
    "KUBERNETES_PORT_443_TCP": f"tcp://{C.KUBERNETES_SERVICE_IP}:443", "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
    "KUBERNETES_PORT_443_TCP_PORT": "443", "KUBERNETES_PORT_443_TCP_ADDR": C.KUBERNETES_SERVICE_IP,
}

# Runs inside `ip netns exec` (which gives it a private mount namespace): binds the pod's termination message
# file over the container's terminationMessagePath, runs the command, records its exit code atomically.
WRAPPER = r"""
ef=$1 mf=$2 mp=$3 wd=$4; shift 4
if [ -n "$mp" ]; then
  mount --bind "$mf" "$mp" || { echo 126 >"$ef.tmp"; mv "$ef.tmp" "$ef"; exit 126; }
fi
cd "$wd" 2>/dev/null || cd /
"$@"
rc=$?
echo "$rc" >"$ef.tmp"; mv "$ef.tmp" "$ef"
exit "$rc"
"""


# Runs inside a further private mount namespace around the container's command only (the wrapper above keeps
# a writable view for its own files): binds the pod's volumes (`src<TAB>dst<TAB>ro|rw` lines of $1), makes the root
# filesystem read-only when $2 is 1 (readOnlyRootFilesystem: the working directory and HOME become read-only
# too, as in a real container), then runs the command as its user (setpriv, from $3 when not empty).
SANDBOX = r"""
spec=$1 ro=$2 user=$3; shift 3
tab=$(printf '\t')
while IFS="$tab" read -r src dst mode; do
  [ -n "$src" ] || continue
  [ -e "$dst" ] || mkdir -p "$dst" || exit 126
  mount --bind "$src" "$dst" || exit 126
  if [ "$mode" = ro ]; then mount -o remount,bind,ro "$dst" || exit 126; fi
done <"$spec"
if [ "$ro" = 1 ]; then mount -o remount,bind,ro / || exit 126; fi
if [ -n "$user" ]; then exec setpriv $user "$@"; fi
exec "$@"
"""


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def log(msg: str) -> None:
    print(f"{dt.datetime.now().strftime('%H:%M:%S.%f')[:-3]} {msg}", flush=True)


def default_command_map() -> dict[str, list[str]]:
    """Container command[0] (or its basename) -> the argv prefix that runs it on this host."""
    m: dict[str, list[str]] = {}
    if (C.VENV_BIN / "netpol-drift").exists():
        m["netpol-drift"] = [str(C.VENV_BIN / "netpol-drift")]
    extra = os.environ.get("LAB_COMMAND_MAP")  # JSON: {"name": "host command line", ...}
    if extra:
        m.update({k: shlex.split(v) for k, v in json.loads(extra).items()})
    return m


# ------------------------------------------------------------------------------------ scheduling rules
def tolerates(toleration: dict[str, Any], taint: dict[str, Any]) -> bool:
    """Toleration.ToleratesTaint of k8s.io/api core/v1: an empty effect matches every effect, an empty key
    (with Exists) every key; operator Equal (the default) compares values, Exists ignores them. Lt/Gt sit
    behind the TaintTolerationComparisonOperators feature gate, off by default: they match nothing."""
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if toleration.get("key") and toleration["key"] != taint.get("key"):
        return False
    operator = toleration.get("operator") or "Equal"
    if operator == "Exists":
        return True
    return operator == "Equal" and (toleration.get("value") or "") == (taint.get("value") or "")


def untolerated_taint(taints: list[dict[str, Any]], tolerations: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The first taint that keeps the pod off the node (NoSchedule or NoExecute; PreferNoSchedule only
    weighs in scoring) and that no toleration of the pod tolerates."""
    return next((t for t in taints if t.get("effect") in ("NoSchedule", "NoExecute")
                 and not any(tolerates(tol, t) for tol in tolerations)), None)


def fit_error(nodes: int, reasons: dict[str, int]) -> str:
    """kube-scheduler's FitError text for a pod no node fits (every reason here is unresolvable, so its
    preemption adds that it cannot help): "0/2 nodes are available: 2 node(s) were unschedulable. preemption:
    0/2 nodes are available: 2 Preemption is not helpful for scheduling." """
    if not nodes:
        return "no nodes available to schedule pods"
    histogram = ", ".join(sorted(f"{n} {reason}" for reason, n in reasons.items()))
    return (f"0/{nodes} nodes are available: {histogram}. preemption: 0/{nodes} nodes are available: "
            f"{nodes} Preemption is not helpful for scheduling.")


@dataclass
class PodRec:
    uid: str
    namespace: str
    name: str
    node: str
    netns: str
    veth: str
    ip: str
    dir: Path
    containers: list[dict[str, Any]] = field(default_factory=list)
    pgids: dict[str, int] = field(default_factory=dict)
    tokens: list[dict[str, Any]] = field(default_factory=list)  # projected tokens: file, request, refresh_at
    start_time: str = ""
    started_at: str = ""
    started_mono: float = 0.0
    deadline: float | None = None
    ready: bool = True
    running: bool = False
    done: bool = False
    cancel: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def save(self) -> None:
        meta = {k: getattr(self, k) for k in ("uid", "namespace", "name", "node", "netns", "veth", "ip", "containers",
                                              "pgids", "tokens", "start_time", "started_at", "deadline",
                                              "ready", "running")}
        tmp = self.dir / "meta.json.tmp"
        tmp.write_text(json.dumps(meta))
        tmp.replace(self.dir / "meta.json")

    @property
    def lab_node(self) -> C.LabNode:
        return C.node_named(self.node)

    @classmethod
    def load(cls, d: Path) -> PodRec:
        meta = json.loads((d / "meta.json").read_text())
        meta.setdefault("node", C.NODE.name)
        rec = cls(dir=d, **{k: v for k, v in meta.items() if k in cls.__dataclass_fields__})
        rec.started_mono = time.monotonic()  # deadline accounting restarts with the agent (conservative)
        return rec


class Agent:
    def __init__(self, kubeconfig: Path, paths: C.Paths = C.PATHS) -> None:
        self.api = Rest(kubeconfig)
        self.paths = paths
        self.pods: dict[str, PodRec] = {}
        self.busy: set[str] = set()  # uids with a start or delete thread running
        self.gave_up: set[str] = set()  # uids whose start failed (reported Failed, never retried)
        self.rules_lock = threading.Lock()
        self.rules: dict[str, tuple[str, float]] = {}  # node -> (its iptables-save filter, when read)
        self.lock = threading.Lock()
        # Per node: its pod CIDR's addresses (.1 stays unused) and the round-robin cursor.
        self.pool = {n.name: [str(ip) for ip in ipaddress.ip_network(n.pod_cidr).hosts()][1:] for n in C.NODES}
        self.next_ip = dict.fromkeys(self.pool, 0)
        self.spread = 0  # round-robin cursor over the nodes for pods that may run on either
        self.stop = threading.Event()
        self.command_map = default_command_map()
        paths.agent.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------------------------------------ node
    def register_nodes(self) -> None:
        for node in C.NODES:
            self.register_node(node)

    def register_node(self, node: C.LabNode) -> None:
        body = {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": node.name, "labels": {"kubernetes.io/hostname": node.name,
                                                       "kubernetes.io/os": "linux"}},
            "spec": {"podCIDR": node.pod_cidr, "podCIDRs": [node.pod_cidr]},
        }
        if not self.api.exists(f"/api/v1/nodes/{node.name}"):
            self.api.post("/api/v1/nodes", body)
        t = now()
        res = {"cpu": "8", "memory": "16Gi", "pods": "250"}
        self.api.merge_patch(f"/api/v1/nodes/{node.name}/status", {"status": {
            "addresses": [{"type": "InternalIP", "address": node.ip}, {"type": "Hostname", "address": node.name}],
            "capacity": res, "allocatable": res,
            "conditions": [{"type": "Ready", "status": "True", "reason": "LabAgentReady",
                            "message": "lab node agent is running", "lastHeartbeatTime": t,
                            "lastTransitionTime": t}],
        }})
        log(f"node {node.name} registered and Ready")

    def renew_lease(self, node: C.LabNode) -> None:
        """The node's heartbeat, as a kubelet sends it: kube-node-lease/<node>, renewed every 10 s."""
        path = f"/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{node.name}"
        t = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        spec = {"holderIdentity": node.name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": t}
        try:
            self.api.merge_patch(path, {"spec": spec})
        except ApiError as e:
            if e.status != 404:
                raise
            obj = self.api.get(f"/api/v1/nodes/{node.name}")
            self.api.post(path.rsplit("/", 1)[0], {
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": node.name, "ownerReferences": [{
                    "apiVersion": "v1", "kind": "Node", "name": node.name, "uid": obj["metadata"]["uid"]}]},
                "spec": spec})

    def heartbeat(self) -> None:
        while not self.stop.is_set():
            for node in C.NODES:
                try:
                    self.renew_lease(node)
                except Exception as e:  # keep beating through API hiccups; the controller tolerates a few misses
                    log(f"lease renewal of {node.name} failed: {e!r}")
            self.stop.wait(10)

    # ----------------------------------------------------------------------------------------- addressing
    def allocate(self, node: C.LabNode, preferred: str | None) -> str:
        pool = self.pool[node.name]
        with self.lock:
            used = {r.ip for r in self.pods.values()}
            if preferred and preferred in pool and preferred not in used:
                return preferred
            # Round-robin, so a freed IP is not reused at once (stale conntrack / enforcer state).
            start = self.next_ip[node.name]
            for i in range(len(pool)):
                ip = pool[(start + i) % len(pool)]
                if ip not in used:
                    self.next_ip[node.name] = (start + i + 1) % len(pool)
                    return ip
        raise RuntimeError(f"pod CIDR {node.pod_cidr} of {node.name} exhausted")

    # ---------------------------------------------------------------------------------------- reconcile
    def adopt(self) -> None:
        """At start: re-adopt pods we still have state for, remove every pod netns/veth nobody owns."""
        live = {p["metadata"]["uid"]: p for p in self.list_pods()}
        for d in sorted(self.paths.agent.iterdir()) if self.paths.agent.exists() else []:
            try:
                rec = PodRec.load(d)
            except (OSError, ValueError, TypeError):
                shutil.rmtree(d, ignore_errors=True)
                continue
            pod = live.get(rec.uid)
            alive = pod is not None and not pod["metadata"].get("deletionTimestamp") and pod.get(
                "status", {}).get("phase") not in ("Succeeded", "Failed")
            if alive and rec.running and netns.netns_exists(rec.netns):
                self.pods[rec.uid] = rec
                log(f"re-adopted {rec.namespace}/{rec.name} ({rec.ip}, {rec.netns})")
            else:
                log(f"cleaning stale state of {rec.namespace}/{rec.name} ({rec.netns})")
                self.kill(rec)
                netns.pod_down(rec.lab_node, rec.netns, rec.veth, rec.ip)
                shutil.rmtree(d, ignore_errors=True)
        owned = {r.netns for r in self.pods.values()}
        for ns in netns.pod_netns_list():
            if ns not in owned:
                for node in C.NODES:
                    netns.pod_down(node, ns, C.POD_VETH_PREFIX + ns[len(C.POD_NETNS_PREFIX):], None)
                log(f"removed orphan netns {ns}")
        owned_veths = {r.veth for r in self.pods.values()}
        for node in C.NODES:
            out = netns.run(["ip", "-n", node.netns, "-o", "link", "show"], check=False).stdout
            for m in re.finditer(r"^\d+: (" + C.POD_VETH_PREFIX + r"[0-9a-f]+)@", out, re.M):
                if m.group(1) not in owned_veths:
                    netns.run(["ip", "-n", node.netns, "link", "del", m.group(1)], check=False)
                    log(f"removed orphan veth {m.group(1)} in {node.netns}")

    def node_rules(self, node: C.LabNode, max_age: float = 0.08) -> str:
        """iptables-save of the node's namespace, shared by every pod of that node waiting for its kube-router
        (one read per max_age however many pods start at once)."""
        with self.rules_lock:
            rules, at = self.rules.get(node.name, ("", 0.0))
            if time.monotonic() - at > max_age:
                rules = netns.node_iptables("filter", node)  # kube-proxy names pod IPs in nat
                self.rules[node.name] = (rules, time.monotonic())
            return rules

    def list_pods(self) -> list[dict[str, Any]]:
        return self.api.get("/api/v1/pods")["items"]

    def run(self) -> None:
        self.register_nodes()
        threading.Thread(target=self.heartbeat, daemon=True, name="lease").start()
        self.adopt()
        last_node = time.monotonic()
        while not self.stop.is_set():
            try:
                self.sync()
                if time.monotonic() - last_node > 60:
                    self.register_nodes()  # heartbeat; also re-creates a node if someone deleted it
                    last_node = time.monotonic()
            except Exception as e:  # the agent must keep running through API hiccups
                log(f"sync error: {e!r}")
                time.sleep(1)
            self.stop.wait(POLL)

    def sync(self) -> None:
        pods = self.list_pods()
        seen = set()
        ours = {n.name for n in C.NODES}
        nodes: dict[str, dict[str, Any]] | None = None
        for pod in pods:
            md, spec = pod["metadata"], pod["spec"]
            uid = md["uid"]
            seen.add(uid)
            node = spec.get("nodeName")
            if node and node not in ours:
                continue
            if uid in self.busy:
                continue
            phase = pod.get("status", {}).get("phase")
            if md.get("deletionTimestamp"):
                self.spawn(uid, self.delete_pod, pod)
            elif not node:
                if nodes is None:  # read once per pass, and only when some pod waits for a node
                    nodes = self.node_objects()
                self.bind(pod, pods, nodes)
            elif uid not in self.pods and uid not in self.gave_up and phase not in ("Succeeded", "Failed"):
                self.spawn(uid, self.start_pod_or_fail, pod)
        self.live_groups = None  # one /proc scan per pass for all running pods, not one per pod
        for uid, rec in list(self.pods.items()):
            if uid in self.busy:
                continue
            if uid not in seen:
                log(f"{rec.namespace}/{rec.name} vanished from the API: tearing down")
                self.teardown(rec)
            elif rec.running:
                self.check(rec)
                try:
                    self.refresh_tokens(rec)
                except (ApiError, OSError, KeyError, ValueError) as e:  # one pod's token must not stop the pass
                    log(f"{rec.namespace}/{rec.name}: token refresh failed: {e!r}")

    def spawn(self, uid: str, fn: Any, pod: dict[str, Any]) -> None:
        self.busy.add(uid)

        def body() -> None:
            try:
                fn(pod)
            except Exception as e:
                log(f"{fn.__name__} {pod['metadata']['namespace']}/{pod['metadata']['name']}: {e!r}")
            finally:
                self.busy.discard(uid)

        threading.Thread(target=body, daemon=True, name=f"{fn.__name__}-{uid[:8]}").start()

    # --------------------------------------------------------------------------------------------- binding
    def node_objects(self) -> dict[str, dict[str, Any]]:
        """The lab's Node objects by name, as the scheduler sees them (cordon, taints, labels)."""
        return {n["metadata"]["name"]: n for n in self.api.get("/api/v1/nodes")["items"]}

    def feasible(self, pod: dict[str, Any], nodes: dict[str, dict[str, Any]] | None = None
                 ) -> tuple[list[C.LabNode], dict[str, int], int]:
        """kube-scheduler's filters over the lab's nodes, in its order (NodeUnschedulable, TaintToleration,
        NodeAffinity; the first that rejects a node names it): (the nodes that fit, reason -> nodes it rejected,
        how many nodes were considered). `nodes`: the Node objects by name (None: every lab node as registered,
        neither cordoned nor tainted); a lab node without its object is not considered, as with a scheduler.
        Only the agent's own nodes count: it cannot run a pod anywhere else."""
        spec = pod["spec"]
        tolerations = spec.get("tolerations") or []
        selector = spec.get("nodeSelector") or {}
        terms = ((((spec.get("affinity") or {}).get("nodeAffinity") or {})
                  .get("requiredDuringSchedulingIgnoredDuringExecution") or {}).get("nodeSelectorTerms") or [])
        # The DaemonSet controller pins each of its pods with matchFields metadata.name; people use the label.
        hostnames = {v for t in terms for e in [*(t.get("matchExpressions") or []), *(t.get("matchFields") or [])]
                     if e.get("key") in ("kubernetes.io/hostname", "metadata.name") and e.get("operator") == "In"
                     for v in e.get("values") or []}
        fits: list[C.LabNode] = []
        reasons: dict[str, int] = {}
        considered = 0
        for n in C.NODES:
            obj = {} if nodes is None else nodes.get(n.name)
            if obj is None:
                continue
            considered += 1
            node_spec = obj.get("spec") or {}
            labels = (obj.get("metadata") or {}).get("labels") or {"kubernetes.io/hostname": n.name,
                                                                    "kubernetes.io/os": "linux"}
            reason = None
            if node_spec.get("unschedulable") and not any(
                    tolerates(t, {"key": UNSCHEDULABLE_TAINT, "effect": "NoSchedule"}) for t in tolerations):
                reason = REASON_CORDONED
            elif untolerated_taint(node_spec.get("taints") or [], tolerations) is not None:
                reason = REASON_TAINTED
            elif any(labels.get(k) != v for k, v in selector.items()) or (hostnames and n.name not in hostnames):
                reason = REASON_AFFINITY
            if reason:
                reasons[reason] = reasons.get(reason, 0) + 1
            else:
                fits.append(n)
        return fits, reasons, considered

    def schedule(self, pod: dict[str, Any], pods: list[dict[str, Any]],
                 nodes: dict[str, dict[str, Any]] | None = None) -> C.LabNode | None:
        """The node for an unscheduled pod: among the nodes that fit it (feasible), the least loaded one, ties
        taken in turn, so the pods of a namespace spread over both nodes. None when no node fits (the pod stays
        Pending, as with a scheduler)."""
        return self.pick(pod, self.feasible(pod, nodes)[0], pods)

    def pick(self, pod: dict[str, Any], fits: list[C.LabNode], pods: list[dict[str, Any]]) -> C.LabNode | None:
        if not fits:
            return None
        # Spread as the default scheduler's topology spreading does: fewest live pods of the same namespace
        # first (a test's or workload's pods land on both nodes), then fewest pods overall.
        load = {n.name: [0, 0] for n in fits}
        for p in pods:
            node = p["spec"].get("nodeName")
            if node in load and p.get("status", {}).get("phase") not in ("Succeeded", "Failed"):
                load[node][0] += p["metadata"]["namespace"] == pod["metadata"]["namespace"]
                load[node][1] += 1
        least = min(load.values())
        candidates = [n for n in fits if load[n.name] == least]
        with self.lock:
            self.spread += 1
            return candidates[self.spread % len(candidates)]

    def bind(self, pod: dict[str, Any], pods: list[dict[str, Any]], nodes: dict[str, dict[str, Any]]) -> None:
        md = pod["metadata"]
        fits, reasons, considered = self.feasible(pod, nodes)
        node = self.pick(pod, fits, pods)
        if node is None:
            self.report_unschedulable(pod, fit_error(considered, reasons))
            return  # tried again on the next pass: an uncordoned node or a removed taint takes it then
        try:
            self.api.post(f"/api/v1/namespaces/{md['namespace']}/pods/{md['name']}/binding", {
                "apiVersion": "v1", "kind": "Binding", "metadata": {"name": md["name"], "uid": md["uid"]},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node.name}})
            log(f"bound {md['namespace']}/{md['name']} to {node.name}")
            pod["spec"]["nodeName"] = node.name  # the next pod of this pass counts it
        except ApiError as e:
            if e.status not in (404, 409):
                raise

    def report_unschedulable(self, pod: dict[str, Any], message: str) -> None:
        """PodScheduled=False, reason Unschedulable, kube-scheduler's message, on the status subresource (as
        kube-scheduler's updatePod does), only when it changes: the agent retries every pass, and a status
        write each time would wake every watcher of the pod. The binding sets PodScheduled=True later."""
        md = pod["metadata"]
        current = next((c for c in (pod.get("status") or {}).get("conditions") or []
                        if c.get("type") == "PodScheduled"), {})
        if (current.get("status"), current.get("reason"), current.get("message")) == ("False", "Unschedulable",
                                                                                      message):
            return
        since = current.get("lastTransitionTime") if current.get("status") == "False" else None
        condition = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
                     "lastProbeTime": None, "lastTransitionTime": since or now()}
        try:  # strategic merge: conditions merge by type, so the pod's other conditions stay as they are
            self.api.request("PATCH", f"/api/v1/namespaces/{md['namespace']}/pods/{md['name']}/status",
                             {"status": {"conditions": [condition]}},
                             content_type="application/strategic-merge-patch+json")
        except ApiError as e:
            if e.status not in (404, 409):
                raise
            return
        log(f"{md['namespace']}/{md['name']}: unschedulable: {message}")

    # ------------------------------------------------------------------------------------------- start pod
    def status_path(self, rec: PodRec) -> str:
        return f"/api/v1/namespaces/{rec.namespace}/pods/{rec.name}/status"

    def start_pod_or_fail(self, pod: dict[str, Any]) -> None:
        """Starts the pod; on error tears it down and reports it Failed, once (never a retry loop)."""
        uid = pod["metadata"]["uid"]
        try:
            self.start_pod(pod)
        except Exception as e:
            self.gave_up.add(uid)
            rec = self.pods.get(uid)
            if rec is None:
                raise
            log(f"{rec.namespace}/{rec.name}: could not start: {e!r}")
            self.teardown(rec)
            self.patch_status(rec, "Failed", exits={c["name"]: 128 for c in rec.containers}, reason="LabAgentError")
            raise

    def start_pod(self, pod: dict[str, Any]) -> None:
        md, spec = pod["metadata"], pod["spec"]
        uid = md["uid"]
        ns_name, veth = netns.pod_names(uid)
        node = C.node_named(spec["nodeName"])
        ip = self.allocate(node, pod.get("status", {}).get("podIP"))
        d = self.paths.agent / uid
        d.mkdir(parents=True, exist_ok=True)
        rec = PodRec(uid=uid, namespace=md["namespace"], name=md["name"], node=node.name, netns=ns_name, veth=veth,
                     ip=ip, dir=d, containers=spec.get("containers", []), start_time=now())
        rec.ready = not any(c.get("readinessProbe") for c in rec.containers)
        if spec.get("activeDeadlineSeconds"):
            rec.deadline = float(spec["activeDeadlineSeconds"])
        with self.lock:
            self.pods[uid] = rec
        rec.save()
        netns.pod_up(node, ns_name, veth, ip)
        log(f"{rec.namespace}/{rec.name}: netns {ns_name} ip {ip} on {node.name}")
        racing = START_BEFORE_RULES == "all" or (
            START_BEFORE_RULES == "probe" and (md.get("labels") or {}).get(PROBE_LABEL) == "true")
        if not racing:
            self.patch_status(rec, "Pending", waiting="ContainerCreating")
        # else: like a kubelet, whose status sync publishes a new pod's IP about when its containers start, the
        # IP reaches the API (and so kube-router) only once the containers run.
        t0 = time.monotonic()
        pattern = re.compile(r"(?<![\d.])" + re.escape(ip) + r"(?![\d])")
        synced = False
        while not racing and time.monotonic() - t0 < KUBE_ROUTER_WAIT and not rec.cancel.is_set():
            try:
                if pattern.search(self.node_rules(node)):
                    synced = True
                    break
            except Exception as e:
                log(f"iptables-save failed: {e!r}")
            time.sleep(0.1)
        if rec.cancel.is_set():
            return
        if racing:
            # Said in a fixed form (tests read it): whether the containers really start before the rules.
            present = bool(pattern.search(self.node_rules(node, max_age=0)))
            log(f"{rec.namespace}/{rec.name}: starting before kube-router's rules "
                f"(LAB_START_BEFORE_RULES={START_BEFORE_RULES}): rules {'present' if present else 'absent'}")
        else:
            log(f"{rec.namespace}/{rec.name}: kube-router rules "
                + (f"present after {time.monotonic() - t0:.2f}s" if synced else f"ABSENT after {KUBE_ROUTER_WAIT}s"))
        volumes = self.prepare_volumes(rec, pod)
        for c in rec.containers:
            rec.pgids[c["name"]] = self.exec_container(rec, c, pod, volumes)
        self.wait_listeners(rec)
        if racing and rec.cancel.wait(RULES_LAG):
            return
        rec.started_at = now()
        rec.started_mono = time.monotonic()
        rec.running = True
        rec.save()
        self.patch_status(rec, "Running")
        log(f"{rec.namespace}/{rec.name}: running {[self.argv(c) for c in rec.containers]}")

    def is_listener(self, c: dict[str, Any]) -> bool:
        cmd, args = list(c.get("command") or []), list(c.get("args") or [])
        return (not cmd and not args) or cmd == [C.LISTENER_COMMAND]

    def wait_listeners(self, rec: PodRec, timeout: float = 10.0) -> None:
        """Lab listeners report Running only once their sockets are bound (they print a line then)."""
        t0 = time.monotonic()
        for c in rec.containers:
            if not self.is_listener(c):
                continue
            f = rec.dir / f"{c['name']}.log"
            while time.monotonic() - t0 < timeout and not rec.cancel.is_set():
                if b"lab-listener:" in f.read_bytes() or (rec.dir / f"{c['name']}.exit").exists():
                    break
                time.sleep(0.02)

    def argv(self, c: dict[str, Any]) -> list[str]:
        cmd, args = list(c.get("command") or []), list(c.get("args") or [])
        if self.is_listener(c):
            argv = [str(C.PYTHON), str(Path(__file__).with_name("listener.py"))]
            for p in c.get("ports") or []:
                proto = p.get("protocol", "TCP")
                if proto in ("TCP", "UDP"):
                    argv += [f"--{proto.lower()}", str(p["containerPort"])]
            return argv
        argv = cmd + args
        mapped = self.command_map.get(argv[0]) or self.command_map.get(os.path.basename(argv[0]))
        return mapped + argv[1:] if mapped else argv

    def env(self, rec: PodRec, c: dict[str, Any], pod: dict[str, Any]) -> dict[str, str]:
        env = {
            "PATH": f"{C.VENV_BIN}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "HOME": str(rec.dir), "HOSTNAME": rec.name, "LANG": "C.UTF-8",
            procs.MARKER: str(self.paths.root), "LAB_PROC": f"pod:{rec.uid}", "LAB_POD_UID": rec.uid,
            **KUBERNETES_SERVICE_ENV,  # a kubelet gives these to every pod, service links or not
        }
        fields = {"metadata.name": rec.name, "metadata.namespace": rec.namespace, "metadata.uid": rec.uid,
                  "spec.nodeName": rec.node, "status.podIP": rec.ip, "status.hostIP": rec.lab_node.ip,
                  "spec.serviceAccountName": pod["spec"].get("serviceAccountName", "default")}
        for e in c.get("env") or []:
            if "value" in e:
                env[e["name"]] = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                                        lambda m: env.get(m.group(1), m.group(0)), str(e["value"]))
            elif (ref := (e.get("valueFrom") or {}).get("fieldRef")) and ref.get("fieldPath") in fields:
                env[e["name"]] = fields[ref["fieldPath"]]
            elif key_ref := self.key_ref(rec, e.get("valueFrom") or {}):
                if key_ref[1] is not None:
                    env[e["name"]] = key_ref[1]
            elif e.get("valueFrom") is None:
                env[e["name"]] = ""
        return env

    def key_ref(self, rec: PodRec, source: dict[str, Any]) -> tuple[str, str | None] | None:
        """An env var's secretKeyRef/configMapKeyRef as a kubelet resolves it: (kind, value), value None when
        an optional key or object is missing; None for other sources. A required one missing fails the pod."""
        kind = "secrets" if "secretKeyRef" in source else "configmaps" if "configMapKeyRef" in source else None
        if kind is None:
            return None
        ref = source.get("secretKeyRef") or source.get("configMapKeyRef")
        obj = self.get_soon(f"/api/v1/namespaces/{rec.namespace}/{kind}/{ref['name']}",
                            timeout=0 if ref.get("optional") else 10)
        value = ((obj or {}).get("data") or {}).get(ref["key"])
        if value is None and not ref.get("optional"):
            raise RuntimeError(f"{kind[:-1]} {rec.namespace}/{ref['name']} has no key {ref['key']} (env of the pod)")
        if value is not None and kind == "secrets":
            value = base64.b64decode(value).decode()
        return kind, value

    # --------------------------------------------------------------------- volumes, user, read-only root
    def prepare_volumes(self, rec: PodRec, pod: dict[str, Any]) -> dict[str, Path]:
        """Realizes each volume some container mounts as a host directory (as a kubelet's volume plugins
        would), once per pod; returns volume name -> its directory. configMap/secret/downwardAPI and projected
        (ServiceAccount tokens from the TokenRequest API, kube-root-ca.crt, ...) are written into the pod's
        dir; emptyDir is per pod, mode 0777 like a kubelet's; persistentVolumeClaim is per namespace and claim,
        kept until `down`, so that the next pod of a CronJob sees what the last one wrote. fsGroup: the group
        owns the volume and may write it (setgid), as a kubelet arranges for volumes that support ownership.
        An unsupported volume kind fails the pod with its name."""
        spec = pod["spec"]
        fs_group = (spec.get("securityContext") or {}).get("fsGroup")
        mounted = {m["name"] for c in rec.containers for m in c.get("volumeMounts") or []}
        out: dict[str, Path] = {}
        for v in spec.get("volumes") or []:
            name = v["name"]
            if name not in mounted:
                continue
            if "persistentVolumeClaim" in v:
                d = self.paths.root / "pvc" / rec.namespace / v["persistentVolumeClaim"]["claimName"]
            else:
                d = rec.dir / "volumes" / name
            d.mkdir(parents=True, exist_ok=True)
            if "projected" in v:
                for src in v["projected"].get("sources") or []:
                    self.volume_source(rec, pod, src, d)
            elif "emptyDir" in v:
                d.chmod(0o777)
            elif kind := next((k for k in ("configMap", "secret", "downwardAPI") if k in v), None):
                self.volume_source(rec, pod, {kind: v[kind]}, d)
            elif "persistentVolumeClaim" not in v:
                raise RuntimeError(f"volume {name}: kind {sorted(set(v) - {'name'})} not supported by the lab")
            if fs_group is not None and "emptyDir" not in v:
                for f in [d, *d.rglob("*")]:
                    os.chown(f, -1, int(fs_group))
                    f.chmod((f.stat().st_mode | 0o060 | (0o2010 if f.is_dir() else 0)) & 0o7777)
            out[name] = d
        return out

    def volume_source(self, rec: PodRec, pod: dict[str, Any], src: dict[str, Any], d: Path) -> None:
        base = f"/api/v1/namespaces/{rec.namespace}"
        if sat := src.get("serviceAccountToken"):
            req = {"audiences": [sat["audience"]] if sat.get("audience") else [],
                   "expirationSeconds": int(sat.get("expirationSeconds") or 3600),
                   "sa": pod["spec"].get("serviceAccountName") or "default"}
            rec.tokens.append({"file": str(d / sat["path"]), "request": req, "refresh_at": 0})
            self.refresh_tokens(rec)
            return
        if ref := src.get("configMap") or src.get("secret"):
            kind = "configmaps" if "configMap" in src else "secrets"
            name = ref.get("name") or ref.get("secretName")
            obj = self.get_soon(f"{base}/{kind}/{name}")
            if obj is None:
                if ref.get("optional"):
                    return
                raise RuntimeError(f"{kind[:-1]} {rec.namespace}/{name} not found (mounted by the pod)")
            data = {k: v.encode() for k, v in (obj.get("data") or {}).items()} if kind == "configmaps" else {
                k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
            items = ref.get("items") or [{"key": k, "path": k} for k in data]
            for it in items:
                write_atomic(d / it["path"], data[it["key"]])
            return
        if dapi := src.get("downwardAPI"):
            md = pod["metadata"]
            for it in dapi.get("items") or []:
                fp = (it.get("fieldRef") or {}).get("fieldPath", "")
                if fp in ("metadata.labels", "metadata.annotations"):
                    value = "\n".join(f'{k}="{v}"' for k, v in sorted((md.get(fp[9:]) or {}).items()))
                else:
                    value = {"metadata.name": md["name"], "metadata.namespace": md["namespace"],
                             "metadata.uid": md["uid"]}.get(fp, "")
                write_atomic(d / it["path"], value.encode())
            return
        raise RuntimeError(f"projected volume source {sorted(src)} not supported by the lab")

    def get_soon(self, path: str, timeout: float = 10.0) -> dict[str, Any] | None:
        """GET that waits through 404s for a while, as a kubelet retries a volume: a new namespace's
        kube-root-ca.crt comes a moment after the namespace. None if it never appears."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                return self.api.get(path)
            except ApiError as e:
                if e.status != 404 or time.monotonic() > deadline:
                    if e.status == 404:
                        return None
                    raise
            time.sleep(0.2)

    def refresh_tokens(self, rec: PodRec) -> None:
        """TokenRequest for each projected token that is due: bound to the pod, refreshed at 80% of its life."""
        for t in rec.tokens:
            if time.time() < t["refresh_at"]:
                continue
            t["refresh_at"] = time.time() + 10  # if this request fails, the next pass retries in 10 s
            req = t["request"]
            res = self.api.post(f"/api/v1/namespaces/{rec.namespace}/serviceaccounts/{req['sa']}/token", {
                "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"audiences": req["audiences"], "expirationSeconds": req["expirationSeconds"],
                         "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": rec.name, "uid": rec.uid}}})
            write_atomic(Path(t["file"]), res["status"]["token"].encode())
            expires = dt.datetime.fromisoformat(res["status"]["expirationTimestamp"].replace("Z", "+00:00"))
            life = min(expires.timestamp() - time.time(), 24 * 3600)  # a kubelet also refreshes daily
            t["refresh_at"] = time.time() + 0.8 * life
            if rec.running:
                rec.save()

    def mount_point(self, path: str, is_dir: bool) -> bool:
        """Makes sure a mount target exists on the host (what it creates is recorded for `down` to remove);
        False when it cannot be made."""
        target = Path(path)
        if target.exists():
            return True
        missing = [a for a in [target, *target.parents] if not a.exists()][::-1]
        try:
            for a in missing:
                if a == target and not is_dir:
                    a.touch()
                else:
                    a.mkdir(exist_ok=True)
                with open(self.paths.created_files, "a") as f:
                    f.write(f"{a}\n")
        except OSError as e:
            log(f"cannot create mount point {path}: {e}")
            return False
        return True

    def sandbox(self, rec: PodRec, c: dict[str, Any], pod: dict[str, Any], volumes: dict[str, Path]) -> list[str]:
        """The argv prefix that gives the container its volumes, read-only root and user (or [] when it has
        none of them): every volume mount is made here, in a mount namespace of the container's own."""
        pod_sc = pod["spec"].get("securityContext") or {}
        sc = {**pod_sc, **(c.get("securityContext") or {})}
        lines = []
        for m in c.get("volumeMounts") or []:
            src = volumes[m["name"]] / m.get("subPath", "")
            if not self.mount_point(m["mountPath"], is_dir=src.is_dir()):
                raise RuntimeError(f"container {c['name']}: cannot create mountPath {m['mountPath']}")
            lines.append(f"{src}\t{m['mountPath']}\t{'ro' if m.get('readOnly') else 'rw'}")
        # A real container's program lives in its image; here it lives in the checkout (and its venv). A volume
        # mounted over an ancestor of them (an emptyDir at /tmp over a clone under /tmp) would hide the program:
        # keep a view of each under the pod's state dir first, and bind it back over the volume afterwards.
        hidden = [p for p in {C.REPO, C.VENV_BIN.parent}
                  if any(p == Path(m["mountPath"]) or Path(m["mountPath"]) in p.parents
                         for m in c.get("volumeMounts") or [])]
        for i, path in enumerate(sorted(hidden)):
            keep = rec.dir / f"keep-{i}"
            keep.mkdir(exist_ok=True)
            lines.insert(0, f"{path}\t{keep}\trw")
            lines.append(f"{keep}\t{path}\trw")
        ro = bool(sc.get("readOnlyRootFilesystem"))
        user = ""
        if sc.get("runAsUser") is not None:
            uid, gid = int(sc["runAsUser"]), int(sc.get("runAsGroup", sc["runAsUser"]))
            groups = [str(g) for g in [pod_sc.get("fsGroup"), *(pod_sc.get("supplementalGroups") or [])]
                      if g is not None]
            user = f"--reuid {uid} --regid {gid} " + (f"--groups {','.join(groups)}" if groups else "--clear-groups")
        if not lines and not ro and not user:
            return []
        spec_file = rec.dir / f"{c['name']}.mounts"
        spec_file.write_text("".join(line + "\n" for line in lines))
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", SANDBOX, "sh", str(spec_file),
                "1" if ro else "0", user]

    def exec_container(self, rec: PodRec, c: dict[str, Any], pod: dict[str, Any], volumes: dict[str, Path]) -> int:
        name = c["name"]
        msg_file = rec.dir / f"{name}.termination-log"
        msg_file.write_bytes(b"")
        msg_file.chmod(0o666)  # the container's user writes it, whoever that is (a kubelet arranges the same)
        rec.dir.chmod(0o755)
        prefix = self.sandbox(rec, c, pod, volumes)
        target = c.get("terminationMessagePath", "/dev/termination-log")
        if target and not (os.path.isdir(os.path.dirname(target)) and self.mount_point(target, is_dir=False)):
            log(f"{rec.namespace}/{rec.name}: no directory for terminationMessagePath {target}")
            target = ""
        exit_file = rec.dir / f"{name}.exit"
        exit_file.unlink(missing_ok=True)
        argv = ["ip", "netns", "exec", rec.netns, "sh", "-c", WRAPPER, "sh", str(exit_file), str(msg_file),
                target or "", c.get("workingDir") or str(rec.dir), *prefix, *self.argv(c)]
        with open(rec.dir / f"{name}.log", "ab") as out:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    env=self.env(rec, c, pod), start_new_session=True)
        threading.Thread(target=proc.wait, daemon=True).start()  # reap; the exit code comes from exit_file
        return proc.pid

    # ------------------------------------------------------------------------------------------ lifecycle
    def check(self, rec: PodRec) -> None:
        exits = {}
        for c in rec.containers:
            f = rec.dir / f"{c['name']}.exit"
            if f.exists():
                exits[c["name"]] = int(f.read_text().strip() or 1)
                continue
            # The pass-wide scan may predate a process started since: only a fresh scan may say it is gone.
            if getattr(self, "live_groups", None) is None or rec.pgids.get(c["name"]) not in self.live_groups:
                self.live_groups = procs.live_groups()
            if rec.pgids.get(c["name"]) not in self.live_groups:
                time.sleep(0.05)
                exits[c["name"]] = int(f.read_text().strip() or 1) if f.exists() else 137
        over = rec.deadline is not None and time.monotonic() - rec.started_mono > rec.deadline
        if len(exits) == len(rec.containers):
            # Status patch and sandbox teardown in a thread: pods that end together must not queue behind each
            # other in the sync loop (~0.15 s each); rec.running goes False now so no pass checks it twice.
            rec.running = False
            meta = {"metadata": {"namespace": rec.namespace, "name": rec.name}}
            self.spawn(rec.uid, lambda _pod: self.finish(rec, exits, None), meta)
        elif over:
            self.kill(rec)
            self.finish(rec, {c["name"]: exits.get(c["name"], 137) for c in rec.containers}, "DeadlineExceeded")

    def finish(self, rec: PodRec, exits: dict[str, int], reason: str | None) -> None:
        rec.running = False
        rec.done = True
        phase = "Succeeded" if reason is None and all(v == 0 for v in exits.values()) else "Failed"
        self.patch_status(rec, phase, exits=exits, reason=reason)
        log(f"{rec.namespace}/{rec.name}: {phase} {exits}" + (f" ({reason})" if reason else ""))
        self.teardown(rec)  # like a kubelet tearing down a finished pod's sandbox

    def message(self, rec: PodRec, c: dict[str, Any], code: int) -> str:
        raw = (rec.dir / f"{c['name']}.termination-log").read_bytes()[:TERMINATION_MESSAGE_LIMIT]
        if not raw and code != 0 and c.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            try:
                raw = (rec.dir / f"{c['name']}.log").read_bytes()[-2048:]
            except OSError:
                raw = b""
        return raw.decode("utf-8", errors="replace")

    def patch_status(self, rec: PodRec, phase: str, waiting: str | None = None,
                     exits: dict[str, int] | None = None, reason: str | None = None) -> None:
        t = now()
        running = phase == "Running"
        ready = running and rec.ready
        cond = [
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": rec.start_time},
            {"type": "Initialized", "status": "True", "lastTransitionTime": rec.start_time},
            {"type": "ContainersReady", "status": "True" if ready else "False", "lastTransitionTime": t},
            {"type": "Ready", "status": "True" if ready else "False", "lastTransitionTime": t},
        ]
        statuses = []
        for c in rec.containers:
            st: dict[str, Any] = {"name": c["name"], "image": c.get("image", ""), "imageID": "",
                                  "containerID": f"lab://{rec.uid}/{c['name']}", "restartCount": 0,
                                  "ready": ready, "started": running}
            if exits is not None:
                code = exits[c["name"]]
                st["state"] = {"terminated": {
                    "exitCode": code, "reason": reason or ("Completed" if code == 0 else "Error"),
                    "startedAt": rec.started_at or t, "finishedAt": t,
                    "message": self.message(rec, c, code), "containerID": st["containerID"]}}
            elif running:
                st["state"] = {"running": {"startedAt": rec.started_at}}
            else:
                st["state"] = {"waiting": {"reason": waiting or "ContainerCreating"}}
            statuses.append(st)
        status: dict[str, Any] = {
            "phase": phase, "hostIP": rec.lab_node.ip, "hostIPs": [{"ip": rec.lab_node.ip}], "podIP": rec.ip,
            "podIPs": [{"ip": rec.ip}], "startTime": rec.start_time, "conditions": cond,
            "containerStatuses": statuses,
        }
        if reason:
            status["reason"] = reason
        try:
            self.api.merge_patch(self.status_path(rec), {"status": status})
        except ApiError as e:
            if e.status != 404:
                raise

    def kill(self, rec: PodRec, grace: float = 2.0) -> None:
        live = procs.live_groups()
        groups = [g for g in rec.pgids.values() if g in live and self._ours(g, rec.uid)]
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for g in groups:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(g, sig)
            deadline = time.monotonic() + grace
            while time.monotonic() < deadline and set(groups) & procs.live_groups():
                time.sleep(0.05)
            groups = sorted(set(groups) & procs.live_groups())
            if not groups:
                return

    @staticmethod
    def _ours(pgid: int, uid: str) -> bool:
        """The group leader (if still there) carries the pod's uid in its environment."""
        try:
            env = Path(f"/proc/{pgid}/environ").read_bytes()
        except OSError:
            return True  # leader gone, group members remain: the pgid cannot have been reused meanwhile
        return f"LAB_POD_UID={uid}".encode() in env.split(b"\0")

    def teardown(self, rec: PodRec) -> None:
        rec.cancel.set()
        with rec.lock:
            self.kill(rec)
            netns.pod_down(rec.lab_node, rec.netns, rec.veth, rec.ip)
            shutil.rmtree(rec.dir, ignore_errors=True)
            with self.lock:
                self.pods.pop(rec.uid, None)

    def delete_pod(self, pod: dict[str, Any]) -> None:
        md = pod["metadata"]
        rec = self.pods.get(md["uid"])
        if rec:
            self.teardown(rec)
            log(f"{rec.namespace}/{rec.name}: deleted (netns {rec.netns}, ip {rec.ip} freed)")
        self.api.delete(f"/api/v1/namespaces/{md['namespace']}/pods/{md['name']}",
                        {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0,
                         "preconditions": {"uid": md["uid"]}})


def write_atomic(path: Path, data: bytes) -> None:
    """Replaces the file in one rename, so a process reading a mounted token never sees half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, 0o644)
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.lab.agent", description="the lab node agent")
    ap.add_argument("--kubeconfig", type=Path, default=C.PATHS.admin_kubeconfig)
    a = ap.parse_args(argv)
    agent = Agent(a.kubeconfig)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: agent.stop.set())
    log(f"lab node agent starting (pid {os.getpid()}, command map {agent.command_map})")
    agent.run()
    log("lab node agent stopped (pod processes and namespaces stay; a restarted agent re-adopts them)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""pytest fixtures and helpers for tests that run against the lab.

Job: a session-scoped `lab` (brought up if not running, taken down at the end only if this session brought it
up), a fresh namespace per test (`lab_namespace`), and helpers to apply manifests and real workloads
(Deployments, StatefulSets: kube-controller-manager makes their pods), wait for pods and rollouts, wait for
kube-router to have synced, and probe TCP/UDP from inside a pod's network namespace. Must not: skip when the
lab cannot run (lab tests FAIL with the reason, e.g. "needs root"), or reuse a namespace between tests.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import subprocess
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from . import config as C
from . import control, kube, netns, procs
from .rest import Rest

PROBE = Path(__file__).with_name("probe.py")


def pod_manifest(name: str, labels: Mapping[str, str] | None = None, tcp: Iterable[int | tuple[str, int]] = (80,),
                 udp: Iterable[int | tuple[str, int]] = (), command: list[str] | None = None,
                 **spec: Any) -> dict[str, Any]:
    """A lab pod: by default the lab listener with real listeners on the given ports ((name, port) = named)."""
    ports = []
    for proto, items in (("TCP", tcp), ("UDP", udp)):
        for item in items:
            pname, port = item if isinstance(item, tuple) else (None, item)
            ports.append({"containerPort": port, "protocol": proto, **({"name": pname} if pname else {})})
    container = {"name": "main", "image": "lab.local/listener", "command": command or [C.LISTENER_COMMAND],
                 "ports": ports}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": dict(labels or {})},
            "spec": {"containers": [container], "restartPolicy": "Never", **spec}}


def workload_manifest(kind: str, name: str, labels: Mapping[str, str] | None = None,
                      tcp: Iterable[int | tuple[str, int]] = (80,), udp: Iterable[int | tuple[str, int]] = (),
                      replicas: int = 1, command: list[str] | None = None,
                      selector: Mapping[str, str] | None = None, node: str | None = None) -> dict[str, Any]:
    """A Deployment or StatefulSet of lab listeners (pod_manifest's ports); selector: the template's labels
    unless given (relabelling a pod out of its workload's selector makes the controller let it go); node: a
    nodeSelector on kubernetes.io/hostname (otherwise the agent spreads the replicas over the nodes)."""
    labels = dict(labels or {"app": name})
    pod = pod_manifest(name, labels, tcp=tcp, udp=udp, command=command)
    if node:
        pod["spec"]["nodeSelector"] = {"kubernetes.io/hostname": node}
    pod["spec"]["restartPolicy"] = "Always"  # the only one a workload's template may have
    pod["spec"]["terminationGracePeriodSeconds"] = 2
    spec: dict[str, Any] = {"replicas": replicas, "selector": {"matchLabels": dict(selector or labels)},
                            "template": {"metadata": {"labels": labels}, "spec": pod["spec"]}}
    if kind == "StatefulSet":
        spec["serviceName"] = name
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def deployment(name: str, labels: Mapping[str, str] | None = None, **kw: Any) -> dict[str, Any]:
    return workload_manifest("Deployment", name, labels, **kw)


def statefulset(name: str, labels: Mapping[str, str] | None = None, **kw: Any) -> dict[str, Any]:
    return workload_manifest("StatefulSet", name, labels, **kw)


class Lab:
    """Handle on the running lab for tests (admin identity unless told otherwise)."""

    def __init__(self, paths: C.Paths = C.PATHS) -> None:
        self.paths = paths
        self.kubeconfig = paths.admin_kubeconfig
        self.monitor_kubeconfig = paths.monitor_kubeconfig
        self.api = Rest(self.kubeconfig)

    # ------------------------------------------------------------------------------------------ objects
    def apply(self, manifests: Any, namespace: str | None = None) -> list[Any]:
        """Server-side apply of YAML text, a dict, or dicts (`kind: List` too)."""
        return kube.apply(manifests, namespace=namespace, kubeconfig=self.kubeconfig)

    def delete(self, manifests: Any, namespace: str | None = None) -> None:
        kube.delete(manifests, namespace=namespace, kubeconfig=self.kubeconfig)

    def create_namespace(self, name: str, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Creates the namespace and waits for its `default` ServiceAccount (the ServiceAccount admission
        plugin rejects pods until kube-controller-manager has made it)."""
        ns = self.api.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                   "metadata": {"name": name, "labels": dict(labels or {})}})
        self.wait_service_account(name)
        return ns

    def wait_service_account(self, namespace: str, name: str = "default", timeout: float = 30.0) -> None:
        _poll(f"ServiceAccount {namespace}/{name}",
              lambda: self.api.exists(f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}"), timeout)

    def delete_namespace(self, name: str, timeout: float = 60.0) -> None:
        """Deletes the namespace and waits until kube-controller-manager's namespace controller has removed
        everything in it (the agent finishes its pods) and the namespace itself."""
        self.api.delete(f"/api/v1/namespaces/{name}")
        self.wait_gone(f"/api/v1/namespaces/{name}", timeout)

    def wait_gone(self, path: str, timeout: float = 30.0) -> None:
        _poll(f"{path} to be gone", lambda: not self.api.exists(path), timeout)

    def pod(self, namespace: str, name: str) -> dict[str, Any]:
        return self.api.get(f"/api/v1/namespaces/{namespace}/pods/{name}")

    # ------------------------------------------------------------------------------------------- waiting
    def wait_running(self, namespace: str, name: str, timeout: float = 30.0) -> dict[str, Any]:
        """Waits until the pod is Running with a podIP (the agent only says Running once kube-router has
        rules for the pod and lab listeners are bound); fails if it ends first."""

        def check() -> dict[str, Any] | None:
            pod = self.pod(namespace, name)
            phase = pod.get("status", {}).get("phase")
            if phase in ("Succeeded", "Failed"):
                raise AssertionError(f"pod {namespace}/{name} ended ({phase}) before running: {pod['status']}")
            return pod if phase == "Running" and pod["status"].get("podIP") else None

        return _poll(f"pod {namespace}/{name} Running with an IP", check, timeout)

    def wait_finished(self, namespace: str, name: str, timeout: float = 30.0) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            pod = self.pod(namespace, name)
            return pod if pod.get("status", {}).get("phase") in ("Succeeded", "Failed") else None

        return _poll(f"pod {namespace}/{name} to finish", check, timeout)

    def run_pods(self, namespace: str, manifests: Iterable[dict[str, Any]], timeout: float = 30.0
                 ) -> dict[str, dict[str, Any]]:
        """Creates the pods and waits until every one of them is Running; returns name -> pod."""
        names = []
        for m in manifests:
            self.api.post(f"/api/v1/namespaces/{namespace}/pods", m)
            names.append(m["metadata"]["name"])
        return {n: self.wait_running(namespace, n, timeout) for n in names}

    def pods(self, namespace: str, selector: Mapping[str, str]) -> list[dict[str, Any]]:
        sel = ",".join(f"{k}={v}" for k, v in selector.items())
        return self.api.get(f"/api/v1/namespaces/{namespace}/pods", labelSelector=sel)["items"]

    def wait_rollout(self, namespace: str, kind: str, name: str, timeout: float = 60.0) -> list[dict[str, Any]]:
        """Waits until the Deployment/StatefulSet has rolled out (every replica updated, ready and available,
        no old or terminating pod left) and returns its pods, each Running with an IP, sorted by name."""
        path = f"/apis/apps/v1/namespaces/{namespace}/{kind.lower()}s/{name}"

        def check() -> list[dict[str, Any]] | None:
            obj = self.api.get(path)
            st, want = obj.get("status", {}), obj["spec"].get("replicas", 1)
            if st.get("observedGeneration", 0) < obj["metadata"]["generation"]:
                return None
            counts = [st.get("updatedReplicas", 0), st.get("readyReplicas", 0), st.get("replicas", 0)]
            if kind == "Deployment":
                counts.append(st.get("availableReplicas", 0))
            elif st.get("currentRevision") != st.get("updateRevision"):
                return None
            if counts != [want] * len(counts):
                return None
            pods = [p for p in self.pods(namespace, obj["spec"]["selector"]["matchLabels"])
                    if any(o.get("controller") and o["kind"] in ("ReplicaSet", "StatefulSet")
                           for o in p["metadata"].get("ownerReferences") or [])]  # not probe pods
            live = [p for p in pods if not p["metadata"].get("deletionTimestamp")
                    and p.get("status", {}).get("phase") == "Running" and p["status"].get("podIP")]
            return sorted(live, key=lambda p: p["metadata"]["name"]) if len(live) == want == len(pods) else None

        if not self.api.get(path)["spec"].get("replicas", 1):
            _poll(f"{kind} {namespace}/{name} scaled to 0", lambda: check() == [], timeout)
            return []
        return _poll(f"{kind} {namespace}/{name} rolled out", check, timeout)

    def run_workloads(self, namespace: str, manifests: Iterable[dict[str, Any]], timeout: float = 60.0
                      ) -> dict[str, list[dict[str, Any]]]:
        """Applies Deployments/StatefulSets and waits for each rollout; returns name -> its running pods."""
        manifests = list(manifests)
        self.apply(manifests, namespace=namespace)
        return {m["metadata"]["name"]: self.wait_rollout(namespace, m["kind"], m["metadata"]["name"], timeout)
                for m in manifests}

    def wait_pod_synced(self, pod_ip: str, timeout: float = 20.0) -> None:
        """The kube-router of the pod's node has rules that mention the pod IP."""
        pattern = re.compile(r"(?<![\d.])" + re.escape(pod_ip) + r"(?!\d)")
        _poll(f"kube-router rules for {pod_ip}", lambda: pattern.search(netns.node_iptables_of(pod_ip, "filter")),
              timeout)

    def wait_synced(self, since: float | None = None, timeout: float = 20.0, quiet: float = 0.3,
                    nodes: Iterable[C.LabNode] | None = None) -> None:
        """The kube-router of every node (default: every node whose kube-router runs) has finished a policy
        sync that started after `since` (default: now; pass the time taken just before your API changes) and
        started none in the `quiet` seconds after it, so the firewalls reflect those changes. Needs a real
        change after `since`, or it times out (any policy, namespace or pod change makes every node sync).
        kube-router logs `Starting sync of iptables with version: <unix ns>` and `sync iptables took ...`."""
        since_ns = int((since if since is not None else time.time()) * 1e9)
        if nodes is None:
            nodes = [n for n in C.NODES if procs.pid_of(n.proc("kube-router"), self.paths)]
        start_re = re.compile(r"Starting sync of iptables with version: (\d+)")

        def synced(log: Path) -> bool:
            with open(log, "rb") as f:  # the tail is enough (a sync logs ~1.5 KB) and the log only grows
                f.seek(max(0, f.seek(0, os.SEEK_END) - 256 * 1024))
                text = f.read().decode(errors="replace")
            starts = list(start_re.finditer(text))
            if not starts or int(starts[-1].group(1)) < since_ns:
                return False  # no sync started after the change yet
            if "sync iptables took" not in text[starts[-1].end():]:
                return False  # one is running
            return time.time_ns() - int(starts[-1].group(1)) > quiet * 1e9  # and none was requested since

        logs = [self.paths.log(n.proc("kube-router")) for n in nodes]
        _poll("kube-router to sync on " + ", ".join(n.name for n in nodes), lambda: all(synced(g) for g in logs),
              timeout, interval=0.05)

    def node_of(self, pod: Mapping[str, Any]) -> C.LabNode:
        """The lab node a pod runs on."""
        return C.node_named(pod["spec"]["nodeName"])

    # ---------------------------------------------------------------------------------------------- nodes
    @contextlib.contextmanager
    def nodes_closed(self, nodes: Iterable[C.LabNode], cordon: bool = True,
                     taints: Iterable[Mapping[str, str]] = ()) -> Iterator[None]:
        """`kubectl cordon` (spec.unschedulable) and/or `kubectl taint` on the nodes for the block, through the
        API as kubectl does; undone afterwards, also when the block fails, and waited for until the node
        lifecycle controller has taken its node.kubernetes.io/unschedulable taint off again (until then the
        agent, like kube-scheduler, still keeps pods off the node). A running pod stays where it is."""
        nodes, taints = list(nodes), [dict(t) for t in taints]
        ours = {(t["key"], t["effect"]) for t in taints}

        def set_spec(closed: bool) -> None:
            for n in nodes:
                path = f"/api/v1/nodes/{n.name}"
                others = [t for t in self.api.get(path)["spec"].get("taints") or []
                          if (t["key"], t["effect"]) not in ours]
                self.api.merge_patch(path, {"spec": {"unschedulable": True if closed and cordon else None,
                                                     "taints": others + (taints if closed else []) or None}})

        set_spec(True)
        try:
            yield
        finally:
            set_spec(False)
            _poll("the cordon taint to leave " + ", ".join(n.name for n in nodes), lambda: not any(
                t["key"] == "node.kubernetes.io/unschedulable"
                for n in nodes for t in self.api.get(f"/api/v1/nodes/{n.name}")["spec"].get("taints") or []), 30)

    # -------------------------------------------------------------------------------------------- probing
    def netns_of(self, pod: Mapping[str, Any]) -> str:
        return netns.pod_names(pod["metadata"]["uid"])[0]

    def probe(self, src: Mapping[str, Any], targets: Iterable[tuple[str, int, str]], timeout: float = 1.5
              ) -> dict[tuple[str, int, str], str]:
        """Real connections from inside src's network namespace, new ones each time (no conntrack reuse).
        Returns {(ip, port, proto): connected|refused|timeout|unreachable|error}."""
        targets = list(targets)
        if not targets:
            return {}
        keys = [f"{ip}:{port}/{proto.upper()}" for ip, port, proto in targets]
        out = subprocess.run(["ip", "netns", "exec", self.netns_of(src), str(C.PYTHON), str(PROBE),
                              "--timeout", str(timeout), *keys], capture_output=True, text=True,
                             timeout=timeout + 30)
        if out.returncode != 0:
            raise RuntimeError(f"probe from {src['metadata']['name']} failed: {out.stderr.strip()}")
        res = json.loads(out.stdout)
        return {t: res[k] for t, k in zip(targets, keys, strict=True)}

    def connect(self, src: Mapping[str, Any], dst: Mapping[str, Any] | str, port: int, proto: str = "TCP",
                timeout: float = 1.5) -> str:
        """One probe from pod src to pod dst (or an IP): connected, refused, timeout, unreachable or error."""
        ip = dst if isinstance(dst, str) else dst["status"]["podIP"]
        return self.probe(src, [(ip, port, proto)], timeout)[(ip, port, proto)]


def _poll(what: str, fn: Any, timeout: float, interval: float = 0.1) -> Any:
    return kube.wait_for(what, fn, timeout, interval)


def _lab_is_up() -> bool:
    return all(procs.pid_of(n) for n in control.COMPONENTS) and control.apiserver_ready()


def require_root() -> None:
    """Lab tests fail (never skip) without root: a skipped enforcement test would look like a pass."""
    if os.geteuid() != 0:
        pytest.fail("lab tests need root (network namespaces, veths, iptables in the lab's node namespace): "
                    "run `sudo make test`, or deselect them with -m 'not lab'", pytrace=False)


@contextlib.contextmanager
def _lab_lock() -> Iterator[None]:
    """Serializes lab start/stop decisions between concurrent test sessions on this machine."""
    C.LAB_CACHE.mkdir(parents=True, exist_ok=True)
    with open(C.LAB_CACHE / ".lab.lock", "a") as f:  # next to the binaries: not lab state, never removed
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _sessions_dir() -> Path:
    return C.PATHS.root / "sessions"


def _live_sessions() -> list[int]:
    out = []
    for f in _sessions_dir().glob("*") if _sessions_dir().exists() else []:
        if f.name.isdigit() and Path(f"/proc/{f.name}").exists():
            out.append(int(f.name))
    return out


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """The running lab. A session that finds none starts it (marking it auto-started); at the end, the last
    live test session takes an auto-started lab down (LAB_KEEP=1 keeps it). A lab started by hand
    (`make lab-up`) is never taken down by tests. Several sessions can share one lab (own namespaces each)."""
    require_root()
    auto = C.PATHS.root / "auto-started"
    with _lab_lock():
        if not _lab_is_up():
            try:
                fresh = control.up()
            except control.LabError as e:
                pytest.fail(f"could not bring the lab up: {e}", pytrace=False)
            if fresh:
                auto.write_text(f"{os.getpid()}\n")
        _sessions_dir().mkdir(exist_ok=True)
        me = _sessions_dir() / str(os.getpid())
        me.touch()
    try:
        yield Lab()
    finally:
        with _lab_lock():
            me.unlink(missing_ok=True)
            if auto.exists() and not _live_sessions() and not os.environ.get("LAB_KEEP"):
                control.down()


@pytest.fixture
def lab_namespace(lab: Lab, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace for one test (labels: kubernetes.io/metadata.name, set by the API server), removed
    with everything in it afterwards."""
    base = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{base}-{secrets.token_hex(3)}"
    lab.create_namespace(name)
    try:
        yield name
    finally:
        lab.delete_namespace(name)


@pytest.fixture
def make_namespace(lab: Lab, lab_namespace: str) -> Iterator[Any]:
    """Factory for extra namespaces in one test: make_namespace(suffix, labels) -> name; all removed after."""
    made: list[str] = []

    def make(suffix: str, labels: Mapping[str, str] | None = None) -> str:
        name = f"{lab_namespace}-{suffix}"[:63].rstrip("-")
        lab.create_namespace(name, labels)
        made.append(name)
        return name

    try:
        yield make
    finally:
        for name in made:
            lab.delete_namespace(name)

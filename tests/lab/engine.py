"""Bridge from lab objects (the manifests a test applied, plus live pod IPs) to monitor.engine verdicts.

Job: build a monitor Snapshot from Namespace/Pod/NetworkPolicy dicts exactly as offline mode would read them
(monitor.manifests.parse_object) and answer "does the engine allow this flow". Must not: talk to the cluster,
or reimplement any policy semantics (that is the engine's job; this only feeds it).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class EngineView:
    def __init__(self, objects: Iterable[dict[str, Any]]) -> None:
        from monitor.engine import Engine
        from monitor.manifests import parse_object
        from monitor.models import Namespace, NetworkPolicy, Pod, Snapshot

        models = [m for obj in objects for m in parse_object(obj, "lab")]
        snap = Snapshot.build(namespaces=[m for m in models if isinstance(m, Namespace)],
                              pods=[m for m in models if isinstance(m, Pod)],
                              policies=[m for m in models if isinstance(m, NetworkPolicy)])
        self.snapshot = snap
        self.engine = Engine(snap)
        self.by_ref = {p.ref: p for p in snap.pods}
        self.by_ip = {p.ip: p for p in snap.pods if p.ip}
        self._matrix: dict[tuple[str, str], Any] | None = None

    def matrix_allows(self, src: str, dst: str, port: int, protocol: str = "TCP") -> bool:
        """The same question through the class-level matrix (monitor.engine.matrix), pod pairs only."""
        if self._matrix is None:
            from monitor.engine.matrix import class_matrix

            self._matrix = {(s.ref, d.ref): conns for s, d, conns in class_matrix(self.snapshot).pod_pairs()}
        dst_ref = dst if dst in self.by_ref else self.by_ip[dst].ref
        conns = self._matrix.get((src, dst_ref))
        return bool(conns is not None and conns.contains(protocol, port))

    def decide(self, src: str, dst: str, port: int, protocol: str = "TCP") -> tuple[bool, str]:
        """src: "ns/name"; dst: "ns/name" or an IP (a pod's IP means that pod). -> (allowed, reason)."""
        src_pod = self.by_ref[src]
        dst_ep = self.by_ref.get(dst) or self.by_ip.get(dst) or dst
        d = self.engine.decide(src_pod, dst_ep, port, protocol)
        return d.allowed, d.reason


def lab_pod_object(manifest: dict[str, Any], namespace: str, pod_ip: str) -> dict[str, Any]:
    """The manifest a test created, with its namespace and the IP the lab gave it."""
    return {**manifest, "metadata": {**manifest["metadata"], "namespace": namespace},
            "status": {"podIP": pod_ip}}

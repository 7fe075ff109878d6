"""Who is who in a snapshot: the workload that owns a pod, and the pods that back a Service port.

Every stage that names a pod by its workload (suite expansion, the planner, live snapshots, drift causes) or
follows a Service to its pods (expansion, the live run's intent, drift causes, the planner's ClusterIP flows)
asks here, so that the rules live once: a ReplicaSet made by a Deployment is named as its Deployment; a
Service picks the live, non-host-network pods of its namespace its selector matches (no selector, or an
empty one, picks none: Kubernetes makes no endpoints for it); a Service port is found by number or name
*and protocol*, and its targetPort, when named, is looked up on each pod for that protocol.
This module must not import anything but models.py, nor do I/O: pure functions of a snapshot.
"""

from __future__ import annotations

from monitor.models import Pod, Service, ServicePort, Snapshot


# ------------------------------------------------------------------------------------------------ workloads
def owning_workload(pod: Pod) -> str | None:
    """"Kind/name" of the workload that owns the pod, or None for a bare pod.

    A Deployment's pods are owned by a ReplicaSet named <deployment>-<pod-template-hash>: they are named as
    the Deployment, so that identities survive a rollout. The pod-template-hash label says so exactly; a pod
    without it (hand-written manifests) is judged by the ReplicaSet name's shape.
    """
    if not pod.workload:
        return None
    kind, _, name = pod.workload.partition("/")
    if kind != "ReplicaSet":
        return pod.workload
    template_hash = dict(pod.labels).get("pod-template-hash")
    if template_hash:
        if name.endswith("-" + template_hash) and len(name) > len(template_hash) + 1:
            return "Deployment/" + name[: -len(template_hash) - 1]
        return pod.workload
    base, _, suffix = name.rpartition("-")
    return f"Deployment/{base}" if base and suffix.isalnum() and len(suffix) >= 5 else pod.workload


def workload_matches(pod: Pod, wanted: str) -> bool:
    """A suite's `workload:` (a name, or Kind/name) names this pod's owner: the workload that owns it or the
    controller the pod records (its ReplicaSet)."""
    owners = {w for w in (owning_workload(pod), pod.workload) if w}
    if "/" in wanted:
        wkind, _, wname = wanted.partition("/")
        return any(k.lower() == wkind.lower() and n == wname for k, _, n in (w.partition("/") for w in owners))
    return any(w.partition("/")[2] == wanted for w in owners)


# ------------------------------------------------------------------------------------------------- Services
def backing_pods(snapshot: Snapshot, service: Service, candidates: list[Pod] | tuple[Pod, ...] | None = None
                 ) -> tuple[Pod, ...]:
    """The pods a Service sends to, in snapshot order; `candidates` (the pods of its namespace, in snapshot
    order) spares a scan of every pod when many endpoints are resolved."""
    if not service.selector:
        return ()
    wanted = dict(service.selector)
    return tuple(p for p in (snapshot.pods if candidates is None else candidates)
                 if p.namespace == service.namespace and not p.host_network
                 and all(dict(p.labels).get(k) == v for k, v in wanted.items()))


def service_port(service: Service, port: int | str, protocol: str) -> ServicePort | None:
    """The Service port a client names, by number or by name, for this protocol."""
    return next((sp for sp in service.ports if (sp.port == port or sp.name == port) and sp.protocol == protocol),
                None)


def pod_port(pod: Pod | None, port: int | str, protocol: str) -> int | None:
    """The number a port has on a pod: a number as is, a name looked up among the pod's ports of this
    protocol; None when the pod does not declare it."""
    if isinstance(port, int):
        return port
    if pod is None:
        return None
    return next((cp.port for cp in pod.ports if cp.name == port and cp.protocol == protocol), None)


def service_backends(snapshot: Snapshot, service: Service, port: int | str, protocol: str
                     ) -> tuple[tuple[Pod, int | None], ...]:
    """Which pods back this Service on this port and protocol, each with the port the packet reaches on it
    (the targetPort; None where that pod declares no such named port). A port the Service does not list is
    taken as the pods' own port, as a suite naming a container port through its Service means."""
    sp = service_port(service, port, protocol)
    target = sp.target_port if sp is not None else port
    return tuple((pod, pod_port(pod, target, protocol)) for pod in backing_pods(snapshot, service))

"""topology: the workload that owns a pod, and the pods (and ports) that back a Service, and that every stage
that needs them (suite expansion, the planner, live snapshots, drift causes) gets the same answer."""

from __future__ import annotations

import pytest

from monitor.compare import resolve_endpoint
from monitor.engine import Engine
from monitor.models import (
    ContainerPort,
    LabelSelector,
    NetworkPolicy,
    Pod,
    PolicyPort,
    PolicyRule,
    Service,
    ServicePort,
    Snapshot,
    Verdict,
    labels_of,
)
from monitor.plan import plan_suite
from monitor.run import _intent
from monitor.suite import identity, parse_suite, resolve_pods
from monitor.topology import backing_pods, owning_workload, service_backends, service_port, workload_matches


# ---------------------------------------------------------------------------------------------- workloads
def pod(name: str, workload: str | None, **labels: str) -> Pod:
    return Pod("shop", name, labels_of(labels), workload=workload)


@pytest.mark.parametrize(("p", "owner"), [
    # The Deployment controller's label says it exactly (a 5-character hash too).
    (pod("web-6f7d8-abcde", "ReplicaSet/web-6f7d8", app="web", **{"pod-template-hash": "6f7d8"}), "Deployment/web"),
    (pod("api-v2-7c9b6d5f48-x", "ReplicaSet/api-v2-7c9b6d5f48", **{"pod-template-hash": "7c9b6d5f48"}),
     "Deployment/api-v2"),
    # A label that is not the ReplicaSet's suffix: a ReplicaSet of its own, whatever the name looks like.
    (pod("cache-12345-x", "ReplicaSet/cache-12345", **{"pod-template-hash": "99999"}), "ReplicaSet/cache-12345"),
    # No label (hand-written manifests): the name's shape.
    (pod("web-5d8f7-abcde", "ReplicaSet/web-5d8f7", app="web"), "Deployment/web"),
    (pod("w0-1", "ReplicaSet/w0"), "ReplicaSet/w0"),
    (pod("front-end-x", "ReplicaSet/front-end"), "ReplicaSet/front-end"),  # "end": too short for a hash
    (pod("db-0", "StatefulSet/db"), "StatefulSet/db"),
    (pod("solo", None), None),
])
def test_owning_workload(p: Pod, owner: str | None) -> None:
    assert owning_workload(p) == owner
    assert identity(p) == (f"shop/{owner.partition('/')[2]}" if owner else "shop/solo")


def test_live_snapshots_name_the_same_owner_as_the_suite() -> None:
    """cluster.py rewrites a Deployment pod's owner once; the suite's identity of the raw pod agrees."""
    from monitor.cluster import _stable_workload

    raw = pod("web-6f7d8-abcde", "ReplicaSet/web-6f7d8", **{"pod-template-hash": "6f7d8"})
    live = _stable_workload(raw)
    assert live.workload == "Deployment/web" and identity(live) == identity(raw) == "shop/web"
    other = pod("db-0", "StatefulSet/db")
    assert _stable_workload(other) is other


def test_workload_matches_the_owner_or_the_recorded_controller() -> None:
    offline = pod("web-5d8f7-abcde", "ReplicaSet/web-5d8f7")  # as parsed from `kubectl get pods -o yaml`
    live = pod("web-5d8f7-abcde", "Deployment/web")  # as cluster.py records it
    for p in (offline, live):
        assert workload_matches(p, "web")
        assert workload_matches(p, "Deployment/web") and workload_matches(p, "deployment/web")
        assert not workload_matches(p, "StatefulSet/web")
        assert not workload_matches(p, "we")
    assert workload_matches(offline, "ReplicaSet/web-5d8f7") and workload_matches(offline, "web-5d8f7")
    assert not workload_matches(pod("solo", None), "solo")


# ----------------------------------------------------------------------------------------------- Services
def dns_snapshot() -> Snapshot:
    """CoreDNS-like: port 53 twice, TCP listed first; the TCP and UDP servers listen on different pod ports."""
    ports = (ContainerPort(5353, "TCP", "dns-tcp"), ContainerPort(5354, "UDP", "dns"))
    sel = labels_of({"k8s-app": "dns"})
    return Snapshot.build(
        pods=[Pod("kube-system", "dns-b", sel, "10.0.0.3", ports),
              Pod("kube-system", "dns-a", sel, "10.0.0.2", ports),
              Pod("kube-system", "dns-host", sel, "192.168.0.1", ports, host_network=True),
              Pod("kube-system", "dns-old", sel, "10.0.0.4", (ContainerPort(53, "UDP", "dns"),)),
              Pod("other", "dns-c", sel, "10.0.1.2", ports)],
        services=[Service("kube-system", "dns", sel, "10.96.0.10",
                          (ServicePort(53, "dns-tcp", "TCP", "dns-tcp"), ServicePort(53, "dns", "UDP", "dns"))),
                  Service("kube-system", "dns-numbers", sel, "10.96.0.11",
                          (ServicePort(53, 5353, "TCP"), ServicePort(53, 5354, "UDP"))),
                  Service("kube-system", "manual", None, "10.96.0.12", (ServicePort(53, 53, "UDP"),)),
                  Service("kube-system", "empty", (), "10.96.0.13", (ServicePort(53, 53, "UDP"),))])


def svc(snap: Snapshot, name: str) -> Service:
    return next(s for s in snap.services if s.name == name)


def test_backing_pods_are_live_selected_pods_of_the_namespace() -> None:
    snap = dns_snapshot()
    assert [p.name for p in backing_pods(snap, svc(snap, "dns"))] == ["dns-a", "dns-b", "dns-old"]
    # No selector (endpoints managed by hand) and an empty one (the API drops it): Kubernetes sends nowhere.
    assert backing_pods(snap, svc(snap, "manual")) == backing_pods(snap, svc(snap, "empty")) == ()


def test_service_port_is_found_by_number_or_name_and_protocol() -> None:
    s = svc(dns_snapshot(), "dns")
    assert service_port(s, 53, "TCP").target_port == "dns-tcp"
    assert service_port(s, 53, "UDP").target_port == "dns"
    assert service_port(s, "dns-tcp", "TCP").port == 53
    assert service_port(s, "dns-tcp", "UDP") is None
    assert service_port(s, 53, "SCTP") is None


@pytest.mark.parametrize("name", ["dns", "dns-numbers"])
def test_service_backends_follow_the_protocol(name: str) -> None:
    snap = dns_snapshot()
    tcp = {p.name: n for p, n in service_backends(snap, svc(snap, name), 53, "TCP")}
    udp = {p.name: n for p, n in service_backends(snap, svc(snap, name), 53, "UDP")}
    assert tcp == {"dns-b": 5353, "dns-a": 5353, "dns-old": None if name == "dns" else 5353}
    assert udp == {"dns-b": 5354, "dns-a": 5354, "dns-old": 53 if name == "dns" else 5354}


def test_a_port_the_service_does_not_list_is_the_pods_own() -> None:
    snap = dns_snapshot()
    assert {p.name: n for p, n in service_backends(snap, svc(snap, "dns"), 9153, "TCP")} == {
        "dns-b": 9153, "dns-a": 9153, "dns-old": 9153}


@pytest.mark.parametrize(("protocol", "port"), [("TCP", 5353), ("UDP", 5354)])
def test_drift_causes_resolve_a_service_flow_on_its_protocol(protocol: str, port: int) -> None:
    """compare.py once matched the Service port by number alone (the last one listed won) and looked the
    named targetPort up on any protocol: a TCP flow to a DNS Service was judged on the UDP server's port."""
    snap = dns_snapshot()
    for name in ("dns", "dns-numbers"):
        got = resolve_endpoint(snap, f"svc/kube-system/{name}", 53, protocol)
        assert got is not None and (got[0].name, got[1]) == ("dns-a", port), (name, got)


@pytest.mark.parametrize(("protocol", "port", "intent"), [("TCP", 5353, Verdict.ALLOW), ("UDP", 5354, Verdict.DENY)])
def test_every_stage_sends_a_service_case_to_the_same_pod_ports(protocol: str, port: int, intent: Verdict) -> None:
    """Expansion, the planner (pod IPs and the ClusterIP), the live run's intent and drift causes agree."""
    only_dns_tcp = NetworkPolicy("kube-system", "dns-tcp-only", LabelSelector(labels_of({"k8s-app": "dns"})),
                                 ingress=(PolicyRule(ports=(PolicyPort("TCP", 5353),)),))
    base = dns_snapshot()
    snap = Snapshot.build(
        pods=[*base.pods, Pod("kube-system", "client", labels_of({"app": "client"}), "10.0.0.9")],
        services=base.services, policies=[only_dns_tcp])
    suite = parse_suite({"cases": [{"name": "dns", "from": {"namespace": "kube-system", "pod": "client"},
                                    "to": {"service": "kube-system/dns"}, "port": 53, "protocol": protocol,
                                    "expect": "allow"}]}, "suite.yaml")
    assert [p.name for p in resolve_pods(snap, suite.cases[0].destination)] == ["dns-a", "dns-b", "dns-old"]
    plan = plan_suite(suite, snap, via_cluster_ip=True)
    flows = [f for g in plan.groups for f in g.flows]
    by_pod = {f.destination_pod.name: f.port for f in flows if f.destination_pod}
    old_port = 53 if protocol == "UDP" else None  # dns-old serves DNS on UDP only
    assert by_pod == {"dns-b": port, "dns-a": port, **({"dns-old": old_port} if old_port else {})}
    if not old_port:
        assert [f.skip_reason for f in plan.skipped] == ["kube-system/dns-old declares no TCP port named 'dns-tcp'"]
    cluster_ip = next(f for f in flows if f.service)
    assert (cluster_ip.address, cluster_ip.port) == ("10.96.0.10", 53)
    engine = Engine(snap)
    assert _intent(engine, snap, cluster_ip, {})[0] == intent
    for f in flows:
        if f.destination_pod and f.destination_pod.name == "dns-a":
            assert resolve_endpoint(snap, "svc/kube-system/dns", 53, protocol) == (f.destination_pod, f.port)

"""Admin policies (AdminNetworkPolicy/BaselineAdminNetworkPolicy v1alpha1, ClusterNetworkPolicy v1alpha2) are read
as strictly as their published CRDs admit them, and same-priority ties are said out loud (issue 17).

Every bad object is one mutation of a valid one, with the exact one-line message and exit code 2, offline
(manifests through the CLI) and through the live snapshot path (API-shaped list responses from a stand-in API
server, read by the real ClusterAdapter and take_snapshot). The lab half is in tests/test_cluster_lab.py.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from monitor.cli import main
from monitor.cluster import ClusterAdapter
from monitor.engine import Engine
from monitor.errors import InputError
from monitor.manifests import load_manifests
from monitor.settings import ClusterSettings
from monitor.snapshot import take_snapshot
from tests.standins import JsonHandler, StandInServer, kubeconfig

V1 = "policy.networking.k8s.io/v1alpha1"
V2 = "policy.networking.k8s.io/v1alpha2"
SHOP = {"matchLabels": {"kubernetes.io/metadata.name": "shop"}}


def anp(name: str = "anp", priority: int = 10, **spec: Any) -> dict:
    body = {"priority": priority, "subject": {"namespaces": SHOP},
            "ingress": [{"name": "r", "action": "Deny", "from": [{"namespaces": {}}]}]}
    return {"apiVersion": V1, "kind": "AdminNetworkPolicy", "metadata": {"name": name}, "spec": body | spec}


def banp(name: str = "default", **spec: Any) -> dict:
    body = {"subject": {"namespaces": SHOP},
            "egress": [{"name": "r", "action": "Deny", "to": [{"networks": ["10.0.0.0/8"]}]}]}
    return {"apiVersion": V1, "kind": "BaselineAdminNetworkPolicy", "metadata": {"name": name}, "spec": body | spec}


def cnp(name: str = "cnp", tier: str = "Admin", priority: int = 10, **spec: Any) -> dict:
    body = {"tier": tier, "priority": priority, "subject": {"namespaces": SHOP},
            "ingress": [{"name": "r", "action": "Accept", "from": [{"namespaces": {}}],
                         "protocols": [{"tcp": {"destinationPort": {"number": 80}}}]}]}
    return {"apiVersion": V2, "kind": "ClusterNetworkPolicy", "metadata": {"name": name}, "spec": body | spec}


def changed(obj: dict, path: str, value: Any = ..., delete: bool = False) -> dict:
    """A deep copy of obj with the dotted path (list indexes as numbers) set to value, or deleted."""
    obj = copy.deepcopy(obj)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node = obj
    for p in parents:
        node = node[p]
    if delete:
        del node[last]
    else:
        node[last] = value
    return obj


POD_PEER = {"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "web"}}}}
NO_NS_PEER = {"pods": {"podSelector": {"matchLabels": {"app": "web"}}}}

# (id, object, exact message after "<file>: ")
BAD: list[tuple[str, dict, str]] = [
    ("ANP pods subject without namespaceSelector",
     anp(subject={"pods": {"podSelector": {}}}),
     "AdminNetworkPolicy anp: spec.subject.pods.namespaceSelector: missing (use {} to select pods in every "
     "namespace)"),
    ("ANP pods peer without namespaceSelector",
     changed(anp(), "spec.ingress.0.from", [NO_NS_PEER]),
     "AdminNetworkPolicy anp: spec.ingress[0].from[0].pods.namespaceSelector: missing (use {} to select pods in "
     "every namespace)"),
    ("BANP pods egress peer without namespaceSelector",
     changed(banp(), "spec.egress.0.to", [{"namespaces": {}}, NO_NS_PEER]),
     "BaselineAdminNetworkPolicy default: spec.egress[0].to[1].pods.namespaceSelector: missing (use {} to select "
     "pods in every namespace)"),
    ("namespaceSelector null is absent (the API server prunes it)",
     changed(anp(), "spec.ingress.0.from", [{"pods": {"namespaceSelector": None, "podSelector": {}}}]),
     "AdminNetworkPolicy anp: spec.ingress[0].from[0].pods.namespaceSelector: missing (use {} to select pods in "
     "every namespace)"),
    ("pods peer without podSelector",
     changed(cnp(), "spec.ingress.0.from", [{"pods": {"namespaceSelector": {}}}]),
     "ClusterNetworkPolicy cnp: spec.ingress[0].from[0].pods.podSelector: missing (use {} to select every pod of "
     "the namespaces)"),
    ("BANP not named default", banp(name="baseline"),
     "BaselineAdminNetworkPolicy baseline: metadata.name: must be 'default', got 'baseline' (the CRD admits one "
     "BaselineAdminNetworkPolicy per cluster, named default)"),
    ("no spec", changed(anp(), "spec", delete=True), "AdminNetworkPolicy anp: spec: missing"),
    ("ANP without priority", changed(anp(), "spec.priority", delete=True),
     "AdminNetworkPolicy anp: spec.priority: missing (an integer 0-1000)"),
    ("CNP priority out of range", cnp(priority=1001),
     "ClusterNetworkPolicy cnp: spec.priority: must be an integer 0-1000, got 1001"),
    ("CNP without tier", changed(cnp(), "spec.tier", delete=True),
     "ClusterNetworkPolicy cnp: spec.tier: missing (Admin or Baseline)"),
    ("BANP has no priority", banp(priority=1),
     "BaselineAdminNetworkPolicy default: spec.priority: unknown field (expected one of: subject, ingress, egress)"),
    ("no subject", changed(anp(), "spec.subject", delete=True), "AdminNetworkPolicy anp: spec.subject: missing"),
    ("subject with both", anp(subject={"namespaces": {}, "pods": {"namespaceSelector": {}, "podSelector": {}}}),
     "AdminNetworkPolicy anp: spec.subject: exactly one of namespaces or pods must be set"),
    ("rule without action", changed(anp(), "spec.ingress.0.action", delete=True),
     "AdminNetworkPolicy anp: spec.ingress[0].action: missing"),
    ("BANP cannot Pass", changed(banp(), "spec.egress.0.action", "Pass"),
     "BaselineAdminNetworkPolicy default: spec.egress[0].action: invalid action 'Pass' (expected Allow, Deny)"),
    ("CNP says Accept, not Allow", changed(cnp(), "spec.ingress.0.action", "Allow"),
     "ClusterNetworkPolicy cnp: spec.ingress[0].action: invalid action 'Allow' (expected Accept, Deny, Pass)"),
    ("rule without peers", changed(anp(), "spec.ingress.0.from", delete=True),
     "AdminNetworkPolicy anp: spec.ingress[0].from: missing"),
    ("empty peer list", changed(anp(), "spec.ingress.0.from", []),
     "AdminNetworkPolicy anp: spec.ingress[0].from: must list at least one peer"),
    ("rule name over 100 characters", changed(anp(), "spec.ingress.0.name", "x" * 101),
     "AdminNetworkPolicy anp: spec.ingress[0].name: at most 100 characters, got 101"),
    ("ANP with 101 ingress rules", anp(ingress=[{"action": "Deny", "from": [{"namespaces": {}}]}] * 101),
     "AdminNetworkPolicy anp: spec.ingress: at most 100 rules, got 101"),
    ("CNP with 26 egress rules", cnp(egress=[{"action": "Deny", "to": [{"namespaces": {}}]}] * 26),
     "ClusterNetworkPolicy cnp: spec.egress: at most 25 rules, got 26"),
    ("CNP with 26 peers", changed(cnp(), "spec.ingress.0.from", [{"namespaces": {}}] * 26),
     "ClusterNetworkPolicy cnp: spec.ingress[0].from: at most 25 peers, got 26"),
    ("empty ports list (would match nothing)", changed(anp(), "spec.ingress.0.ports", []),
     "AdminNetworkPolicy anp: spec.ingress[0].ports: must list at least one port"),
    ("portNumber without port", changed(anp(), "spec.ingress.0.ports", [{"portNumber": {"protocol": "UDP"}}]),
     "AdminNetworkPolicy anp: spec.ingress[0].ports[0].portNumber.port: missing"),
    ("portRange without end", changed(anp(), "spec.ingress.0.ports", [{"portRange": {"start": 80}}]),
     "AdminNetworkPolicy anp: spec.ingress[0].ports[0].portRange.end: missing"),
    ("namedPort not a name", changed(anp(), "spec.ingress.0.ports", [{"namedPort": 80}]),
     "AdminNetworkPolicy anp: spec.ingress[0].ports[0].namedPort: must be a port name, got 80"),
    ("empty networks (would select every pod)", changed(banp(), "spec.egress.0.to", [{"networks": []}]),
     "BaselineAdminNetworkPolicy default: spec.egress[0].to[0].networks: must list at least one CIDR"),
    ("26 networks", changed(banp(), "spec.egress.0.to", [{"networks": [f"10.{i}.0.0/16" for i in range(26)]}]),
     "BaselineAdminNetworkPolicy default: spec.egress[0].to[0].networks: at most 25 CIDRs, got 26"),
    ("bad domain name", anp(egress=[{"action": "Allow", "to": [{"domainNames": ["*.example.com", "a..b"]}]}]),
     "AdminNetworkPolicy anp: spec.egress[0].to[0].domainNames[1]: invalid domain name 'a..b'"),
    ("BANP has no domainNames", changed(banp(), "spec.egress.0.to", [{"domainNames": ["example.com"]}]),
     "BaselineAdminNetworkPolicy default: spec.egress[0].to[0].domainNames: unknown field (expected one of: "
     "namespaces, pods, nodes, networks)"),
    ("ingress peers are no networks", changed(anp(), "spec.ingress.0.from", [{"networks": ["10.0.0.0/8"]}]),
     "AdminNetworkPolicy anp: spec.ingress[0].from[0].networks: unknown field (expected one of: namespaces, pods)"),
    ("named port towards networks", changed(banp(), "spec.egress.0.ports", [{"namedPort": "dns"}]),
     "BaselineAdminNetworkPolicy default: spec.egress[0].ports: a named port cannot be used with networks peers "
     "(they have no named ports)"),
    ("CNP named port towards nodes and domain names",
     cnp(egress=[{"action": "Accept", "to": [{"nodes": {}}, {"domainNames": ["example.com"]}],
                  "protocols": [{"destinationNamedPort": "dns"}]}]),
     "ClusterNetworkPolicy cnp: spec.egress[0].protocols: a named port cannot be used with nodes/domainNames peers "
     "(they have no named ports)"),
    ("CNP tcp: {} (the CRD wants a destinationPort)", changed(cnp(), "spec.ingress.0.protocols", [{"tcp": {}}]),
     "ClusterNetworkPolicy cnp: spec.ingress[0].protocols[0].tcp.destinationPort: missing"),
    ("CNP empty protocols", changed(cnp(), "spec.ingress.0.protocols", []),
     "ClusterNetworkPolicy cnp: spec.ingress[0].protocols: must list at least one protocol"),
    ("CNP range start == end",
     changed(cnp(), "spec.ingress.0.protocols", [{"udp": {"destinationPort": {"range": {"start": 53, "end": 53}}}}]),
     "ClusterNetworkPolicy cnp: spec.ingress[0].protocols[0].udp.destinationPort.range.end: must be greater than "
     "start (53)"),
]


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write_objects(directory: Path, name: str, *objs: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(yaml.safe_dump_all(objs, sort_keys=False))
    return path


@pytest.mark.parametrize(("what", "obj", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_admin_policy_manifests_fail_with_one_line(tmp_path, capsys, what, obj, message):
    path = write_objects(tmp_path / "m", "p.yaml", obj)
    code, out, err = cli(capsys, "matrix", "--manifests", str(tmp_path / "m"), "--format", "json")
    assert (code, out) == (2, "")
    assert err == f"netpol-drift: error: {path}: {message}\n"


@pytest.mark.parametrize(("kind", "make"), [("AdminNetworkPolicy", anp), ("BaselineAdminNetworkPolicy", banp),
                                            ("ClusterNetworkPolicy", cnp)])
def test_two_admin_policies_of_one_kind_with_one_name_are_an_error(tmp_path, capsys, kind, make):
    write_objects(tmp_path / "m", "a.yaml", make())
    write_objects(tmp_path / "m", "b.yaml", make())
    code, _, err = cli(capsys, "check", "--manifests", str(tmp_path / "m"), "--suite", str(tmp_path / "none.yaml"))
    assert code == 2
    assert err == f"netpol-drift: error: {tmp_path / 'm'}: {kind} {make()['metadata']['name']}: defined twice\n"


def test_the_same_name_in_different_kinds_is_fine(tmp_path):
    write_objects(tmp_path / "m", "p.yaml", anp(name="default"), banp(), cnp(name="default"))
    assert [p.ref for p in load_manifests(tmp_path / "m").admin_policies] == [
        "AdminNetworkPolicy/default", "ClusterNetworkPolicy/default", "BaselineAdminNetworkPolicy/default"]


def test_cnp_pods_without_namespace_selector_select_every_namespace(tmp_path):
    """v1alpha2 made namespaceSelector optional (an empty selector); v1alpha1 requires it (BAD above)."""
    write_objects(tmp_path / "m", "p.yaml", *_pods("shop", "web", "client"), *_pods("other", "client"),
                  cnp(subject={"pods": {"podSelector": {"matchLabels": {"app": "web"}}}},
                      ingress=[{"name": "no-clients", "action": "Deny",
                                "from": [{"pods": {"podSelector": {"matchLabels": {"app": "client"}}}}]}]))
    snap = load_manifests(tmp_path / "m")
    engine = Engine(snap)
    pods = {p.ref: p for p in snap.pods}
    for client in ("shop/client", "other/client"):
        d = engine.decide(pods[client], pods["shop/web"], 80)
        assert not d.allowed and "ClusterNetworkPolicy/cnp rule 'no-clients' denies it" in d.reason


# ------------------------------------------------------------------------------------------------- ties
def _pods(ns: str, *apps: str) -> list[dict]:
    return [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": app, "namespace": ns, "labels": {"app": app}},
             "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}, {"containerPort": 8080}]}]}}
            for app in apps]


def _tied(kind: str = "anp", tier: str = "Admin") -> list[dict]:
    """allow-shop admits everything into namespace shop; deny-web denies TCP/80 into app=web; same priority."""
    allow = {"subject": {"namespaces": SHOP}, "ingress": [{"name": "all", "action": "Allow" if kind == "anp"
                                                          else "Accept", "from": [{"namespaces": {}}]}]}
    deny_ports = ({"ports": [{"portNumber": {"protocol": "TCP", "port": 80}}]} if kind == "anp"
                  else {"protocols": [{"tcp": {"destinationPort": {"number": 80}}}]})
    deny = {"subject": {"pods": {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "web"}}}},
            "ingress": [{"name": "web-80", "action": "Deny", "from": [{"namespaces": {}}], **deny_ports}]}
    if kind == "anp":
        return [anp("allow-shop", 10, **allow), anp("deny-web", 10, **deny)]
    return [cnp("allow-shop", tier, 10, **allow), cnp("deny-web", tier, 10, **deny)]


def _tie_warning(where: str, kind: str = "AdminNetworkPolicy", tier: str = "Admin") -> str:
    return (f"netpol-drift: warning: {where}: {kind}/allow-shop and {kind}/deny-web have the same priority 10 in "
            f"the {tier} tier and both select shop/web: the API leaves their order to the implementation; "
            f"netpol-drift applies {kind}/allow-shop first (by kind and name) and says \"tie\" where that decides "
            "a flow\n")


def _tie_reason(kind: str = "AdminNetworkPolicy", rule: str = "all") -> str:
    return (f"allowed TCP/80: egress: no NetworkPolicy selects shop/client for egress | ingress: {kind}/allow-shop "
            f"rule '{rule}' allows it (tie: at the same priority 10, {kind}/deny-web rule 'web-80' denies it; the API "
            f"leaves the winner to the implementation, netpol-drift applies {kind}/allow-shop first)")


@pytest.mark.parametrize(("kind", "tier", "policy_kind"), [("anp", "Admin", "AdminNetworkPolicy"),
                                                            ("cnp", "Admin", "ClusterNetworkPolicy"),
                                                            ("cnp", "Baseline", "ClusterNetworkPolicy")])
def test_matrix_warns_of_a_tie_and_says_tie_in_every_flow_it_decides(tmp_path, capsys, kind, tier, policy_kind):
    m = tmp_path / "m"
    write_objects(m, "all.yaml", *_pods("shop", "web", "client"), *_tied(kind, tier))
    code, out, err = cli(capsys, "matrix", "--manifests", str(m), "--format", "json")
    assert code == 0
    assert err == _tie_warning(str(m), policy_kind, tier)
    reasons = {(f["from"], f["to"], f["port"]): f["reason"] for f in json.loads(out)["flows"]}
    # Decided by the tie: into shop/web on TCP/80, where deny-web would have denied what allow-shop allows.
    assert reasons[("shop/client", "shop/web", 80)] == _tie_reason(policy_kind)
    # Not decided by it: deny-web does not match 8080, and does not select shop/client.
    assert "tie" not in reasons[("shop/client", "shop/web", 8080)]
    assert "tie" not in reasons[("shop/web", "shop/client", 80)]
    assert [k for k, r in reasons.items() if "tie" in r] == [("shop/client", "shop/web", 80)]


def test_check_and_diff_warn_of_a_tie_too(tmp_path, capsys):
    before, after = tmp_path / "before", tmp_path / "after"
    write_objects(before, "all.yaml", *_pods("shop", "web", "client"), _tied()[0])
    write_objects(after, "all.yaml", *_pods("shop", "web", "client"), *_tied())
    suite = tmp_path / "suite.yaml"
    suite.write_text(yaml.safe_dump({"cases": [{"name": "client-web", "from": {"namespace": "shop", "pod": "client"},
                                                "to": {"namespace": "shop", "pod": "web"}, "port": 80,
                                                "expect": "allow"}]}))
    code, out, err = cli(capsys, "check", "--manifests", str(after), "--suite", str(suite), "--format", "json")
    assert code == 0 and err == _tie_warning(str(after))
    [flow] = json.loads(out)["cases"][0]["flows"]
    assert flow["reason"] == _tie_reason()
    code, out, err = cli(capsys, "diff", "--before", str(before), "--after", str(after), "--format", "json")
    assert code == 0 and err == _tie_warning(str(after))  # only the side that has the tie


def test_no_tie_when_the_policies_agree_or_share_no_pod_or_one_is_the_baseline(tmp_path, capsys):
    allow, deny = _tied()
    agree = changed(deny, "spec.ingress.0.action", "Allow")  # same action: the winner does not matter
    apart = changed(deny, "spec.subject", {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "x"}}})
    later = changed(deny, "spec.priority", 11)
    for variant in (agree, later):
        write_objects(tmp_path / "m", "all.yaml", *_pods("shop", "web", "client"), allow, variant)
        code, out, err = cli(capsys, "matrix", "--manifests", str(tmp_path / "m"), "--format", "json")
        assert code == 0 and "tie" not in out
        assert err == ("" if variant is later else _tie_warning(str(tmp_path / "m")))
    write_objects(tmp_path / "m", "all.yaml", *_pods("shop", "web", "client"), allow, apart,
                  changed(banp(), "spec.egress.0.to", [{"namespaces": {}}]),
                  cnp("base-0", "Baseline", 0, ingress=[{"action": "Deny", "from": [{"namespaces": {}}]}]))
    code, out, err = cli(capsys, "matrix", "--manifests", str(tmp_path / "m"), "--format", "json")
    assert (code, err) == (0, "") and "tie" not in out  # a BANP has no priority to tie with


# ----------------------------------------------------------------------------------- live snapshot path
class AdminApiStandIn(JsonHandler):
    """A plain-HTTP API server holding one cluster: lists as the real one answers them (admin policies with the
    server's bookkeeping: uid, resourceVersion, generation, managedFields, status; 404 for an API it lacks)."""

    objects: dict[str, list[dict]]  # plural -> items

    def do_GET(self) -> None:
        plural = self.path.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
        if plural not in self.objects:
            self.send_json(404, {"kind": "Status", "code": 404, "reason": "NotFound", "message": "the server could "
                                 "not find the requested resource"})
            return
        self.send_json(200, {"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": "42"},
                             "items": self.objects[plural]})


PLURALS = {"AdminNetworkPolicy": "adminnetworkpolicies", "BaselineAdminNetworkPolicy": "baselineadminnetworkpolicies",
           "ClusterNetworkPolicy": "clusternetworkpolicies"}


def as_served(obj: dict, n: int = 1) -> dict:
    """The object as GET returns it from a custom-resource list."""
    served = copy.deepcopy(obj)
    served["metadata"] |= {"uid": f"00000000-0000-0000-0000-{n:012d}", "resourceVersion": str(100 + n),
                           "generation": 1, "creationTimestamp": "2026-11-30T08:00:00Z",
                           "managedFields": [{"manager": "kubectl", "operation": "Apply",
                                              "apiVersion": obj["apiVersion"], "fieldsType": "FieldsV1",
                                              "fieldsV1": {"f:spec": {}}}]}
    served["status"] = {"conditions": [{"type": "Ready", "status": "True", "reason": "Programmed", "message": "ok",
                                        "lastTransitionTime": "2026-11-30T08:00:01Z"}]}
    return served


@pytest.fixture
def cluster(tmp_path) -> Callable[..., tuple[ClusterAdapter, str]]:
    servers, adapters = [], []

    def start(*admin: dict, pods: list[dict] = ()) -> tuple[ClusterAdapter, str]:
        objects: dict[str, list[dict]] = {"namespaces": [{"metadata": {"name": "shop", "labels": {
            "kubernetes.io/metadata.name": "shop"}}}], "pods": list(pods), "services": [], "networkpolicies": []}
        for i, obj in enumerate(admin):
            objects.setdefault(PLURALS[obj["kind"]], []).append(as_served(obj, i))
        servers.append(StandInServer(AdminApiStandIn, objects=objects))
        url = servers[-1].url
        adapter = ClusterAdapter.connect(ClusterSettings(retries=0), kubeconfig=str(kubeconfig(tmp_path, url)))
        adapters.append(adapter)
        return adapter, url

    yield start
    for a in adapters:
        a.close()
    for s in servers:
        s.stop()


# Every bad object but the one without a spec (the adapter hands the parser `spec: {}` for a missing one).
LIVE_CASES = [b for b in BAD if b[0] != "no spec"]


@pytest.mark.parametrize(("what", "obj", "message"), LIVE_CASES, ids=[b[0] for b in LIVE_CASES])
def test_live_snapshot_rejects_what_the_crd_would_have(cluster, what, obj, message):
    """What only a CRD without its schema (or an older one) lets into a cluster stops the run like a bad
    manifest: the API server and kind stand for the file."""
    adapter, url = cluster(obj)
    with pytest.raises(InputError) as e:
        take_snapshot(adapter, datetime(2026, 11, 30, tzinfo=UTC))
    assert str(e.value) == f"{url} ({obj['kind']}): {message}"


def test_live_snapshot_reads_valid_admin_policies_and_their_tie(cluster):
    running = [{"metadata": {"name": name, "namespace": "shop", "labels": {"app": name}, "uid": name},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [{"containerPort": 80}]}]},
                "status": {"phase": "Running", "podIP": ip}}
               for name, ip in (("web", "10.0.0.1"), ("client", "10.0.0.2"))]
    adapter, _ = cluster(*_tied(), changed(banp(), "spec.egress.0.to", [{"networks": ["192.0.2.0/24"]}]),
                         pods=running)
    snap = take_snapshot(adapter, datetime(2026, 11, 30, tzinfo=UTC))
    assert [p.ref for p in snap.admin_policies] == ["AdminNetworkPolicy/allow-shop", "AdminNetworkPolicy/deny-web",
                                                    "BaselineAdminNetworkPolicy/default"]
    engine = Engine(snap)
    [tie] = engine.ties()
    assert _tie_warning("x").endswith(tie.describe() + "\n")
    pods = {p.ref: p for p in snap.pods}
    assert engine.decide(pods["shop/client"], pods["shop/web"], 80).reason == _tie_reason()

"""Snapshot canonical JSON (exact round trip, stable digest) and the snapshot diff."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.errors import InputError
from monitor.models import (
    AdminPolicy,
    AdminPort,
    AdminRule,
    AdminSelector,
    ContainerPort,
    IPBlock,
    LabelSelector,
    Namespace,
    NetworkPolicy,
    Pod,
    PolicyPeer,
    PolicyPort,
    PolicyRule,
    Requirement,
    Service,
    ServicePort,
    Snapshot,
    labels_of,
)
from monitor.snapshot import (
    apply_change,
    diff_snapshots,
    snapshot_digest,
    snapshot_from_json,
    snapshot_to_json,
)

names = st.text(alphabet="abcdefgh-é/.", min_size=1, max_size=6)
labels = st.dictionaries(names, st.text(max_size=4), max_size=3).map(labels_of)
ports = st.one_of(st.none(), st.integers(1, 65535), names)
selector = st.builds(LabelSelector, labels, st.lists(
    st.builds(Requirement, names, st.sampled_from(["In", "NotIn", "Exists"]),
              st.lists(names, max_size=2).map(tuple)), max_size=2).map(tuple))
peer = st.one_of(st.builds(PolicyPeer, st.none() | selector, st.none() | selector),
                 st.builds(PolicyPeer, ip_block=st.builds(IPBlock, st.just("10.0.0.0/8"),
                                                          st.lists(st.just("10.1.0.0/16"), max_size=1).map(tuple))))
rule = st.builds(PolicyRule, st.lists(peer, max_size=2).map(tuple), st.lists(
    st.builds(PolicyPort, st.sampled_from(["TCP", "UDP"]), ports, st.none() | st.integers(1, 9)),
    max_size=2).map(tuple))
policy = st.builds(NetworkPolicy, names, names, selector,
                   st.frozensets(st.sampled_from(["Ingress", "Egress"]), max_size=2),
                   st.lists(rule, max_size=2).map(tuple), st.lists(rule, max_size=2).map(tuple))
admin_sel = st.builds(AdminSelector, st.none() | selector, st.none() | selector,
                      st.lists(st.just("0.0.0.0/0"), max_size=1).map(tuple))
admin_rule = st.builds(AdminRule, names, st.sampled_from(["Allow", "Deny", "Pass"]),
                       st.lists(admin_sel, max_size=2).map(tuple),
                       st.none() | st.lists(st.builds(AdminPort, st.just("TCP"), st.none() | st.integers(1, 99),
                                                      st.none(), st.none() | names), max_size=2).map(tuple))
admin = st.builds(AdminPolicy, st.sampled_from(["AdminNetworkPolicy", "ClusterNetworkPolicy"]), names,
                  st.sampled_from(["Admin", "Baseline"]), st.integers(0, 1000), admin_sel,
                  st.lists(admin_rule, max_size=2).map(tuple), st.lists(admin_rule, max_size=2).map(tuple))
pod = st.builds(Pod, names, names, labels, st.none() | st.just("10.0.0.1"),
                st.lists(st.builds(ContainerPort, st.integers(1, 65535), st.just("TCP"), st.none() | names),
                         max_size=2).map(tuple),
                st.none() | names, st.booleans(), st.none() | st.just("Deployment/web"))
service = st.builds(Service, names, names, st.none() | labels, st.none() | st.just("10.96.0.1"),
                    st.lists(st.builds(ServicePort, st.integers(1, 9), st.integers(1, 9) | names),
                             max_size=2).map(tuple))
# Object names are unique per kind in a cluster, so they are here too.
snapshots = st.builds(Snapshot.build,
                      st.lists(st.builds(Namespace, names, labels), max_size=3, unique_by=lambda n: n.name),
                      st.lists(pod, max_size=3, unique_by=lambda p: p.ref),
                      st.lists(service, max_size=2, unique_by=lambda s: s.ref),
                      st.lists(policy, max_size=3, unique_by=lambda p: p.ref),
                      st.lists(admin, max_size=2, unique_by=lambda p: p.ref))


@settings(max_examples=200, deadline=None)
@given(snapshots)
def test_json_round_trip_is_exact(snap: Snapshot) -> None:
    text = snapshot_to_json(snap)
    back = snapshot_from_json(text)
    assert back == snap
    assert snapshot_to_json(back) == text
    assert snapshot_digest(back) == snapshot_digest(snap)
    assert diff_snapshots(snap, back).changes == ()


def test_json_is_canonical_and_compact() -> None:
    a = Snapshot.build(namespaces=[Namespace("b", labels_of({"z": "1", "a": "2"})), Namespace("a")])
    b = Snapshot.build(namespaces=[Namespace("a"), Namespace("b", labels_of({"a": "2", "z": "1"}))])
    assert snapshot_to_json(a) == snapshot_to_json(b)
    assert snapshot_digest(a) == snapshot_digest(b)
    assert snapshot_digest(a).startswith("sha256:") and len(snapshot_digest(a)) == 7 + 64
    assert " " not in snapshot_to_json(a)
    c = Snapshot.build(namespaces=[Namespace("a", labels_of({"x": "y"}))])
    assert snapshot_digest(a) != snapshot_digest(c)


def test_except_field_is_named_except_in_json() -> None:
    snap = Snapshot.build(policies=[NetworkPolicy("ns", "p", ingress=(PolicyRule(
        peers=(PolicyPeer(ip_block=IPBlock("10.0.0.0/8", ("10.1.0.0/16",))),)),))])
    text = snapshot_to_json(snap)
    assert '"except":["10.1.0.0/16"]' in text
    assert snapshot_from_json(text) == snap


@pytest.mark.parametrize(("text", "message"), [
    ("{", "snapshot: not valid JSON"),
    ('{"pods": 3}', "snapshot.pods: expected a list, got 3"),
    ('{"pods": [{"namespace": "a"}], "bogus": 1}', "snapshot: unknown key 'bogus'"),
    ('{"pods": [{"namespace": "a", "name": 5}]}', "snapshot.pods[0].name: expected str, got 5"),
    ('{"policies": [{"namespace": "a", "name": "p", "ingress": [{"ports": [{"port": true}]}]}]}',
     "snapshot.policies[0].ingress[0].ports[0].port: expected int or str, got true"),
])
def test_bad_json_names_the_field(text: str, message: str) -> None:
    with pytest.raises(InputError) as e:
        snapshot_from_json(text)
    assert str(e.value).startswith(message)


# --------------------------------------------------------------------------------------------------- diff
def _base() -> Snapshot:
    deny = NetworkPolicy("shop", "deny-all", policy_types=frozenset({"Ingress"}))
    allow = NetworkPolicy("shop", "allow-web", LabelSelector(labels_of({"app": "db"})),
                          ingress=(PolicyRule(peers=(PolicyPeer(pod_selector=LabelSelector(
                              labels_of({"app": "web"}))),)),))
    return Snapshot.build(
        namespaces=[Namespace("shop", labels_of({"team": "a", "env": "prod"}))],
        pods=[Pod("shop", "web-1", labels_of({"app": "web"}), "10.0.0.1", workload="Deployment/web"),
              Pod("shop", "web-2", labels_of({"app": "web"}), "10.0.0.2", workload="Deployment/web"),
              Pod("shop", "db-0", labels_of({"app": "db"}), "10.0.0.3", workload="StatefulSet/db"),
              Pod("shop", "lonely", labels_of({"app": "x"}), "10.0.0.4")],
        policies=[deny, allow],
        admin_policies=[AdminPolicy("AdminNetworkPolicy", "guard", "Admin", 10, AdminSelector())],
    )


def test_diff_of_equal_snapshots_is_empty() -> None:
    diff = diff_snapshots(_base(), _base())
    assert not diff
    assert diff.describe() == ["no differences"]


def test_diff_reports_every_kind_of_change() -> None:
    old = _base()
    pods = list(old.pods)
    # db restarted under a new name and relabelled; lonely gone; a new pod.
    pods = [p for p in pods if p.name not in ("db-0", "lonely")]
    pods.append(Pod("shop", "db-1", labels_of({"app": "db", "tier": "data"}), "10.0.0.9",
                    workload="StatefulSet/db"))
    pods.append(Pod("shop", "new", labels_of({"app": "new"})))
    deny_all = next(p for p in old.policies if p.name == "deny-all")
    policies = [dataclasses.replace(deny_all, ingress=(PolicyRule(),)),
                NetworkPolicy("shop", "extra")]  # allow-web removed, deny-all edited, extra added
    new = Snapshot.build(
        namespaces=[Namespace("shop", labels_of({"team": "b", "pci": "yes"}))],
        pods=pods, policies=policies,
        admin_policies=[AdminPolicy("AdminNetworkPolicy", "guard", "Admin", 20, AdminSelector()),
                        AdminPolicy("BaselineAdminNetworkPolicy", "default", "Baseline", 0, AdminSelector())])
    diff = diff_snapshots(old, new)
    assert diff.policies_added == ("shop/extra",)
    assert diff.policies_removed == ("shop/allow-web",)
    assert diff.policies_changed == ("shop/deny-all",)
    assert diff.admin_policies_added == ("BaselineAdminNetworkPolicy/default",)
    assert diff.admin_policies_changed == ("AdminNetworkPolicy/guard",)
    ns = diff.namespace_labels["shop"]
    assert ns.added == (("pci", "yes"),)
    assert ns.removed == (("env", "prod"),)
    assert ns.changed == (("team", "a", "b"),)
    assert list(diff.pod_labels) == ["shop/db"]
    assert diff.pod_labels["shop/db"].added == (("tier", "data"),)
    assert diff.pods_added == ("shop/new",)
    assert diff.pods_removed == ("shop/lonely",)
    lines = diff.describe()
    assert "NetworkPolicy shop/allow-web removed" in lines
    assert "NetworkPolicy shop/deny-all changed (ingress)" in lines
    assert "namespace shop: labels +pci=yes, -env=prod, team: a -> b" in lines
    assert "pod shop/db: labels +tier=data; name changed; ip changed" in lines
    assert "AdminNetworkPolicy/guard changed (priority)" in lines


def test_replicas_of_one_workload_are_told_apart() -> None:
    old = _base()
    pods = [dataclasses.replace(p, labels=labels_of({"app": "web", "canary": "1"})) if p.name == "web-2" else p
            for p in old.pods]
    diff = diff_snapshots(old, dataclasses.replace(old, pods=tuple(pods)))
    assert list(diff.pod_labels) == ["shop/web (web-2)"]


def test_applying_every_change_gives_the_new_snapshot() -> None:
    old = _base()
    new = Snapshot.build(
        namespaces=[Namespace("shop", labels_of({"team": "b"})), Namespace("other")],
        pods=[Pod("shop", "web-1", labels_of({"app": "web2"}), workload="Deployment/web")],
        policies=[NetworkPolicy("shop", "deny-all", policy_types=frozenset({"Ingress", "Egress"}))])
    snap = old
    for change in diff_snapshots(old, new).changes:
        one = apply_change(old, change)
        assert len(diff_snapshots(one, new).changes) == len(diff_snapshots(old, new).changes) - 1
        snap = apply_change(snap, change)
    assert snap == new
    assert json.loads(snapshot_to_json(snap)) == json.loads(snapshot_to_json(new))

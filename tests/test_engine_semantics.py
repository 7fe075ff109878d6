"""Unit tests of the engine's policy semantics, one semantic point per test (issue 2, item 2).

Snapshots are built from small YAML policies parsed by monitor.manifests.parse_object (no files, no I/O) and
hand-built pods (monitor.models). Each test asserts verdicts AND, where it matters, the explanation: which
policies selected the pods, which rule decided. These tests pin Kubernetes semantics; they must not be
loosened to fit an implementation.
"""

from __future__ import annotations

import pytest
import yaml

from monitor.engine import ALL, EMPTY, ConnSet, Engine
from monitor.manifests import parse_object
from monitor.models import ContainerPort, Namespace, Pod, Snapshot, labels_of

NAMESPACES = [Namespace("a", labels_of({"team": "a", "env": "prod"})),
              Namespace("b", labels_of({"team": "b", "env": "dev"})),
              Namespace("c", labels_of({}))]


def pod(ns: str, name: str, labels: dict[str, str] | None = None, ip: str | None = None,
        ports: tuple[ContainerPort, ...] = (), host_network: bool = False) -> Pod:
    return Pod(ns, name, labels_of(labels or {"app": name}), ip, ports, host_network=host_network)


WEB = pod("a", "web", ip="10.0.0.1", ports=(ContainerPort(8080, "TCP", "http"), ContainerPort(53, "UDP", "dns")))
DB = pod("a", "db", ip="10.0.0.2", ports=(ContainerPort(5432, "TCP", "pg"),))
CLIENT = pod("b", "client", ip="10.0.1.1")
WEB_B = pod("b", "web", ip="10.0.1.2", ports=(ContainerPort(9090, "TCP", "http"),))
OTHER = pod("c", "other", {"app": "client", "tier": "x"}, ip="10.0.2.1")
PODS = [WEB, DB, CLIENT, WEB_B, OTHER]


def snapshot(policies_yaml: str = "", pods: list[Pod] | None = None) -> Snapshot:
    parsed = [o for doc in yaml.safe_load_all(policies_yaml) if doc for o in parse_object(doc, "test.yaml")]
    nps = [o for o in parsed if type(o).__name__ == "NetworkPolicy"]
    admin = [o for o in parsed if type(o).__name__ == "AdminPolicy"]
    return Snapshot.build(NAMESPACES, PODS if pods is None else pods, (), nps, admin)


def engine(policies_yaml: str = "", pods: list[Pod] | None = None) -> Engine:
    return Engine(snapshot(policies_yaml, pods))


def np(name: str, ns: str, spec: str) -> str:
    """A NetworkPolicy document; `spec` is the YAML body of .spec, indented by two spaces."""
    return (f"apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\n"
            f"spec:\n{spec}\n---\n")


TCP80 = ConnSet.ports("TCP", 80)


# ============================================================================================== selectors
def test_no_policy_allows_everything() -> None:
    e = engine()
    assert e.connections(CLIENT, WEB) == ALL
    d = e.decide(CLIENT, WEB, 80)
    assert d.allowed and d.ingress_policies == () and d.egress_policies == ()
    assert "no NetworkPolicy selects a/web for ingress" in d.reason


def test_pod_selector_match_labels_isolates_only_selected_pods() -> None:
    e = engine(np("deny-web", "a", "  podSelector: {matchLabels: {app: web}}"))
    assert e.connections(CLIENT, WEB) == EMPTY
    assert e.connections(CLIENT, DB) == ALL  # not selected, not isolated
    d = e.decide(CLIENT, WEB, 80)
    assert not d.allowed and d.ingress_policies == ("a/deny-web",) and not d.ingress_allowed and d.egress_allowed
    assert "isolated by NetworkPolicy a/deny-web and no rule allows b/client" in d.reason


@pytest.mark.parametrize("expr,matches", [
    ("{key: app, operator: In, values: [client, web]}", {"b/client", "a/web", "b/web", "c/other"}),
    ("{key: app, operator: NotIn, values: [client]}", {"a/web", "a/db", "b/web"}),
    # NotIn also matches pods that lack the key altogether.
    ("{key: tier, operator: NotIn, values: [x]}", {"a/web", "a/db", "b/client", "b/web"}),
    ("{key: tier, operator: Exists}", {"c/other"}),
    ("{key: tier, operator: DoesNotExist}", {"a/web", "a/db", "b/client", "b/web"}),
])
def test_match_expressions_operators_in_peer_pod_selector(expr: str, matches: set[str]) -> None:
    # A namespaceSelector {} peer with the podSelector: the expression decides alone, cluster-wide.
    e = engine(np("db-in", "a", f"""  podSelector: {{matchLabels: {{app: db}}}}
  ingress:
  - from:
    - namespaceSelector: {{}}
      podSelector: {{matchExpressions: [{expr}]}}"""))
    got = {p.ref for p in PODS if p is not DB and e.connections(p, DB) == ALL}
    assert got == matches - {"a/db"}


@pytest.mark.parametrize("sel,namespaces", [
    ("{matchLabels: {team: b}}", {"b"}),
    ("{matchExpressions: [{key: env, operator: In, values: [prod, dev]}]}", {"a", "b"}),
    ("{matchExpressions: [{key: env, operator: NotIn, values: [prod]}]}", {"b", "c"}),
    ("{matchExpressions: [{key: team, operator: Exists}]}", {"a", "b"}),
    ("{matchExpressions: [{key: team, operator: DoesNotExist}]}", {"c"}),
    ("{matchLabels: {kubernetes.io/metadata.name: c}}", {"c"}),  # every namespace carries its name label
    ("{}", {"a", "b", "c"}),
])
def test_namespace_selector(sel: str, namespaces: set[str]) -> None:
    e = engine(np("db-in", "a", f"""  podSelector: {{matchLabels: {{app: db}}}}
  ingress:
  - from:
    - namespaceSelector: {sel}"""))
    got = {p.namespace for p in PODS if p is not DB and e.connections(p, DB) == ALL}
    # a/web is the only other pod of namespace a; it is admitted exactly when namespace a is selected.
    assert got == namespaces


def test_pod_and_namespace_selector_in_one_peer_are_anded() -> None:
    e = engine(np("db-in", "a", """  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {team: b}}
      podSelector: {matchLabels: {app: client}}"""))
    assert e.connections(CLIENT, DB) == ALL  # right namespace and right labels
    assert e.connections(OTHER, DB) == EMPTY  # right labels, wrong namespace
    assert e.connections(WEB_B, DB) == EMPTY  # right namespace, wrong labels


def test_separate_peers_are_ored() -> None:
    e = engine(np("db-in", "a", """  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - namespaceSelector: {matchLabels: {team: b}}
    - podSelector: {matchLabels: {app: client}}"""))
    assert e.connections(CLIENT, DB) == ALL
    assert e.connections(WEB_B, DB) == ALL  # by the namespace peer
    assert e.connections(OTHER, DB) == EMPTY  # podSelector alone means the policy's own namespace
    assert e.connections(WEB, DB) == EMPTY


def test_empty_pod_selector_peer_means_every_pod_of_the_policy_namespace() -> None:
    e = engine(np("db-in", "a", """  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - podSelector: {}"""))
    assert e.connections(WEB, DB) == ALL
    assert e.connections(CLIENT, DB) == EMPTY
    assert e.connections("192.0.2.1", DB) == EMPTY  # selectors never match addresses outside the pods


def test_empty_namespace_selector_peer_means_every_pod_of_every_namespace_but_no_ip() -> None:
    e = engine(np("db-in", "a", """  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - namespaceSelector: {}"""))
    assert all(e.connections(p, DB) == ALL for p in PODS if p is not DB)
    assert e.connections("192.0.2.1", DB) == EMPTY


@pytest.mark.parametrize("rule", ["  - {}", "  - from: []", "  - from: []\n    ports: []"])
def test_missing_or_empty_from_and_ports_allow_every_source_and_port(rule: str) -> None:
    e = engine(np("db-in", "a", f"  podSelector: {{matchLabels: {{app: db}}}}\n  ingress:\n{rule}"))
    assert e.connections(OTHER, DB) == ALL
    assert e.connections("192.0.2.1", DB) == ALL


@pytest.mark.parametrize("body", ["  podSelector: {}", "  podSelector: {}\n  ingress: []"])
def test_no_ingress_rules_denies_all_ingress_for_selected_pods(body: str) -> None:
    e = engine(np("deny", "a", body))
    assert e.connections(CLIENT, WEB) == EMPTY and e.connections(WEB, DB) == EMPTY
    assert e.connections(WEB, CLIENT) == ALL  # a's egress is untouched


# ============================================================================================== ipBlock
def test_ip_block_with_except() -> None:
    e = engine(np("db-in", "a", """  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - ipBlock: {cidr: 192.0.2.0/24, except: [192.0.2.128/25]}"""))
    assert e.connections("192.0.2.1", DB) == ALL
    assert e.connections("192.0.2.200", DB) == EMPTY  # in the except
    assert e.connections("198.51.100.1", DB) == EMPTY  # outside the cidr
    d = e.decide("192.0.2.1", DB, 5432)
    assert d.allowed and "a/db-in ingress[0]" in d.reason and "192.0.2.1 is a address outside the pods" in d.reason


def test_ip_block_covering_a_pod_ip_selects_that_pod() -> None:
    """Upstream e2e: ipBlock matches pod IPs too (netpol-analyzer and NCA disagree, see test_conformance)."""
    e = engine(np("db-in", "a", """  podSelector: {matchLabels: {app: db}}
  ingress:
  - from:
    - ipBlock: {cidr: 10.0.1.0/24, except: [10.0.1.2/32]}"""))
    assert e.connections(CLIENT, DB) == ALL  # 10.0.1.1 is covered although no selector names it
    assert e.connections(WEB_B, DB) == EMPTY  # 10.0.1.2 is in the except
    assert e.connections(OTHER, DB) == EMPTY
    assert e.connections("10.0.1.1", DB) == ALL  # the pod's IP is that pod


def test_egress_ip_block() -> None:
    e = engine(np("web-out", "a", """  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  egress:
  - to:
    - ipBlock: {cidr: 0.0.0.0/0, except: [10.0.0.0/8]}"""))
    assert e.connections(WEB, "8.8.8.8") == ALL
    assert e.connections(WEB, CLIENT) == EMPTY  # 10.0.1.1 is excepted
    d = e.decide(WEB, CLIENT, 80)
    assert d.egress_policies == ("a/web-out",) and not d.egress_allowed and d.ingress_allowed


# ================================================================================================== ports
def test_named_port_in_ingress_resolves_on_the_destination() -> None:
    e = engine(np("web-in", "a", """  podSelector: {matchLabels: {app: web}}
  ingress:
  - ports: [{port: http}]""") + np("web-in", "b", """  podSelector: {matchLabels: {app: web}}
  ingress:
  - ports: [{port: http}]"""))
    assert e.connections(CLIENT, WEB) == ConnSet.ports("TCP", 8080)
    assert e.connections(CLIENT, WEB_B) == ConnSet.ports("TCP", 9090)  # same name, other number


def test_named_port_in_egress_resolves_on_each_destination_pod() -> None:
    e = engine(np("client-out", "b", """  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
  egress:
  - to: [{namespaceSelector: {}}]
    ports: [{port: http}, {port: dns, protocol: UDP}]"""))
    assert e.connections(CLIENT, WEB) == ConnSet.ports("TCP", 8080) | ConnSet.ports("UDP", 53)
    assert e.connections(CLIENT, WEB_B) == ConnSet.ports("TCP", 9090)
    assert e.connections(CLIENT, DB) == EMPTY  # no port of those names
    assert e.connections(CLIENT, "8.8.8.8") == EMPTY  # a name cannot resolve on an address


def test_named_port_protocol_must_match() -> None:
    e = engine(np("web-in", "a", """  podSelector: {matchLabels: {app: web}}
  ingress:
  - ports: [{port: dns, protocol: TCP}, {port: http, protocol: UDP}]"""))
    assert e.connections(CLIENT, WEB) == EMPTY


def test_end_port_range_is_inclusive() -> None:
    e = engine(np("db-in", "a", """  podSelector: {matchLabels: {app: db}}
  ingress:
  - ports: [{port: 5000, endPort: 5432}]"""))
    assert e.connections(CLIENT, DB) == ConnSet.ports("TCP", 5000, 5432)
    assert e.decide(CLIENT, DB, 5432).allowed and e.decide(CLIENT, DB, 5000).allowed
    assert not e.decide(CLIENT, DB, 5433).allowed and not e.decide(CLIENT, DB, 4999).allowed
    assert str(e.connections(CLIENT, DB)) == "TCP:5000-5432"


def test_protocols_are_distinct() -> None:
    e = engine(np("web-in", "a", """  podSelector: {matchLabels: {app: web}}
  ingress:
  - ports: [{port: 53, protocol: UDP}, {port: 80}, {protocol: SCTP}]"""))
    conns = e.connections(CLIENT, WEB)
    assert conns == ConnSet.ports("UDP", 53) | ConnSet.ports("TCP", 80) | ConnSet.ports("SCTP")
    assert not e.decide(CLIENT, WEB, 53, "TCP").allowed
    assert e.decide(CLIENT, WEB, 53, "UDP").allowed
    assert e.decide(CLIENT, WEB, 9, "SCTP").allowed
    assert str(conns) == "TCP:80;UDP:53;SCTP:1-65535"


# ============================================================================= policyTypes and directions
def test_policy_types_default_to_ingress_only_without_egress_rules() -> None:
    e = engine(np("web", "a", """  podSelector: {matchLabels: {app: web}}
  ingress: [{from: [{podSelector: {matchLabels: {app: db}}}]}]"""))
    assert e.connections(WEB, CLIENT) == ALL  # egress not isolated
    assert e.connections(CLIENT, WEB) == EMPTY


def test_policy_types_default_includes_egress_when_egress_rules_exist() -> None:
    e = engine(np("web", "a", """  podSelector: {matchLabels: {app: web}}
  egress: [{to: [{podSelector: {matchLabels: {app: db}}}]}]"""))
    assert e.connections(WEB, DB) == ALL
    assert e.connections(WEB, CLIENT) == EMPTY  # egress isolated
    assert e.connections(DB, WEB) == EMPTY  # and ingress too: defaulted types are [Ingress, Egress]


def test_explicit_egress_only_policy_does_not_isolate_ingress() -> None:
    e = engine(np("web", "a", """  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]"""))
    assert e.connections(WEB, DB) == EMPTY
    assert e.connections(DB, WEB) == ALL
    d = e.decide(DB, WEB, 80)
    assert d.allowed and d.ingress_policies == ()
    assert e.decide(WEB, DB, 80).egress_policies == ("a/web",)


def test_ingress_rules_ignored_when_policy_types_say_egress_only() -> None:
    e = engine(np("web", "a", """  podSelector: {matchLabels: {app: web}}
  policyTypes: [Egress]
  ingress: [{from: [{podSelector: {matchLabels: {app: db}}}]}]
  egress: [{}]"""))
    assert e.connections(CLIENT, WEB) == ALL


def test_union_across_policies() -> None:
    e = engine(np("p80", "a", """  podSelector: {matchLabels: {app: web}}
  ingress: [{ports: [{port: 80}]}]""") + np("p443", "a", """  podSelector: {}
  ingress: [{from: [{namespaceSelector: {matchLabels: {team: b}}}], ports: [{port: 443}]}]"""))
    assert e.connections(CLIENT, WEB) == TCP80 | ConnSet.ports("TCP", 443)
    assert e.connections(OTHER, WEB) == TCP80
    assert e.connections(CLIENT, DB) == ConnSet.ports("TCP", 443)
    d = e.decide(CLIENT, WEB, 443)
    assert d.allowed and d.ingress_policies == ("a/p443", "a/p80") and "a/p443 ingress[0]" in d.reason


def test_flow_needs_both_egress_and_ingress() -> None:
    e = engine(np("client-out", "b", """  podSelector: {matchLabels: {app: client}}
  policyTypes: [Egress]
  egress: [{ports: [{port: 80}, {port: 443}]}]""") + np("web-in", "a", """  podSelector: {matchLabels: {app: web}}
  ingress: [{ports: [{port: 443}, {port: 8443}]}]"""))
    assert e.connections(CLIENT, WEB) == ConnSet.ports("TCP", 443)
    d = e.decide(CLIENT, WEB, 80)
    assert not d.allowed and d.egress_allowed and not d.ingress_allowed
    assert d.reason.startswith("denied TCP/80: ingress:")  # leads with the direction that blocked
    d = e.decide(CLIENT, WEB, 8443)
    assert not d.allowed and not d.egress_allowed and d.ingress_allowed
    assert d.egress_policies == ("b/client-out",) and d.ingress_policies == ("a/web-in",)


# ============================================================================================ hostNetwork
def test_host_network_pods_are_not_selected_nor_selectable() -> None:
    host = pod("a", "node-agent", {"app": "db"}, ip="172.16.0.1", host_network=True)
    e = engine(np("deny-all", "a", "  podSelector: {}\n  policyTypes: [Ingress, Egress]") +
               np("db-from-b", "b", """  podSelector: {}
  ingress: [{from: [{namespaceSelector: {matchLabels: {team: a}}, podSelector: {matchLabels: {app: db}}}]}]"""),
               pods=[*PODS, host])
    assert e.connections(CLIENT, host) == ALL  # deny-all of namespace a does not isolate it
    assert e.connections(host, CLIENT) == EMPTY  # ...but its labels do not let it in where a/db is allowed
    assert e.connections(DB, CLIENT) == EMPTY  # (a/db itself is egress-isolated by deny-all)
    d = e.decide(CLIENT, host, 80)
    assert d.allowed and d.ingress_policies == () and "host-network pod" in d.reason


# ============================================================================================ admin tiers
def anp(name: str, priority: int, body: str, kind: str = "AdminNetworkPolicy") -> str:
    prio = f"  priority: {priority}\n" if kind != "BaselineAdminNetworkPolicy" else ""
    return (f"apiVersion: policy.networking.k8s.io/v1alpha1\nkind: {kind}\nmetadata: {{name: {name}}}\n"
            f"spec:\n{prio}{body}\n---\n")


def cnp(name: str, tier: str, priority: int, body: str) -> str:
    return (f"apiVersion: policy.networking.k8s.io/v1alpha2\nkind: ClusterNetworkPolicy\nmetadata: {{name: {name}}}\n"
            f"spec:\n  tier: {tier}\n  priority: {priority}\n{body}\n---\n")


SUBJECT_A = "  subject: {namespaces: {matchLabels: {team: a}}}\n"
FROM_B = "from: [{namespaces: {matchLabels: {team: b}}}]"


def test_anp_deny_overrides_network_policy_allow() -> None:
    e = engine(anp("deny-b", 10, SUBJECT_A + f"  ingress: [{{name: no-b, action: Deny, {FROM_B}}}]")
               + np("allow-all", "a", "  podSelector: {}\n  ingress: [{}]"))
    assert e.connections(CLIENT, WEB) == EMPTY
    assert e.connections(OTHER, WEB) == ALL
    d = e.decide(CLIENT, WEB, 80)
    assert not d.allowed and "AdminNetworkPolicy/deny-b rule 'no-b' denies it" in d.reason


def test_anp_allow_overrides_network_policy_deny() -> None:
    e = engine(anp("allow-b", 10, SUBJECT_A + f"  ingress: [{{name: yes-b, action: Allow, {FROM_B}, "
                                              "ports: [{portNumber: {protocol: TCP, port: 80}}]}]")
               + np("deny-all", "a", "  podSelector: {}"))
    assert e.connections(CLIENT, WEB) == TCP80  # the rest falls through to the deny-all NetworkPolicy
    d = e.decide(CLIENT, WEB, 80)
    assert d.allowed and "AdminNetworkPolicy/allow-b rule 'yes-b' allows it" in d.reason


def test_admin_rule_verbs_in_explanations() -> None:
    """Pinned: explanations read "denies"/"passes" (they once said "denys"/"passs")."""
    e = engine(anp("x", 1, SUBJECT_A + "  ingress:\n"
                   f"  - {{name: p, action: Pass, {FROM_B}, ports: [{{portNumber: {{protocol: TCP, port: 1}}}}]}}\n"
                   f"  - {{name: d, action: Deny, {FROM_B}}}"))
    assert "AdminNetworkPolicy/x rule 'd' denies it" in e.decide(CLIENT, WEB, 80).reason
    assert "AdminNetworkPolicy/x rule 'p' passes it" in e.decide(CLIENT, WEB, 1).reason


def test_anp_priorities_lower_number_wins_and_rule_order_within_a_policy() -> None:
    e = engine(anp("allow-80", 5, SUBJECT_A + f"  ingress: [{{name: r, action: Allow, {FROM_B}, "
                                              "ports: [{portNumber: {protocol: TCP, port: 80}}]}]")
               + anp("deny-all-b", 20, SUBJECT_A + f"  ingress: [{{name: r, action: Deny, {FROM_B}}}]")
               + anp("order", 30, SUBJECT_A + "  ingress:\n"
                     "  - {name: first, action: Deny, from: [{namespaces: {}}], ports: [{portRange: "
                     "{protocol: UDP, start: 50, end: 60}}]}\n"
                     "  - {name: second, action: Allow, from: [{namespaces: {}}]}"))
    assert e.connections(CLIENT, WEB) == TCP80
    assert e.connections(OTHER, WEB) == ALL - ConnSet.ports("UDP", 50, 60)


def test_anp_pass_delegates_to_network_policy_then_baseline() -> None:
    passing = anp("pass-b", 1, SUBJECT_A + f"  ingress: [{{name: p, action: Pass, {FROM_B}}}]")
    banp_deny = anp("default", 0, SUBJECT_A + f"  ingress: [{{name: b, action: Deny, {FROM_B}}}]",
                    kind="BaselineAdminNetworkPolicy")
    lower_allow = anp("allow-b", 50, SUBJECT_A + f"  ingress: [{{name: a, action: Allow, {FROM_B}}}]")
    # Pass skips the rest of the admin tier (a lower-priority Allow is not reached) -> baseline denies.
    e = engine(passing + lower_allow + banp_deny)
    assert e.connections(CLIENT, WEB) == EMPTY
    # With a NetworkPolicy selecting the pod, it decides after Pass (and the baseline is not consulted).
    e = engine(passing + banp_deny + np("web-80", "a", "  podSelector: {matchLabels: {app: web}}\n"
                                                       "  ingress: [{ports: [{port: 80}]}]"))
    assert e.connections(CLIENT, WEB) == TCP80
    assert e.connections(CLIENT, DB) == EMPTY  # a/db: not selected by any NetworkPolicy -> baseline deny


def test_baseline_applies_only_where_no_network_policy_isolates() -> None:
    banp = anp("default", 0, SUBJECT_A + f"  ingress: [{{name: b, action: Deny, {FROM_B}}}]",
               kind="BaselineAdminNetworkPolicy")
    e = engine(banp + np("web-open", "a", "  podSelector: {matchLabels: {app: web}}\n  ingress: [{}]"))
    assert e.connections(CLIENT, WEB) == ALL  # NetworkPolicy allows: baseline ignored
    assert e.connections(CLIENT, DB) == EMPTY  # no NetworkPolicy: baseline denies
    assert e.connections(OTHER, DB) == ALL  # baseline does not match c
    d = e.decide(CLIENT, DB, 80)
    assert "BaselineAdminNetworkPolicy/default rule 'b' denies it" in d.reason


def test_baseline_allow_does_not_override_network_policy_isolation() -> None:
    banp = anp("default", 0, SUBJECT_A + f"  ingress: [{{name: b, action: Allow, {FROM_B}}}]",
               kind="BaselineAdminNetworkPolicy")
    e = engine(banp + np("deny", "a", "  podSelector: {}"))
    assert e.connections(CLIENT, WEB) == EMPTY


def test_anp_pod_subject_egress_named_port_and_networks() -> None:
    e = engine(anp("egress", 3, """  subject: {pods: {namespaceSelector: {matchLabels: {team: b}}, podSelector: {matchLabels: {app: client}}}}
  egress:
  - {name: web-http, action: Allow, to: [{pods: {namespaceSelector: {}, podSelector: {matchLabels: {app: web}}}}], ports: [{namedPort: http}]}
  - {name: dns-net, action: Allow, to: [{networks: [8.8.8.0/24]}]}
  - {name: rest, action: Deny, to: [{namespaces: {}}, {networks: [0.0.0.0/0]}]}"""))  # noqa: E501
    assert e.connections(CLIENT, WEB) == ConnSet.ports("TCP", 8080)
    assert e.connections(CLIENT, WEB_B) == ConnSet.ports("TCP", 9090)
    assert e.connections(CLIENT, DB) == EMPTY
    assert e.connections(CLIENT, "8.8.8.8") == ALL
    assert e.connections(CLIENT, "1.1.1.1") == EMPTY
    assert e.connections(WEB_B, DB) == ALL  # not a subject


def test_cluster_network_policy_admin_tier_accept_deny_pass_and_protocols() -> None:
    e = engine(cnp("admin", "Admin", 10, SUBJECT_A + """  ingress:
  - name: dns
    action: Accept
    from: [{namespaces: {}}]
    protocols: [{udp: {destinationPort: {number: 53}}}]
  - name: pass-tcp-range
    action: Pass
    from: [{namespaces: {}}]
    protocols: [{tcp: {destinationPort: {range: {start: 8000, end: 8999}}}}]
  - name: deny-rest
    action: Deny
    from: [{namespaces: {}}]""") + np("web-8080", "a", "  podSelector: {}\n  ingress: [{ports: [{port: 8080}]}]"))
    assert e.connections(CLIENT, WEB) == ConnSet.ports("UDP", 53) | ConnSet.ports("TCP", 8080)
    d = e.decide(CLIENT, WEB, 53, "UDP")
    assert d.allowed and "ClusterNetworkPolicy/admin rule 'dns' allows it" in d.reason
    d = e.decide(CLIENT, WEB, 8081)
    assert not d.allowed and "passes it" in d.reason and "no rule allows" in d.reason


def test_cluster_network_policy_baseline_tier_and_named_port() -> None:
    e = engine(cnp("base", "Baseline", 10, SUBJECT_A + """  ingress:
  - {name: http, action: Accept, from: [{namespaces: {}}], protocols: [{destinationNamedPort: http}]}
  - {name: sctp, action: Pass, from: [{namespaces: {}}],
     protocols: [{sctp: {destinationPort: {range: {start: 1, end: 65535}}}}]}
  - {name: deny, action: Deny, from: [{namespaces: {}}]}"""))
    assert e.connections(CLIENT, WEB) == ConnSet.ports("TCP", 8080) | ConnSet.ports("SCTP")
    assert e.connections(CLIENT, DB) == ConnSet.ports("SCTP")
    assert e.connections(WEB, CLIENT) == ALL  # namespace b is no subject


def test_tier_order_admin_then_network_policy_then_baseline() -> None:
    policies = (cnp("admin-deny-81", "Admin", 1, SUBJECT_A + f"  ingress: [{{name: d, action: Deny, {FROM_B}, "
                                                             "protocols: [{tcp: {destinationPort: {number: 81}}}]}]")
                + np("np", "a", "  podSelector: {matchLabels: {app: web}}\n"
                                "  ingress: [{ports: [{port: 80}, {port: 81}]}]")
                + anp("default", 0, SUBJECT_A + f"  ingress: [{{name: b, action: Deny, {FROM_B}}}]",
                      kind="BaselineAdminNetworkPolicy"))
    e = engine(policies)
    assert e.connections(CLIENT, WEB) == TCP80  # admin denies 81, NetworkPolicy allows 80 only
    assert e.connections(CLIENT, DB) == EMPTY  # no NetworkPolicy on a/db: baseline denies
    assert e.connections(WEB, DB) == ALL  # baseline matches only b -> default allow

"""The offline analyzer's command-line contracts (DESIGN.md): shapes, exit codes, and one-line errors."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from monitor.cli import main

EXAMPLES = Path(__file__).resolve().parents[1] / "config" / "examples"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


TWO_PODS = """
    apiVersion: v1
    kind: List
    items:
      - apiVersion: v1
        kind: Pod
        metadata: {name: a, namespace: ns1, labels: {app: a}}
        spec: {containers: [{name: c, ports: [{containerPort: 80}, {containerPort: 53, protocol: UDP}]}]}
        status: {podIP: 10.0.0.1}
      - apiVersion: v1
        kind: Pod
        metadata: {name: b, namespace: ns2, labels: {app: b}}
        spec: {containers: [{name: c, ports: [{name: web, containerPort: 8080}]}]}
        status: {podIP: 10.0.0.2}
    """


def test_matrix_json_has_one_flow_per_ordered_pair_and_port(tmp_path, capsys):
    write(tmp_path, "m/pods.yaml", TWO_PODS)
    write(tmp_path, "m/np.yaml", """
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: only-web, namespace: ns2}
        spec:
          podSelector: {}
          ingress: [{ports: [{port: web}]}]
        """)
    code, out, _ = run(capsys, "matrix", "--manifests", str(tmp_path / "m"), "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["pods"] == ["ns1/a", "ns2/b"]
    # Without --port: every port/protocol some pod declares (TCP 80, TCP 8080, UDP 53) x 2 ordered pairs.
    assert len(data["flows"]) == 6
    assert set(data["flows"][0]) == {"from", "to", "port", "protocol", "allowed", "reason"}
    verdicts = {(f["from"], f["to"], f["port"], f["protocol"]): f["allowed"] for f in data["flows"]}
    assert verdicts[("ns1/a", "ns2/b", 8080, "TCP")] is True
    assert verdicts[("ns1/a", "ns2/b", 80, "TCP")] is False
    assert verdicts[("ns2/b", "ns1/a", 80, "TCP")] is True
    denied = next(f for f in data["flows"] if f["to"] == "ns2/b" and f["port"] == 80)
    assert "ns2/only-web" in denied["reason"]


def test_matrix_tsv_is_the_full_connection_set(tmp_path, capsys):
    write(tmp_path, "m/pods.yaml", TWO_PODS)
    write(tmp_path, "m/np.yaml", """
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: ranges, namespace: ns2}
        spec:
          podSelector: {}
          ingress:
            - ports: [{port: 9000, endPort: 9100}, {port: 80}, {protocol: UDP, port: 53}, {port: web}]
        """)
    code, out, _ = run(capsys, "matrix", "--manifests", str(tmp_path / "m"), "--format", "tsv")
    assert code == 0
    assert out.splitlines() == ["ns1/a\tns2/b\tTCP:80,8080,9000-9100;UDP:53", "ns2/b\tns1/a\tall"]


def test_matrix_table_marks_allowed_and_denied(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    write(tmp_path, "m/pods.yaml", TWO_PODS)
    code, out, _ = run(capsys, "matrix", "--manifests", str(tmp_path / "m"), "--port", "80/TCP")
    assert code == 0
    assert "TCP/80" in out and out.count("✓") == 3  # two allowed cells + the legend


def test_check_exit_codes_follow_the_suite(capsys):
    code, out, _ = run(capsys, "check", "--manifests", str(EXAMPLES / "shop"), "--suite",
                       str(EXAMPLES / "shop" / "suite.yaml"), "--format", "json")
    assert code == 0
    assert json.loads(out)["ok"] is True
    code, out, _ = run(capsys, "check", "--manifests", str(EXAMPLES / "shop-changed"), "--suite",
                       str(EXAMPLES / "shop" / "suite.yaml"), "--format", "json")
    assert code == 1
    failed = [c["name"] for c in json.loads(out)["cases"] if c["result"] == "fail"]
    assert failed == ["api-to-payments"]


def test_check_exits_1_on_a_skipped_case_unless_allow_skipped(tmp_path, capsys):
    """Exit 0 means verified: a case that could not be evaluated is never a pass (issue 8 item 2)."""
    suite = write(tmp_path, "suite.yaml", """
        cases:
          - name: ghost
            from: {namespace: shop, workload: does-not-run}
            to: {namespace: shop, workload: api}
            port: 9000
            expect: allow
          - name: fine
            from: {namespace: shop, workload: frontend}
            to: {namespace: shop, workload: api}
            port: http
            expect: allow
        """)
    argv = ("check", "--manifests", str(EXAMPLES / "shop"), "--suite", str(suite))
    code, out, _ = run(capsys, *argv, "--format", "json")
    assert code == 1
    data = json.loads(out)
    assert data["ok"] is False and data["verified"] is False
    case = data["cases"][0]
    assert case["result"] == "skipped"
    assert case["flows"][0]["reason"].startswith("no live pod matches source shop/does-not-run")
    code, out, _ = run(capsys, *argv, "--format", "json", "--allow-skipped")
    assert code == 0 and json.loads(out)["ok"] is True
    code, out, _ = run(capsys, *argv)  # the table says why on the case's own line, and why the exit is 1
    ghost = next(line for line in out.splitlines() if " ghost " in line)
    assert "SKIPPED" in ghost and "no live pod matches source shop/does-not-run" in ghost
    assert "1 case(s) not verified" in out and "--allow-skipped" in out


def test_check_skip_in_a_namespace_with_pods_names_the_likely_typo(tmp_path, capsys):
    write(tmp_path, "m/all.yaml", (EXAMPLES / "shop" / "workloads.yaml").read_text().replace(
        "kind: Deployment\nmetadata: {name: frontend", "kind: Deploymnet\nmetadata: {name: frontend"))
    suite = write(tmp_path, "suite.yaml", """
        cases:
          - name: misspelt-workload
            from: {namespace: shop, workload: frontnd}
            to: {namespace: shop, workload: api}
            port: 9000
            expect: allow
          - name: misspelt-kind
            from: {namespace: shop, workload: Deploymnet/api}
            to: {namespace: shop, workload: db}
            port: 5432
            expect: allow
          - name: kind-typo-in-the-manifests
            from: {namespace: shop, workload: frontend}
            to: {namespace: shop, workload: api}
            port: 9000
            expect: allow
        """)
    code, out, _ = run(capsys, "check", "--manifests", str(tmp_path / "m"), "--suite", str(suite),
                       "--format", "json")
    assert code == 1
    reasons = {c["name"]: c["flows"][0]["reason"] for c in json.loads(out)["cases"]}
    assert "likely a typo" in reasons["misspelt-workload"]
    assert "workloads there: api, db" in reasons["misspelt-workload"]
    assert "did you mean Deployment/api?" in reasons["misspelt-kind"]
    # `kind: Deploymnet` is not a workload kind: frontend has no pod, and the reason says what does exist.
    assert "no live pod matches source shop/frontend, but namespace shop has pods" in \
        reasons["kind-typo-in-the-manifests"]


def test_check_case_port_that_is_not_a_service_port_is_an_input_error(tmp_path, capsys):
    """Issue 8 item 7: no silent fallback to the pod port (9000 is api's container port, not the Service's)."""
    suite = write(tmp_path, "suite.yaml", """
        cases:
          - name: api-service-on-the-pod-port
            from: {namespace: shop, workload: frontend}
            to: {service: shop/api}
            ports: [80, 9000]
            expect: allow
        """)
    code, out, err = run(capsys, "check", "--manifests", str(EXAMPLES / "shop"), "--suite", str(suite))
    assert code == 2 and out == ""
    assert err == (f"netpol-drift: error: {suite}: case api-service-on-the-pod-port: ports[1]: 9000 is not a TCP "
                   f"port of Service shop/api (its ports: 80/TCP (http))\n")


def test_check_case_from_a_workload_to_itself_is_skipped_with_a_reason(tmp_path, capsys):
    suite = write(tmp_path, "suite.yaml", """
        cases:
          - name: api-to-itself
            from: {namespace: shop, workload: api}
            to: {namespace: shop, labels: {app: api}}
            port: 9000
            expect: allow
        """)
    code, out, _ = run(capsys, "check", "--manifests", str(EXAMPLES / "shop"), "--suite", str(suite),
                       "--format", "json")
    assert code == 1
    case = json.loads(out)["cases"][0]
    assert case["result"] == "skipped"
    assert case["flows"][0]["reason"].startswith("from a workload to itself: its only pod (shop/api)")


def test_diff_names_the_policy_that_cut_a_flow(capsys):
    code, out, _ = run(capsys, "diff", "--before", str(EXAMPLES / "shop"), "--after",
                       str(EXAMPLES / "shop-changed"), "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["policy_changes"]["changed"] == ["shop/api-egress", "shop/api-to-db", "shop/scrape-metrics"]
    lost = {(f["from"], f["to"]): f for f in data["flows"]}
    assert lost[("shop/api", "payments/gateway")]["removed"] == "TCP:8443"
    assert lost[("shop/api", "payments/gateway")]["causes"] == ["NetworkPolicy shop/api-egress changed (egress)"]
    # api-to-db changed too, but moved no flow (api is the only tier=backend pod): it explains nothing.
    assert lost[("monitoring/prometheus", "shop/frontend")]["causes"] == [
        "NetworkPolicy shop/scrape-metrics changed (pod_selector)"]
    assert len(data["flows"]) == 2


def test_diff_blames_a_pod_relabel_not_the_unchanged_policies(tmp_path, capsys):
    before, after = tmp_path / "before", tmp_path / "after"
    for d, tier in ((before, "backend"), (after, "legacy")):
        write(tmp_path, f"{d.name}/all.yaml", f"""
            apiVersion: v1
            kind: List
            items:
              - apiVersion: v1
                kind: Pod
                metadata: {{name: api, namespace: shop, labels: {{tier: {tier}}}}}
                spec: {{containers: [{{name: c, ports: [{{containerPort: 5432}}]}}]}}
              - apiVersion: v1
                kind: Pod
                metadata: {{name: db, namespace: shop, labels: {{app: db}}}}
                spec: {{containers: [{{name: c, ports: [{{containerPort: 5432}}]}}]}}
              - apiVersion: networking.k8s.io/v1
                kind: NetworkPolicy
                metadata: {{name: db, namespace: shop}}
                spec:
                  podSelector: {{matchLabels: {{app: db}}}}
                  ingress: [{{from: [{{podSelector: {{matchLabels: {{tier: backend}}}}}}]}}]
            """)
    code, out, _ = run(capsys, "diff", "--before", str(before), "--after", str(after), "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["policy_changes"] == {"added": [], "removed": [], "changed": []}
    assert [(f["from"], f["to"], f["removed"], f["causes"]) for f in data["flows"]] == [
        ("shop/api", "shop/db", "all", ["pod shop/api: labels tier: backend -> legacy"])]


def test_diff_shows_the_flows_of_added_and_removed_pods(tmp_path, capsys, monkeypatch):
    """Issue 8 item 6: a new workload with open egress printed "no flow changed"."""
    monkeypatch.setenv("NO_COLOR", "1")
    before, after = tmp_path / "before", tmp_path / "after"
    for d in (before, after):
        write(tmp_path, f"{d.name}/shop.yaml", (EXAMPLES / "shop" / "workloads.yaml").read_text())
        write(tmp_path, f"{d.name}/policies.yaml", (EXAMPLES / "shop" / "policies.yaml").read_text())
    write(tmp_path, "after/scraper.yaml", """
        apiVersion: apps/v1
        kind: Deployment
        metadata: {name: scraper, namespace: monitoring}
        spec:
          template:
            metadata: {labels: {app: scraper}}
            spec: {containers: [{name: s, ports: [{containerPort: 8000}]}]}
        """)
    code, out, _ = run(capsys, "diff", "--before", str(before), "--after", str(after), "--format", "json")
    assert code == 0
    data = json.loads(out)
    assert data["pods_added"] == ["monitoring/scraper"] and data["pods_removed"] == []
    flows = {(f["from"], f["to"]): f for f in data["flows"]}
    assert flows and all(f["change"] == "added" for f in flows.values())
    # Its open egress reaches prometheus (no policy isolates it), and prometheus reaches it back.
    out_flow = flows[("monitoring/scraper", "monitoring/prometheus")]
    assert (out_flow["before"], out_flow["after"], out_flow["added"]) == ("none", "all", "all")
    assert out_flow["causes"] == ["pod monitoring/scraper added"]
    assert "no NetworkPolicy selects monitoring/scraper for egress" in out_flow["reason"]
    assert ("monitoring/prometheus", "monitoring/scraper") in flows
    code, out, _ = run(capsys, "diff", "--before", str(after), "--after", str(before))
    assert code == 0 and "no flow changed" not in out
    assert "pod removed: monitoring/scraper (Deployment/scraper)" in out
    line = next(x for x in out.splitlines() if x.startswith("monitoring/scraper") and "prometheus" in x)
    assert "-all" in line and "pod monitoring/scraper removed" in line


# ----------------------------------------------------------------------------------------- bad input
BAD_INPUT = [
    ("malformed YAML", "p.yaml", "kind: NetworkPolicy\nmetadata: {name: x\n",
     "{file}: not valid YAML: did not find expected ',' or '}}' (line 3, column 1)"),
    ("invalid selector operator", "p.yaml", """
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: bad-op, namespace: shop}
        spec:
          podSelector: {matchExpressions: [{key: app, operator: Equals, values: [a]}]}
        """,
     "{file}: NetworkPolicy shop/bad-op: spec.podSelector.matchExpressions[0].operator: invalid operator "
     "'Equals' (expected In, NotIn, Exists or DoesNotExist)"),
    ("unknown policy field", "p.yaml", """
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: typo, namespace: shop}
        spec:
          podSelector: {}
          ingress: [{form: [{podSelector: {}}]}]
        """,
     "{file}: NetworkPolicy shop/typo: spec.ingress[0].form: unknown field (expected one of: from, ports)"),
    ("ipBlock mixed with a selector", "p.yaml", """
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: mixed, namespace: shop}
        spec:
          podSelector: {}
          egress: [{to: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]}]
        """,
     "{file}: NetworkPolicy shop/mixed: spec.egress[0].to[0]: ipBlock cannot be combined with podSelector or "
     "namespaceSelector"),
    ("bad CIDR", "p.yaml", """
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: cidr, namespace: shop}
        spec:
          podSelector: {}
          egress: [{to: [{ipBlock: {cidr: 10.0.0.0/33}}]}]
        """,
     "{file}: NetworkPolicy shop/cidr: spec.egress[0].to[0].ipBlock.cidr: invalid CIDR '10.0.0.0/33'"),
    ("bad protocol", "p.yaml", """
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: proto, namespace: shop}
        spec:
          podSelector: {}
          ingress: [{ports: [{protocol: ICMP}]}]
        """,
     "{file}: NetworkPolicy shop/proto: spec.ingress[0].ports[0].protocol: unsupported protocol 'ICMP' "
     "(expected TCP, UDP or SCTP)"),
    ("ANP with a bad action", "p.yaml", """
        apiVersion: policy.networking.k8s.io/v1alpha1
        kind: AdminNetworkPolicy
        metadata: {name: anp}
        spec:
          priority: 10
          subject: {namespaces: {}}
          ingress: [{action: Accept, from: [{namespaces: {}}]}]
        """,
     "{file}: AdminNetworkPolicy anp: spec.ingress[0].action: invalid action 'Accept' (expected Allow, Deny, Pass)"),
    ("CNP with a bad tier", "p.yaml", """
        apiVersion: policy.networking.k8s.io/v1alpha2
        kind: ClusterNetworkPolicy
        metadata: {name: cnp}
        spec: {tier: Developer, priority: 1, subject: {namespaces: {}}}
        """,
     "{file}: ClusterNetworkPolicy cnp: spec.tier: must be Admin or Baseline, got 'Developer'"),
    ("not a mapping", "p.json", "[1, 2]", "{file}: a manifest must be a mapping, got list"),
]


@pytest.mark.parametrize(("what", "name", "text", "message"), BAD_INPUT, ids=[b[0] for b in BAD_INPUT])
def test_bad_manifests_fail_with_one_line(tmp_path, capsys, what, name, text, message):
    path = write(tmp_path, f"m/{name}", text)
    code, out, err = run(capsys, "matrix", "--manifests", str(tmp_path / "m"), "--format", "json")
    assert code == 2
    assert out == ""
    assert err == f"netpol-drift: error: {message.format(file=path)}\n"


BAD_SUITES = [
    ("missing namespace", """
        cases:
          - name: to-nowhere
            from: {namespace: shop, workload: frontend}
            to: {namespace: nope, workload: api}
            port: 80
            expect: allow
        """, "{file}: case to-nowhere: to.namespace: namespace 'nope' does not exist"),
    ("unknown case key", """
        cases:
          - name: c1
            from: {namespace: shop, workload: frontend}
            to: {namespace: shop, workload: api}
            port: 80
            expect: allow
            timeout: 3
        """, "{file}: case c1: timeout: unknown key (expected one of: name, from, to, port, ports, protocol, expect, "
             "description)"),
    ("bad expectation", """
        cases:
          - name: c1
            from: {namespace: shop, workload: frontend}
            to: {namespace: shop, workload: api}
            port: 80
            expect: maybe
        """, "{file}: case c1: expect: must be allow or deny, got 'maybe'"),
    ("duplicate names", """
        cases:
          - {name: c1, from: {namespace: shop, pod: a}, to: {namespace: shop, pod: b}, port: 80, expect: allow}
          - {name: c1, from: {namespace: shop, pod: b}, to: {namespace: shop, pod: a}, port: 80, expect: allow}
        """, "{file}: case c1: name: duplicate case name (names must be unique: history aligns on them)"),
    ("bad port", """
        cases:
          - {name: c1, from: {namespace: shop, pod: a}, to: {namespace: shop, pod: b}, port: 70000, expect: allow}
        """, "{file}: case c1: port: must be 1-65535, got 70000"),
    ("source as a service", """
        cases:
          - {name: c1, from: {service: shop/api}, to: {namespace: shop, pod: b}, port: 80, expect: allow}
        """, "{file}: case c1: from.service: only a destination can be a Service or an address"),
    ("missing service", """
        cases:
          - {name: c1, from: {namespace: shop, workload: api}, to: {service: shop/nope}, port: 80, expect: allow}
        """, "{file}: case c1: to.service: Service 'shop/nope' does not exist"),
    ("bad selector in a suite", """
        cases:
          - name: c1
            from: {namespace: shop, podSelector: {matchExpressions: [{key: app, operator: In}]}}
            to: {namespace: shop, workload: api}
            port: 80
            expect: allow
        """, "{file}: case c1: from.podSelector.matchExpressions[0].values: must be non-empty for operator In"),
    ("empty suite", "cases: []\n", "{file}: cases: must be a non-empty list"),
]


@pytest.mark.parametrize(("what", "text", "message"), BAD_SUITES, ids=[b[0] for b in BAD_SUITES])
def test_bad_suites_fail_with_one_line(tmp_path, capsys, what, text, message):
    suite = write(tmp_path, "suite.yaml", text)
    code, out, err = run(capsys, "check", "--manifests", str(EXAMPLES / "shop"), "--suite", str(suite))
    assert (code, out) == (2, "")
    assert err == f"netpol-drift: error: {message.format(file=suite)}\n"


def test_missing_directory_and_bad_port_flag(tmp_path, capsys):
    code, _, err = run(capsys, "matrix", "--manifests", str(tmp_path / "nope"))
    assert (code, err) == (2, f"netpol-drift: error: {tmp_path / 'nope'}: no such directory\n")
    code, _, err = run(capsys, "matrix", "--manifests", str(EXAMPLES / "shop"), "--port", "80/ICMP")
    assert (code, err) == (2, "netpol-drift: error: --port: invalid port '80/ICMP' (expected PORT/PROTOCOL such "
                              "as 80/TCP)\n")


def test_diff_needs_both_directories(capsys):
    code, _, err = run(capsys, "diff", "--before", str(EXAMPLES / "shop"))
    assert (code, err) == (2, "netpol-drift: error: diff: needs --before DIR and --after DIR (or two run ids)\n")


def test_matrix_reasons_name_each_pod_even_when_shared_by_its_class(tmp_path, capsys):
    # a and a-2 are one class (same labels), so their explanation is computed once; the policy name starts
    # with a pod's name, which a naive text substitution would corrupt.
    docs = [f"apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: ns, labels: {{app: {app}, "
            f"build: '{i}'}}}}\nspec: {{containers: [{{name: c, ports: [{{containerPort: 80}}]}}]}}\n"
            for i, (name, app) in enumerate((("a", "a"), ("a-2", "a"), ("b", "b")))]
    docs.append("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: a-policy, namespace: ns}\n"
                "spec: {podSelector: {matchLabels: {app: b}}, ingress: []}\n")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "all.yaml").write_text("---\n".join(docs))
    code, out, _ = run(capsys, "matrix", "--manifests", str(tmp_path / "m"), "--format", "json")
    assert code == 0
    reasons = {(f["from"], f["to"]): f["reason"] for f in json.loads(out)["flows"]}
    assert reasons[("ns/a-2", "ns/b")] == (
        "denied TCP/80: ingress: ns/b is isolated by NetworkPolicy ns/a-policy and no rule allows ns/a-2 "
        "[app=a,build=1]")
    assert reasons[("ns/a", "ns/b")] == (
        "denied TCP/80: ingress: ns/b is isolated by NetworkPolicy ns/a-policy and no rule allows ns/a "
        "[app=a,build=0]")

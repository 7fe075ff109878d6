"""Offline must say what live says (issue 8 item 5): the address model of pods without an IP, dual-stack and
IPv6 pods and ipBlocks, and a dump's workloads and pods read as one workload each.

Manifests rarely give pod IPs (a Deployment has none), while ipBlocks select pods by IP: these tests pin
what the analyzer assumes, where the answer depends on it, and that it says so.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
import yaml

from monitor.cli import main
from monitor.engine import Engine
from monitor.engine.matrix import class_matrix
from monitor.manifests import load_manifests


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def deployment(name: str, port: int = 80) -> str:
    return f"""
        apiVersion: apps/v1
        kind: Deployment
        metadata: {{name: {name}, namespace: shop}}
        spec:
          template:
            metadata: {{labels: {{app: {name}}}}}
            spec: {{containers: [{{name: c, ports: [{{containerPort: {port}}}]}}]}}
        ---"""


def egress_policy(block: str) -> str:
    return f"""
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {{name: a-egress, namespace: shop}}
        spec:
          podSelector: {{matchLabels: {{app: a}}}}
          policyTypes: [Egress]
          egress: [{{to: [{{ipBlock: {block}}}]}}]
        """


def two_deployments(tmp_path: Path, block: str) -> Path:
    write(tmp_path / "m" / "all.yaml", deployment("a") + deployment("b") + egress_policy(block))
    return tmp_path / "m"


A_TO_B = """
    cases:
      - name: a-to-b
        from: {namespace: shop, workload: a}
        to: {namespace: shop, workload: b}
        port: 80
        expect: %s
    """


def test_egress_to_every_address_allows_pod_to_pod_offline_as_it_does_live(tmp_path, capsys):
    """Live, a pod's IP is in 0.0.0.0/0, so the egress reaches b; offline the pods had no IP and were denied."""
    m = two_deployments(tmp_path, "{cidr: 0.0.0.0/0}")
    code, out, err = run(capsys, "matrix", "--manifests", str(m), "--format", "tsv")
    assert code == 0 and err == ""
    assert out.splitlines() == ["shop/a\tshop/b\tall", "shop/b\tshop/a\tall"]
    suite = write(tmp_path / "suite.yaml", A_TO_B % "allow")
    code, out, _ = run(capsys, "check", "--manifests", str(m), "--suite", str(suite), "--format", "json")
    assert code == 0 and json.loads(out)["cases"][0]["result"] == "pass"
    code, out, _ = run(capsys, "suite", "generate", "--manifests", str(m))
    generated = {c["name"]: c["expect"] for c in yaml.safe_load(out)["cases"]}
    assert generated["shop-a-to-shop-b-tcp-80"] == "allow"
    assert "WARNING" not in out


def test_an_answer_that_depends_on_a_missing_ip_is_flagged_and_pod_cidr_settles_it(tmp_path, capsys):
    # The classic "internet only" egress: whether b is in it depends on b's IP, which the manifests do not give.
    m = two_deployments(tmp_path, "{cidr: 0.0.0.0/0, except: [10.0.0.0/8]}")
    code, out, err = run(capsys, "matrix", "--manifests", str(m), "--format", "json", "--port", "80/TCP")
    assert code == 0
    flow = next(f for f in json.loads(out)["flows"] if (f["from"], f["to"]) == ("shop/a", "shop/b"))
    assert flow["allowed"] is True  # assumed inside, and said so:
    assert "DEPENDS ON AN IP THE MANIFESTS DO NOT GIVE: shop/b has no IP and 0.0.0.0/0 except 10.0.0.0/8" in \
        flow["reason"]
    back = next(f for f in json.loads(out)["flows"] if (f["from"], f["to"]) == ("shop/b", "shop/a"))
    assert "DEPENDS" not in back["reason"]  # b is not isolated: nothing turns on an IP
    assert err.count("warning:") == 1 and "0.0.0.0/0 except 10.0.0.0/8 (in shop/a-egress)" in err
    suite = write(tmp_path / "suite.yaml", A_TO_B % "allow")
    code, out, _ = run(capsys, "check", "--manifests", str(m), "--suite", str(suite), "--format", "json")
    case = json.loads(out)["cases"][0]
    assert code == 1 and case["result"] == "unknown"  # never a pass on an assumed address
    assert case["flows"][0]["intent"] == "unknown"
    code, out, _ = run(capsys, "suite", "generate", "--manifests", str(m))
    assert "# WARNING: this expectation depends on a pod IP the manifests do not give" in out

    # With the cluster's real pod CIDR the answer no longer depends on anything: b is in 10.0.0.0/8.
    code, out, err = run(capsys, "matrix", "--manifests", str(m), "--format", "tsv", "--pod-cidr", "10.244.0.0/16")
    assert code == 0 and err == "" and out.splitlines() == ["shop/b\tshop/a\tall"]
    suite = write(tmp_path / "suite.yaml", A_TO_B % "deny")
    code, out, _ = run(capsys, "check", "--manifests", str(m), "--suite", str(suite), "--pod-cidr", "10.244.0.0/16")
    assert code == 0, out
    # ...or from the settings file (cluster.pod_cidrs), here a CGNAT pod range outside the except.
    config = write(tmp_path / "c.yaml", "cluster: {pod_cidrs: [100.64.0.0/10]}\n")
    code, out, _ = run(capsys, "--config", str(config), "matrix", "--manifests", str(m), "--format", "tsv")
    assert out.splitlines() == ["shop/a\tshop/b\tall", "shop/b\tshop/a\tall"]


def test_a_bad_pod_cidr_is_an_input_error(tmp_path, capsys):
    m = two_deployments(tmp_path, "{cidr: 0.0.0.0/0}")
    code, out, err = run(capsys, "matrix", "--manifests", str(m), "--pod-cidr", "10.244.0/33")
    assert code == 2 and out == ""
    assert err == "netpol-drift: error: command line: --pod-cidr: invalid CIDR '10.244.0/33'\n"
    config = write(tmp_path / "c.yaml", "cluster: {pod_cidrs: []}\n")
    code, _, err = run(capsys, "--config", str(config), "matrix", "--manifests", str(m))
    assert code == 2 and err == (f"netpol-drift: error: {config}: cluster.pod_cidrs: must be a non-empty list of "
                                 f"CIDRs, got []\n")


def test_class_matrix_and_engine_agree_on_pods_without_an_ip(tmp_path):
    """The fast matrix and the reference evaluator apply the same address model."""
    for block in ("{cidr: 0.0.0.0/0}", "{cidr: 0.0.0.0/0, except: [10.0.0.0/8]}", "{cidr: 192.0.2.0/24}",
                  "{cidr: 10.0.0.0/8}", "{cidr: '::/0'}"):
        snapshot = load_manifests(two_deployments(tmp_path, block))
        for cidrs in (("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"), ("10.244.0.0/16",), ("fd00::/48",)):
            engine = Engine(snapshot, cidrs)
            matrix = {(a.ref, b.ref): c for a, b, c in class_matrix(snapshot, cidrs).pod_pairs()}
            for a in snapshot.pods:
                for b in snapshot.pods:
                    if a is not b:
                        want = engine.connections(a, b)
                        assert matrix.get((a.ref, b.ref), want.none()) == want, (block, cidrs, a.ref, b.ref)


# ------------------------------------------------------------------------------------------- IPv6, dual stack
def pod(name: str, labels: str, status: str) -> str:
    return f"""
        apiVersion: v1
        kind: Pod
        metadata: {{name: {name}, namespace: web, labels: {labels}}}
        spec: {{containers: [{{name: c, ports: [{{containerPort: 8080}}]}}]}}
        status: {status}
        ---"""


INGRESS_FROM = """
        apiVersion: networking.k8s.io/v1
        kind: NetworkPolicy
        metadata: {name: db-from, namespace: web}
        spec:
          podSelector: {matchLabels: {app: db}}
          ingress: [{from: [{ipBlock: %s}]}]
        """


def test_ipv6_pods_and_ipv6_ipblocks(tmp_path, capsys):
    write(tmp_path / "m" / "all.yaml",
          pod("client", "{app: client}", "{podIP: 'fd00:10:1::5'}")
          + pod("other", "{app: other}", "{podIP: 'fd00:10:2::7'}")
          + pod("db", "{app: db}", "{podIP: 'fd00:10:3::9'}")
          + INGRESS_FROM % "{cidr: 'fd00:10:1::/64', except: ['fd00:10:1::6/127']}")
    m = tmp_path / "m"
    snapshot = load_manifests(m)
    assert {p.name: p.ip for p in snapshot.pods} == {"client": "fd00:10:1::5", "other": "fd00:10:2::7",
                                                     "db": "fd00:10:3::9"}
    code, out, err = run(capsys, "matrix", "--manifests", str(m), "--format", "tsv")
    assert code == 0 and err == ""
    lines = set(out.splitlines())
    assert "web/client\tweb/db\tall" in lines and not any(x.startswith("web/other\tweb/db") for x in lines)
    # An except of ::4/127 holds ::4 and ::5, the client's address: now it is cut out.
    text = (tmp_path / "m" / "all.yaml").read_text()
    write(tmp_path / "m" / "all.yaml", text.replace("::6/127", "::4/127"))
    code, out, _ = run(capsys, "matrix", "--manifests", str(m), "--format", "json", "--port", "8080/TCP")
    denied = next(f for f in json.loads(out)["flows"] if (f["from"], f["to"]) == ("web/client", "web/db"))
    assert denied["allowed"] is False and "DEPENDS" not in denied["reason"]
    # An IPv4 block never holds an IPv6 pod.
    write(tmp_path / "m" / "all.yaml", text.replace("{cidr: 'fd00:10:1::/64', except: ['fd00:10:1::6/127']}",
                                                    "{cidr: 0.0.0.0/0}"))
    code, out, _ = run(capsys, "matrix", "--manifests", str(m), "--format", "tsv")
    assert out and not any("\tweb/db\t" in x for x in out.splitlines())


def test_dual_stack_pods_read_status_pod_ips_and_match_blocks_in_the_flows_family(tmp_path, capsys):
    write(tmp_path / "m" / "all.yaml",
          pod("client", "{app: client}", "{podIP: 10.1.0.5, podIPs: [{ip: 10.1.0.5}, {ip: 'fd00:1::5'}]}")
          + pod("db", "{app: db}", "{podIPs: [{ip: 10.1.0.9}, {ip: 'fd00:1::9'}]}")
          + INGRESS_FROM % "{cidr: 'fd00:1::/64'}")
    m = tmp_path / "m"
    snapshot = load_manifests(m)
    pods = {p.name: p for p in snapshot.pods}
    assert (pods["client"].ip, pods["client"].other_ips) == ("10.1.0.5", ("fd00:1::5",))
    assert (pods["db"].ip, pods["db"].other_ips) == ("10.1.0.9", ("fd00:1::9",))  # podIPs alone is enough
    engine = Engine(snapshot)
    # Pod to pod runs over the primary family (IPv4 here): the IPv6 block does not hold the client's address.
    assert not engine.decide(pods["client"], pods["db"], 8080).allowed
    # To the db's IPv6 address the flow is IPv6, and the block holds the client's IPv6 address.
    assert engine.decide(pods["client"], "fd00:1::9", 8080).allowed
    assert engine.resolve("fd00:1::9") is pods["db"]
    suite = write(tmp_path / "suite.yaml", """
        cases:
          - {name: v4, from: {namespace: web, pod: client}, to: {namespace: web, pod: db}, port: 8080, expect: deny}
          - {name: v6, from: {namespace: web, pod: client}, to: {host: 'fd00:1::9'}, port: 8080, expect: allow}
        """)
    code, out, _ = run(capsys, "check", "--manifests", str(m), "--suite", str(suite), "--format", "json")
    assert code == 0, out
    write(tmp_path / "bad" / "p.yaml", pod("x", "{app: x}", "{podIPs: [{ip: 10.1.0.5}, {ip: 'fd00::zz'}]}"))
    code, _, err = run(capsys, "matrix", "--manifests", str(tmp_path / "bad"))
    assert code == 2 and "Pod web/x: status.podIPs[1].ip: invalid IP 'fd00::zz'" in err


# ------------------------------------------------------------------------------------ one workload, live pods
DUMP = """
    apiVersion: apps/v1
    kind: Deployment
    metadata: {name: web, namespace: shop}
    spec:
      template:
        metadata: {labels: {app: web}}
        spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
    ---
    apiVersion: apps/v1
    kind: ReplicaSet
    metadata:
      name: web-7c9d5f
      namespace: shop
      ownerReferences: [{apiVersion: apps/v1, kind: Deployment, name: web, controller: true, uid: u1}]
    spec:
      template:
        metadata: {labels: {app: web, pod-template-hash: 7c9d5f}}
        spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
    ---
    apiVersion: v1
    kind: Pod
    metadata:
      name: web-7c9d5f-abcde
      namespace: shop
      labels: {app: web, pod-template-hash: 7c9d5f}
      ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-7c9d5f, controller: true, uid: u2}]
    spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
    status: {phase: Running, podIP: 10.244.0.5}
    ---
    apiVersion: v1
    kind: Pod
    metadata:
      name: web-7c9d5f-gone1
      namespace: shop
      labels: {app: web, pod-template-hash: 7c9d5f}
      ownerReferences: [{apiVersion: apps/v1, kind: ReplicaSet, name: web-7c9d5f, controller: true, uid: u2}]
    spec: {containers: [{name: c, ports: [{containerPort: 80}]}]}
    status: {phase: Failed, podIP: 10.244.0.4}
    ---
    apiVersion: v1
    kind: Pod
    metadata: {name: migrate-x2, namespace: shop, labels: {app: migrate}}
    spec: {containers: [{name: c}]}
    status: {phase: Succeeded, podIP: 10.244.0.6}
    ---
    apiVersion: batch/v1
    kind: CronJob
    metadata: {name: report, namespace: shop}
    spec:
      jobTemplate:
        spec:
          template:
            metadata: {labels: {app: report}}
            spec: {containers: [{name: c}]}
    ---
    apiVersion: batch/v1
    kind: Job
    metadata:
      name: report-28000
      namespace: shop
      ownerReferences: [{apiVersion: batch/v1, kind: CronJob, name: report, controller: true, uid: u3}]
    spec:
      template:
        metadata: {labels: {app: report}}
        spec: {containers: [{name: c}]}
    """


@pytest.mark.parametrize("order", ["as dumped", "reversed"])
def test_a_deployment_its_replicaset_and_their_pods_are_one_workload(tmp_path, capsys, order):
    docs = DUMP.split("---")
    write(tmp_path / "m" / "dump.yaml", "---".join(docs if order == "as dumped" else reversed(docs)))
    snapshot = load_manifests(tmp_path / "m")
    # The live pod stands for web (not the Deployment's nor the ReplicaSet's template: three "pods" before);
    # finished pods are no endpoints; the CronJob stands for its Job.
    assert [(p.name, p.workload) for p in snapshot.pods] == [("report", "CronJob/report"),
                                                             ("web-7c9d5f-abcde", "ReplicaSet/web-7c9d5f")]
    code, out, _ = run(capsys, "matrix", "--manifests", str(tmp_path / "m"), "--format", "json")
    assert code == 0 and json.loads(out)["pods"] == ["shop/report", "shop/web-7c9d5f-abcde"]
    code, out, _ = run(capsys, "suite", "generate", "--manifests", str(tmp_path / "m"))
    assert code == 0 and [c["name"] for c in yaml.safe_load(out)["cases"]] == ["shop-report-to-shop-web-tcp-80"]


def test_a_replicaset_outside_the_dump_still_ties_its_pods_to_the_deployment(tmp_path):
    docs = DUMP.split("---")
    write(tmp_path / "m" / "dump.yaml", "---".join(d for d in docs if "kind: ReplicaSet\n" not in d))
    assert [p.name for p in load_manifests(tmp_path / "m").pods] == ["report", "web-7c9d5f-abcde"]


def test_a_pod_without_an_ip_is_never_one_class_with_a_pod_whose_ip_no_block_holds(tmp_path):
    write(tmp_path / "m" / "all.yaml", deployment("a") + deployment("b") + pod("b-live", "{app: b}",
          "{podIP: 192.0.2.7}").replace("namespace: web", "namespace: shop") + egress_policy("{cidr: 10.0.0.0/8}"))
    snapshot = load_manifests(tmp_path / "m")
    cidrs = ("10.244.0.0/16",)
    matrix = {(a.ref, b.ref): c for a, b, c in class_matrix(snapshot, cidrs).pod_pairs()}
    engine = Engine(snapshot, cidrs)
    pods = {p.name: p for p in snapshot.pods}
    assert matrix.get(("shop/a", "shop/b")) == engine.connections(pods["a"], pods["b"]) and matrix[("shop/a", "shop/b")]
    assert ("shop/a", "shop/b-live") not in matrix and not engine.connections(pods["a"], pods["b-live"])

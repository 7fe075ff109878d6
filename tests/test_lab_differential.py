"""Engine vs the real enforcer: seeded random NetworkPolicy sets, probed for real, compared with the engine.

Job: over a handful of namespaces and pods (fixed for the run), apply LAB_DIFF_SETS (default 50) generated
policy sets one after the other, some together with a pod or namespace label change; for each, wait for
kube-router to sync, probe every ordered pod pair on TCP 80, TCP 8080, UDP 53 (plus TCP 6443 to an address
outside the pod network, for egress ipBlocks) from inside the source pod's namespace, and compare with
monitor.engine's decision for the same flow (and check that the class-level matrix agrees with the per-flow
decision). Every difference is a bug in one of the two; the failure message names the seed, the set and the
policies. Must not: compare a probe that did not run (error/unreachable fail the test as errors, not as
differences).
"""

from __future__ import annotations

import json
import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import yaml

from tests.lab import config as C
from tests.lab import netns
from tests.lab.engine import EngineView
from tests.lab.fixtures import Lab, pod_manifest

pytestmark = [pytest.mark.lab, pytest.mark.slow]

SEED = int(os.environ.get("LAB_DIFF_SEED", "20261129"))
SETS = int(os.environ.get("LAB_DIFF_SETS", "50"))
PORTS = [(80, "TCP"), (8080, "TCP"), (53, "UDP")]
EXTERNAL = (C.ROOT_IP, C.APISERVER_PORT, "TCP")  # the lab's API server, outside the pod CIDR

NS_LABELS = {"a": {"team": "a", "env": "prod"}, "b": {"team": "b", "env": "prod"}, "c": {"team": "a", "env": "dev"}}
# (namespace key, pod name, labels, port names): every pod listens on all of PORTS; names differ per pod so
# named ports resolve to different numbers on different destinations.
PODS = [
    ("a", "web", {"app": "web", "tier": "fe"}, {80: "http", 53: "dns"}),
    ("a", "db", {"app": "db", "tier": "be"}, {8080: "http"}),
    ("b", "web", {"app": "web", "tier": "fe"}, {80: "http"}),
    ("b", "api", {"app": "api", "tier": "be"}, {8080: "http", 53: "dns"}),
    ("c", "api", {"app": "api"}, {80: "http"}),
    ("c", "db", {"app": "db", "tier": "be"}, {53: "dns", 8080: "http"}),
]
POD_KEYS = {"app": ["web", "db", "api"], "tier": ["fe", "be"]}
NS_KEYS = {"team": ["a", "b"], "env": ["prod", "dev"]}


# ------------------------------------------------------------------------------------------------- generator
# The generator stays clear of three kube-router v2.1.0 deviations from the NetworkPolicy spec, each pinned by
# its own test in tests/test_lab_kube_router_quirks.py (which fails once kube-router behaves, so these
# exclusions get lifted):
#   K1  a policy with both Ingress and Egress applies its ingress rules to its pods' egress and vice versa;
#   K2  a named port in an egress rule is resolved across pods and allowed as a number to every destination;
#   K3  two ipBlocks in one rule share an ipset: the except of one cancels the cidr of the other;
#   K4  a rule with peers whose named port the selected pod lacks allows every port instead of none.
class Gen:
    def __init__(self, rng: random.Random, ns_names: dict[str, str], pod_ips: list[str]) -> None:
        self.r = rng
        self.ns_names = ns_names
        self.pod_ips = pod_ips

    def selector(self, keys: dict[str, list[str]], extra: dict[str, list[str]] | None = None) -> dict:
        r = self.r
        keys = {**keys, **(extra or {})}
        x = r.random()
        if x < 0.25:
            return {}
        k = r.choice(sorted(keys))
        if x < 0.65:
            return {"matchLabels": {k: r.choice(keys[k])}}
        op = r.choice(["In", "NotIn", "Exists", "DoesNotExist"])
        expr: dict[str, Any] = {"key": k, "operator": op}
        if op in ("In", "NotIn"):
            expr["values"] = sorted(set(r.sample(keys[k], r.randint(1, len(keys[k])))))
        return {"matchExpressions": [expr]}

    def ip_block(self) -> dict:
        r = self.r
        ip = r.choice(self.pod_ips)
        return r.choice([
            {"cidr": f"{ip}/32"},
            {"cidr": C.node_of_ip(ip).pod_cidr, "except": [f"{ip}/32"]},  # the pod's node's CIDR but the pod
            {"cidr": "0.0.0.0/0"},
            {"cidr": f"{C.ROOT_IP}/32"},
            {"cidr": C.CLUSTER_CIDR, "except": [C.NODES[0].pod_cidr]},  # the pods of the second node
            {"cidr": "0.0.0.0/0", "except": [C.NODES[1].pod_cidr]},
        ])

    def peer(self, ip_block_ok: bool = True) -> dict:
        x = self.r.random() * (1.0 if ip_block_ok else 0.75)
        names = {"kubernetes.io/metadata.name": sorted(self.ns_names.values())}
        if x < 0.35:
            return {"podSelector": self.selector(POD_KEYS)}
        if x < 0.55:
            return {"namespaceSelector": self.selector(NS_KEYS, names)}
        if x < 0.75:
            return {"podSelector": self.selector(POD_KEYS), "namespaceSelector": self.selector(NS_KEYS, names)}
        return {"ipBlock": self.ip_block()}

    def ports(self, named: bool) -> list[dict] | None:
        r = self.r
        if r.random() < 0.4:
            return None
        options = [{"port": 80}, {"port": 8080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"},
                   {"port": 80, "endPort": 8080}, {"protocol": "UDP"}, {"port": 443}]
        if named:
            # "http" is named on every pod (80 on some, 8080 on others); kube-router K4: a named port that no
            # selected pod has would open every port, so "dns" (named on some pods only) is not used.
            options += [{"port": "http"}, {"port": "http", "protocol": "TCP"}]
        return r.sample(options, r.randint(1, 2))

    def rule(self, key: str) -> dict:
        r = self.r
        if r.random() < 0.1:
            return {}
        rule: dict[str, Any] = {}
        if r.random() > 0.2:
            peers = [self.peer()]
            if r.random() < 0.5:
                # kube-router K3: a second ipBlock in the same rule can cancel the first one.
                peers.append(self.peer(ip_block_ok="ipBlock" not in peers[0]))
            rule[key] = peers
        ports = self.ports(named=key == "from")  # kube-router K2: no named ports in egress rules
        if ports:
            rule["ports"] = ports
        return rule

    def policy(self, i: int) -> dict:
        r = self.r
        ns = self.ns_names[r.choice(sorted(self.ns_names))]
        spec: dict[str, Any] = {"podSelector": self.selector(POD_KEYS)}
        # kube-router K1: no policy for both directions (omitted policyTypes + egress rules means both).
        types = r.choice([None, ["Ingress"], ["Egress"]])
        if types is not None:
            spec["policyTypes"] = types
        wants_ingress = types is None or "Ingress" in types
        wants_egress = types is not None and "Egress" in types
        if wants_ingress and r.random() < 0.8:
            spec["ingress"] = [self.rule("from") for _ in range(r.randint(1, 2))]
        if wants_egress and r.random() < 0.8:
            spec["egress"] = [self.rule("to") for _ in range(r.randint(1, 2))]
        return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": {"name": f"p{i}", "namespace": ns}, "spec": spec}

    def policy_set(self) -> list[dict]:
        return [self.policy(i) for i in range(self.r.randint(1, 4))]


def _set_label(obj: dict, key: str, value: str | None) -> None:
    labels = obj["metadata"].setdefault("labels", {})
    if value is None:
        labels.pop(key, None)
    else:
        labels[key] = value


# ----------------------------------------------------------------------------------------------------- test
def test_engine_matches_kube_router(lab: Lab, make_namespace) -> None:
    ns_names = {k: make_namespace(f"d{k}", labels) for k, labels in NS_LABELS.items()}
    ns_objs = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns_names[k], "labels": v}}
               for k, v in NS_LABELS.items()]
    manifests: dict[str, dict] = {}
    for key, name, labels, names in PODS:
        m = pod_manifest(name, labels, tcp=[(names[p], p) if p in names else p for p in (80, 8080)],
                         udp=[("dns", 53)] if names.get(53) == "dns" else [53])
        m["metadata"]["namespace"] = ns_names[key]
        manifests[f"{ns_names[key]}/{name}"] = m
    running = {}
    for m in manifests.values():
        ns = m["metadata"]["namespace"]
        running.update({f"{ns}/{n}": p for n, p in lab.run_pods(ns, [m]).items()})
    ip_to_ref = {p["status"]["podIP"]: ref for ref, p in running.items()}
    gen = Gen(random.Random(SEED), ns_names, sorted(ip_to_ref))
    relabel = random.Random(SEED ^ 0x5EED)  # its own stream: the policy sets of a seed stay the same

    flows = [(src, dst["status"]["podIP"], port, proto)
             for src in running for dref, dst in running.items() if dref != src for port, proto in PORTS]
    flows += [(src, *EXTERNAL) for src in running]

    differences: list[dict] = []
    errors: list[str] = []
    probes = 0
    t_total = time.monotonic()
    for set_no in range(SETS):
        policies = gen.policy_set()
        t = time.time()
        for ns in ns_names.values():
            lab.api.delete(f"/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies")
        for p in policies:
            lab.api.post(f"/apis/networking.k8s.io/v1/namespaces/{p['metadata']['namespace']}/networkpolicies", p)
        # Label changes too (a drift cause the monitor must see): sometimes a pod's, sometimes a namespace's.
        changes = []
        if relabel.random() < 0.3:
            ref = relabel.choice(sorted(manifests))
            key = relabel.choice(sorted(POD_KEYS))
            value = relabel.choice([*POD_KEYS[key], None])
            ns, name = ref.split("/")
            lab.api.merge_patch(f"/api/v1/namespaces/{ns}/pods/{name}", {"metadata": {"labels": {key: value}}})
            _set_label(manifests[ref], key, value)
            changes.append(f"pod {ref} {key}={value}")
        if relabel.random() < 0.2:
            obj = relabel.choice(ns_objs)
            key = relabel.choice(sorted(NS_KEYS))
            value = relabel.choice([*NS_KEYS[key], None])
            lab.api.merge_patch(f"/api/v1/namespaces/{obj['metadata']['name']}",
                                {"metadata": {"labels": {key: value}}})
            _set_label(obj, key, value)
            changes.append(f"namespace {obj['metadata']['name']} {key}={value}")
        lab.wait_synced(since=t)
        netns.flush_conntrack()

        def probe_from(src: str) -> dict:
            targets = [(ip, port, proto) for s, ip, port, proto in flows if s == src]
            return lab.probe(running[src], targets, timeout=1.0)

        with ThreadPoolExecutor(len(running)) as pool:
            observed_by_src = dict(zip(running, pool.map(probe_from, running), strict=True))
        pod_objs = [{**manifests[ref], "status": {"podIP": p["status"]["podIP"]}} for ref, p in running.items()]
        engine = EngineView([*ns_objs, *pod_objs, *policies])
        for flow in flows:
            src, dst, port, proto = flow
            outcome = observed_by_src[src][(dst, port, proto)]
            probes += 1
            if outcome not in ("connected", "refused", "timeout"):
                errors.append(f"set {set_no}: {src} -> {dst}:{port}/{proto}: probe outcome {outcome}")
                continue
            allowed, reason = engine.decide(src, dst, port, proto)
            if dst in ip_to_ref and engine.matrix_allows(src, dst, port, proto) != allowed:
                errors.append(f"set {set_no}: engine inconsistent for {src} -> {ip_to_ref[dst]} {port}/{proto}: "
                              f"decide says {allowed}, the class matrix says {not allowed}")
            if allowed != (outcome == "connected"):
                differences.append({"set": set_no, "from": src, "to": ip_to_ref.get(dst, dst), "port": port,
                                    "protocol": proto, "engine": "allowed" if allowed else "denied",
                                    "kube-router": outcome, "reason": reason, "policies": policies,
                                    "label_changes": changes,
                                    "labels": {r: m["metadata"]["labels"] for r, m in manifests.items()},
                                    "namespace_labels": {o["metadata"]["name"]: o["metadata"]["labels"]
                                                         for o in ns_objs}})
    elapsed = time.monotonic() - t_total
    print(f"differential: seed {SEED}, {SETS} policy sets, {probes} probes, {len(differences)} differences, "
          f"{elapsed:.0f}s")
    assert not errors, "probes that could not run, or engine inconsistencies:\n" + "\n".join(errors[:20])
    if differences:
        report = os.environ.get("LAB_DIFF_REPORT", "/tmp/netpol-drift-differential.json")
        with open(report, "w") as f:
            json.dump(differences, f, indent=1)
        sets = sorted({d["set"] for d in differences})
        lines = [f"{len(differences)} engine/kube-router differences in sets {sets} (seed {SEED}); all in {report}"]
        for d in differences[:8]:
            lines.append(f"- set {d['set']}: {d['from']} -> {d['to']} {d['port']}/{d['protocol']}: engine "
                         f"{d['engine']} ({d['reason']}), kube-router {d['kube-router']}")
        first = differences[0]["set"]
        lines.append(f"policies of set {first}:\n" + yaml.safe_dump_all(
            next(d["policies"] for d in differences if d["set"] == first), sort_keys=False))
        pytest.fail("\n".join(lines), pytrace=False)

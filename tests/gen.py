"""Seeded random clusters and NetworkPolicies, as Kubernetes manifest objects (plain dicts).

Shared by the differential test against network-config-analyzer (tests/test_differential_nca.py), the
benchmark (bench/matrix_vs_nca.py) and the lab's engine-vs-kube-router differential. Usage:

    from tests.gen import generate_cluster, write_manifests
    objs = generate_cluster(7, namespaces=4, pods_per_ns=5, policies=12)
    write_manifests(objs, tmp_path)            # -> tmp_path/cluster.yaml (multi-document)

The same seed and arguments always give the same objects (only `random.Random(seed)` is used). What it
produces:
- Namespaces with random labels (env/team/tier keys, sometimes absent) plus `kubernetes.io/metadata.name`,
  as the API server sets it (so tools that do not add it themselves see the same labels).
- Workloads (`workload_kind` "Deployment" with replicas 1, or bare "Pod" with status.podIP from 10.0.0.0/8),
  with random labels and `ports_per_pod` named container ports. Port names come from a small shared pool
  while their numbers and protocols vary per workload, so named-port resolution on the destination matters.
- NetworkPolicies mixing every v1 feature: podSelector/namespaceSelector with matchLabels and all four
  matchExpressions operators, empty vs missing selectors, both selectors in one peer, several peers, ipBlock
  with except, numeric/named/protocol-only ports, endPort ranges, TCP/UDP/SCTP, policyTypes explicit or
  defaulted, deny-all (no rules), allow-all (empty rule), ingress and egress.
  ipBlocks use only reserved documentation/benchmark ranges (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24,
  198.18.0.0/15) unless `ipblocks_cover_pods=True`, which adds blocks such as 10.0.0.0/8 that cover pod IPs
  (the known netpol-analyzer/NCA difference: they treat ipBlocks as external-only).
- `peer_only_keys=True` adds label keys (role, version) that only peer podSelectors read, never a policy's
  own podSelector, and makes workloads come in twins that agree on every other key and on their ports:
  pods that only those keys tell apart, the case where a class matrix must still split its classes.
It must not evaluate policies, import the engine, or touch the network.
"""

from __future__ import annotations

import ipaddress
import random
from pathlib import Path
from typing import Any

POD_LABELS = {"app": [f"app{i}" for i in range(8)], "tier": ["web", "api", "db", "cache"],
              "env": ["prod", "dev"], "team": ["a", "b", "c"]}
PEER_ONLY_LABELS = {"role": ["frontend", "backend", "batch"], "version": ["v1", "v2"]}
NS_LABELS = {"env": ["prod", "dev", "staging"], "team": ["a", "b", "c"], "zone": ["z1", "z2"]}
PORT_NAMES = ["http", "grpc", "metrics", "dns", "admin", "db"]
PROTOCOLS = ["TCP", "TCP", "TCP", "UDP", "SCTP"]  # TCP-heavy, as real clusters are
EXTERNAL_CIDRS = ["192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "198.18.0.0/15"]
EXTERNAL_EXCEPTS = {"192.0.2.0/24": ["192.0.2.128/25"], "198.18.0.0/15": ["198.19.0.0/16", "198.18.7.0/24"],
                    "198.51.100.0/24": ["198.51.100.0/26"], "203.0.113.0/24": ["203.0.113.64/26"]}
COVERING_CIDRS = ["10.0.0.0/8", "0.0.0.0/0", "10.1.0.0/16"]


def generate_cluster(seed: int, namespaces: int = 4, pods_per_ns: int = 5, policies: int = 10, *,
                     ports_per_pod: int = 2, workload_kind: str = "Deployment",
                     ipblocks_cover_pods: bool = False, egress_share: float = 0.5,
                     ipblock_share: float = 0.1, port_layouts: int | None = None,
                     replicas: int = 1, peer_only_keys: bool = False) -> list[dict[str, Any]]:
    """Namespace, workload and NetworkPolicy objects, in that order. See the module docstring.

    port_layouts: None gives every workload its own random container ports (worst case for pod classes);
    N draws each workload's ports from N fixed layouts, as pods built from the same few images share them.
    replicas (workload_kind "Pod" only): pods_per_ns pods come as pods_per_ns / replicas ReplicaSets of
    `replicas` identical pods each (ownerReferences set, names w<j>-<r>), as a real cluster's pods do."""
    if workload_kind not in ("Deployment", "Pod"):
        raise ValueError("workload_kind must be Deployment or Pod")
    if replicas != 1 and (workload_kind != "Pod" or pods_per_ns % replicas):
        raise ValueError("replicas needs workload_kind='Pod' and must divide pods_per_ns")
    rnd = random.Random(seed)
    layouts = [_ports(random.Random(f"{seed}-layout-{i}"), ports_per_pod) for i in range(port_layouts or 0)]
    ns_names = [f"ns{i}" for i in range(namespaces)]
    objs: list[dict[str, Any]] = []
    for i, ns in enumerate(ns_names):
        labels = _labels(rnd, NS_LABELS, 0.7)
        labels["kubernetes.io/metadata.name"] = ns
        objs.append({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}})
        if replicas == 1:
            twin: dict[str, Any] = {}
            for j in range(pods_per_ns):
                if peer_only_keys and j % 2:
                    ports = twin["ports"]
                else:
                    ports = rnd.choice(layouts) if layouts else _ports(rnd, ports_per_pod)
                w = _workload(rnd, ns, f"w{j}", i, j, ports, workload_kind)
                if peer_only_keys:
                    labels = (w["metadata"] if workload_kind == "Pod" else w["spec"]["template"]["metadata"])["labels"]
                    if j % 2:  # the twin of w{j-1}: equal on every key a policy's own podSelector may read
                        for k in POD_LABELS:
                            labels.pop(k, None)
                        labels.update({k: v for k, v in twin["labels"].items() if k in POD_LABELS})
                    labels.update(_labels(rnd, PEER_ONLY_LABELS, 0.7))
                    twin = {"ports": ports, "labels": labels}
                objs.append(w)
            continue
        for j in range(pods_per_ns // replicas):
            ports = rnd.choice(layouts) if layouts else _ports(rnd, ports_per_pod)
            first = _workload(rnd, ns, f"w{j}-0", i, j * replicas, ports, "Pod")
            for r in range(replicas):
                p = _workload(rnd, ns, f"w{j}-{r}", i, j * replicas + r, ports, "Pod")
                p["metadata"]["labels"] = first["metadata"]["labels"]  # replicas share the template's labels
                p["metadata"]["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                     "name": f"w{j}", "controller": True, "uid": f"{ns}-w{j}"}]
                objs.append(p)
    peer_pool = POD_LABELS | PEER_ONLY_LABELS if peer_only_keys else POD_LABELS
    for k in range(policies):
        objs.append(_policy(rnd, rnd.choice(ns_names), f"np{k}", ns_names, egress_share, ipblock_share,
                            ipblocks_cover_pods, peer_pool))
    return objs


def write_manifests(objs: list[dict[str, Any]], directory: str | Path) -> Path:
    """Writes every object into DIR/cluster.yaml (one multi-document file); returns that path."""
    import yaml

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "cluster.yaml"
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # the C dumper: 10,000-object clusters in seconds
    with path.open("w", encoding="utf-8") as f:
        yaml.dump_all(objs, f, Dumper=dumper, sort_keys=False, default_flow_style=False)
    return path


# ------------------------------------------------------------------------------------------------ pieces
def _labels(rnd: random.Random, pool: dict[str, list[str]], p: float) -> dict[str, str]:
    return {k: rnd.choice(v) for k, v in pool.items() if rnd.random() < p}


def _ports(rnd: random.Random, nports: int) -> list[dict[str, Any]]:
    names = rnd.sample(PORT_NAMES, min(nports, len(PORT_NAMES)))
    ports, used = [], set()
    for pname in names:
        proto = rnd.choice(PROTOCOLS)
        number = rnd.choice([53, 80, 443, 8080, 8443, 9090, 5432, 6379, 3000 + rnd.randrange(20)])
        while (number, proto) in used:
            number += 1
        used.add((number, proto))
        ports.append({"name": pname, "containerPort": number, "protocol": proto})
    return ports


def _workload(rnd: random.Random, ns: str, name: str, ns_index: int, index: int, ports: list[dict[str, Any]],
              kind: str) -> dict[str, Any]:
    labels = _labels(rnd, POD_LABELS, 0.75)
    container = {"name": "main", "image": "registry.example/app:1", "ports": ports}
    if kind == "Pod":
        return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": labels},
                "spec": {"containers": [container]},
                "status": {"podIP": str(ipaddress.IPv4Address("10.0.0.0") + ns_index * 4096 + index + 1)}}
    # A unique label per workload keeps the Deployment's selector valid and its pods its own.
    labels = {**labels, "workload": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"workload": name}},
                     "template": {"metadata": {"labels": labels}, "spec": {"containers": [container]}}}}


def _selector(rnd: random.Random, pool: dict[str, list[str]], allow_empty: bool = True) -> dict[str, Any]:
    roll = rnd.random()
    if allow_empty and roll < 0.2:
        return {}
    sel: dict[str, Any] = {}
    if roll < 0.65:
        keys = rnd.sample(sorted(pool), rnd.choice([1, 1, 2]))
        sel["matchLabels"] = {k: rnd.choice(pool[k]) for k in keys}
    if roll >= 0.5:
        exprs = []
        for key in rnd.sample(sorted(pool), rnd.choice([1, 1, 2])):
            op = rnd.choice(["In", "NotIn", "Exists", "DoesNotExist"])
            expr: dict[str, Any] = {"key": key, "operator": op}
            if op in ("In", "NotIn"):
                expr["values"] = rnd.sample(pool[key], rnd.randint(1, min(2, len(pool[key]))))
            exprs.append(expr)
        sel["matchExpressions"] = exprs
    return sel


def _peer(rnd: random.Random, ns_names: list[str], ipblock_share: float, cover: bool,
          pod_pool: dict[str, list[str]]) -> dict[str, Any]:
    roll = rnd.random()
    if roll < ipblock_share:
        cidr = rnd.choice(EXTERNAL_CIDRS + (COVERING_CIDRS if cover else []))
        block: dict[str, Any] = {"cidr": cidr}
        excepts = EXTERNAL_EXCEPTS.get(cidr, ["10.1.0.0/24"] if cidr != "10.1.0.0/16" else ["10.1.1.0/24"])
        if rnd.random() < 0.5:
            block["except"] = excepts[: rnd.randint(1, len(excepts))]
        return {"ipBlock": block}
    if roll < 0.45:
        return {"podSelector": _selector(rnd, pod_pool)}
    if roll < 0.7:
        if rnd.random() < 0.3:  # by name, the way people usually do it
            return {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": rnd.choice(ns_names)}}}
        return {"namespaceSelector": _selector(rnd, NS_LABELS)}
    return {"namespaceSelector": _selector(rnd, NS_LABELS), "podSelector": _selector(rnd, pod_pool)}


def _port(rnd: random.Random) -> dict[str, Any]:
    roll = rnd.random()
    port: dict[str, Any] = {}
    if rnd.random() < 0.7:
        port["protocol"] = rnd.choice(PROTOCOLS)
    if roll < 0.4:
        port["port"] = rnd.choice(PORT_NAMES)
    elif roll < 0.75:
        port["port"] = rnd.choice([53, 80, 443, 8080, 9090, 5432, 6379, 3005])
    elif roll < 0.9:
        lo = rnd.choice([53, 80, 443, 3000, 8000, 9000])
        port["port"], port["endPort"] = lo, lo + rnd.choice([1, 10, 100, 1000])
    return port  # protocol only (or nothing): every port of that protocol


def _rule(rnd: random.Random, key: str, ns_names: list[str], ipblock_share: float, cover: bool,
          pod_pool: dict[str, list[str]]) -> dict[str, Any]:
    rule: dict[str, Any] = {}
    roll = rnd.random()
    if roll < 0.1:
        rule[key] = []  # an empty list means every peer, like a missing one
    elif roll < 0.85:
        rule[key] = [_peer(rnd, ns_names, ipblock_share, cover, pod_pool) for _ in range(rnd.choice([1, 1, 2, 3]))]
    roll = rnd.random()
    if roll < 0.7:
        rule["ports"] = [_port(rnd) for _ in range(rnd.choice([1, 1, 2, 3]))]
    elif roll < 0.75:
        rule["ports"] = []
    return rule


def _policy(rnd: random.Random, ns: str, name: str, ns_names: list[str], egress_share: float,
            ipblock_share: float, cover: bool, peer_pool: dict[str, list[str]]) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": _selector(rnd, POD_LABELS)}
    ingress = rnd.random() < 0.85
    egress = rnd.random() < egress_share
    if not (ingress or egress):
        ingress = True
    counts = [0, 1, 1, 2, 3]  # 0: the direction is isolated with nothing allowed (deny-all)
    if ingress:
        spec["ingress"] = [_rule(rnd, "from", ns_names, ipblock_share, cover, peer_pool)
                           for _ in range(rnd.choice(counts))]
    if egress:
        spec["egress"] = [_rule(rnd, "to", ns_names, ipblock_share, cover, peer_pool)
                          for _ in range(rnd.choice(counts))]
    # policyTypes: explicit, or left to API defaulting (Ingress, plus Egress when egress rules exist). An
    # egress-only policy with no egress rules must say so explicitly, or it would default to Ingress.
    if rnd.random() < 0.6 or (egress and not spec.get("egress")):
        spec["policyTypes"] = [t for t, on in (("Ingress", ingress), ("Egress", egress)) if on]
    if not spec.get("ingress"):
        spec.pop("ingress", None)
    if not spec.get("egress"):
        spec.pop("egress", None)
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}

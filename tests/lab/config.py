"""Fixed facts of the lab: binary locations, addresses, ports, names and the state directory layout.

Job: one place that says where everything lives, so `up`, `down`, the node agent and the pytest fixtures agree.
Must not: start processes, touch the network, or hold anything inside the repository (state lives under
LAB_STATE, binaries under LAB_CACHE).
"""

from __future__ import annotations

import ipaddress
import os
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# The venv whose bin dir goes first on PATH of every pod command (so `netpol-drift probe-agent` is found).
VENV_BIN = Path(os.environ.get("LAB_VENV_BIN") or REPO / ".venv" / "bin")
try:
    PYTHON = VENV_BIN / "python" if (VENV_BIN / "python").exists() else Path(sys.executable)
except OSError:  # e.g. an unprivileged user cannot stat root's venv
    PYTHON = Path(sys.executable)

ETCD_VERSION = os.environ.get("ETCD_VERSION", "3.6.14")
K8S_VERSION = os.environ.get("K8S_VERSION", "1.36.3")
KUBE_ROUTER_VERSION = os.environ.get("KUBE_ROUTER_VERSION", "2.1.0")
LAB_CACHE = Path(
    os.environ.get("LAB_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "netpol-drift-lab"
)
# /run is a tmpfs: a reboot wipes the lab's state together with the network namespaces it describes.
LAB_STATE = Path(os.environ.get("LAB_STATE", "/run/netpol-drift-lab"))


BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-proxy", "kube-router")


def binary(name: str) -> Path:
    version = {"etcd": ETCD_VERSION, "kube-apiserver": K8S_VERSION, "kube-controller-manager": K8S_VERSION,
               "kube-proxy": K8S_VERSION, "kube-router": KUBE_ROUTER_VERSION}[name]
    return LAB_CACHE / f"{name}-{version}" / name


# Network layout (LAB.md): everything stays on loopback, the lab's links, or inside the lab's own namespaces.
# Two nodes. Each is a "node" network namespace linked to the root namespace by its own veth pair on a /30 of
# 198.18.77.0/29 (RFC 2544 benchmarking space: routable but never used by real networks; not link-local: the
# API server's address is the `kubernetes` Service's endpoint, and the API rejects link-local endpoint
# addresses with "may not be in the link-local range"). The nodes reach each other's pods over a third veth
# pair between the two node namespaces (198.18.77.8/30): the root namespace never forwards (its ip_forward
# and firewall stay as they are), it only reaches each node's own /30.
LINK_PREFIX = 30
CLUSTER_CIDR = "10.244.0.0/16"  # each node's pod CIDR is a /22 of it (kube-proxy and the controller manager):
# 1,022 pods a node, room for the 500-namespace soak and its probe pods


@dataclass(frozen=True)
class LabNode:
    """One lab node: its Node object, network namespace, link to the root namespace and pod CIDR."""

    name: str
    netns: str
    root_veth: str  # root-namespace end of the node's link
    node_veth: str  # node-namespace end
    root_ip: str
    ip: str  # the node's InternalIP (node end of its link)
    pod_cidr: str
    peer_veth: str  # node-namespace end of the link between the two node namespaces
    peer_ip: str  # this node's address on that link

    def proc(self, component: str) -> str:
        """Name (pid file, log, LAB_PROC) of a per-node process: kube-proxy and kube-router run once per node,
        as a DaemonSet would run them."""
        return f"{component}-{self.name}"


NODES = (
    LabNode("lab-node", "labnode", "nplab0", "nplab1", "198.18.77.1", "198.18.77.2", "10.244.0.0/22",
            "npnode1", "198.18.77.9"),
    LabNode("lab-node-2", "labnode2", "nplab2", "nplab3", "198.18.77.5", "198.18.77.6", "10.244.4.0/22",
            "npnode2", "198.18.77.10"),
)
NODE = NODES[0]  # the first node (the API server's address is its root end)
# The first node under its old names (tests written for the one-node lab that mean "the API server's side").
NODE_NETNS = NODE.netns
ROOT_VETH = NODE.root_veth
NODE_VETH = NODE.node_veth
ROOT_IP = NODE.root_ip
NODE_IP = NODE.ip
NODE_NAME = NODE.name


def node_named(name: str) -> LabNode:
    return next(n for n in NODES if n.name == name)


def node_of_ip(ip: str) -> LabNode | None:
    """The node whose pod CIDR holds ip (None: not a pod address of the lab)."""
    addr = ipaddress.ip_address(ip)
    return next((n for n in NODES if addr in ipaddress.ip_network(n.pod_cidr)), None)


POD_GATEWAY = "169.254.1.1"  # link-local next hop every pod uses; answered by proxy ARP on the host veth
SERVICE_CIDR = "10.96.0.0/24"
SA_ISSUER = "https://kubernetes.default.svc"  # also the API server's default token audience
KUBERNETES_SERVICE_IP = "10.96.0.1"  # the default `kubernetes` Service: the first address of SERVICE_CIDR
POD_NETNS_PREFIX = "lp-"  # pod network namespaces: lp-<12 hex of the pod uid>
POD_VETH_PREFIX = "lv"  # node-side pod veths: lv<12 hex of the pod uid> (<= 15 chars)

ETCD_CLIENT_PORT = 2379
ETCD_PEER_PORT = 2380
APISERVER_PORT = 6443
APISERVER_URL = f"https://{ROOT_IP}:{APISERVER_PORT}"
KUBE_ROUTER_HEALTH_PORT = 20244  # inside each node namespace only
KUBE_PROXY_HEALTHZ = "127.0.0.1:10256"  # inside each node namespace only
KUBE_PROXY_METRICS = "127.0.0.1:10249"  # inside each node namespace only
# What `up` builds; a lab of another layout (an older checkout's) is torn down and rebuilt, never repaired.
# 2: kube-controller-manager, kube-proxy, ServiceAccount admission, the `kubernetes` Service's endpoints.
# 3: two nodes (kube-proxy and kube-router per node, processes named <component>-<node>).
LAYOUT = "3"

MONITOR_NAMESPACE = "netpol-drift"
MONITOR_SA = "netpol-drift"
MONITOR_USER = f"system:serviceaccount:{MONITOR_NAMESPACE}:{MONITOR_SA}"
ADMIN_USER = "lab-admin"

# The lab listener: a container whose command is exactly ["lab-listener"] (or that has no command at all) gets
# a real TCP and UDP listener on every declared containerPort.
LISTENER_COMMAND = "lab-listener"


class Paths:
    """Files under the state directory; every one of them is removed by `down`."""

    def __init__(self, root: Path = LAB_STATE) -> None:
        self.root = root
        self.etcd_data = root / "etcd"
        self.pki = root / "pki"
        self.sa_key = self.pki / "sa.key"
        self.sa_pub = self.pki / "sa.pub"
        self.cert_dir = self.pki / "serving"
        self.tokens = self.pki / "tokens.csv"
        self.admin_token = self.pki / "admin.token"
        self.monitor_token = self.pki / "monitor.token"
        self.admin_kubeconfig = root / "admin.kubeconfig"
        self.monitor_kubeconfig = root / "monitor.kubeconfig"
        self.logs = root / "logs"
        self.pids = root / "pids"
        self.agent = root / "agent"  # per-pod state of the node agent
        self.created_files = root / "created-files"  # files/dirs outside root the lab created (removed by down)
        self.layout = root / "layout"  # LAYOUT of the lab that runs

    def token(self, identity: str) -> Path:
        return self.pki / f"{identity}.token"

    def kubeconfig(self, identity: str) -> Path:
        return self.root / f"{identity}.kubeconfig"

    def pidfile(self, name: str) -> Path:
        return self.pids / f"{name}.pid"

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"


PATHS = Paths()

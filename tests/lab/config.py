"""Fixed facts of the lab: binary locations, addresses, ports, names and the state directory layout.

Job: one place that says where everything lives, so `up`, `down`, the node agent and the pytest fixtures agree.
Must not: start processes, touch the network, or hold anything inside the repository (state lives under
LAB_STATE, binaries under LAB_CACHE).
"""

from __future__ import annotations

import os
import sys
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


# Network layout (LAB.md): everything stays on loopback, link-local, or inside the lab's own namespaces.
NODE_NETNS = "labnode"
ROOT_VETH = "nplab0"  # root-namespace end of the node link
NODE_VETH = "nplab1"  # node-namespace end
# The link is 198.18.77.0/30 (RFC 2544 benchmarking space: routable but never used by real networks), not
# link-local: the API server's address is the `kubernetes` Service's endpoint, and the API rejects link-local
# endpoint addresses (169.254.0.0/16) with "may not be in the link-local range".
ROOT_IP = "198.18.77.1"
NODE_IP = "198.18.77.2"
LINK_PREFIX = 30
POD_CIDR = "10.244.0.0/24"
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
KUBE_ROUTER_HEALTH_PORT = 20244  # inside the node namespace only
KUBE_PROXY_HEALTHZ = "127.0.0.1:10256"  # inside the node namespace only
KUBE_PROXY_METRICS = "127.0.0.1:10249"  # inside the node namespace only
# What `up` builds; a lab of another layout (an older checkout's) is torn down and rebuilt, never repaired.
# 2: kube-controller-manager, kube-proxy, ServiceAccount admission, the `kubernetes` Service's endpoints.
LAYOUT = "2"

NODE_NAME = "lab-node"
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

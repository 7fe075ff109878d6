"""Thin wrappers over `ip`, `iptables-save` and `conntrack` for the lab's own network namespaces.

Job: create/remove the node namespaces, their links to the root namespace and to each other, create/remove
pod namespaces with their veth, route and neighbour entries, and read each node namespace's firewall.
Must not: run iptables in the root namespace, or touch any interface, route or namespace whose name the lab
did not choose.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from . import config as C


class CommandError(RuntimeError):
    pass


def run(argv: Sequence[str], check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise CommandError(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def netns_list() -> list[str]:
    out = run(["ip", "netns", "list"]).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def netns_exists(name: str) -> bool:
    return name in netns_list()


def link_exists(name: str, netns: str | None = None) -> bool:
    argv = ["ip"] + (["-n", netns] if netns else []) + ["link", "show", "dev", name]
    return run(argv, check=False).returncode == 0


def sysctl(netns: str, key: str, value: str, *more: str) -> None:
    """sysctl -w key=value [key=value...] inside netns (more: further "key=value" strings)."""
    run(["ip", "netns", "exec", netns, "sysctl", "-q", "-w", f"{key}={value}", *more])


# The kernel rate-limits ICMP errors (1/s per peer for unreachables, 1000/s with a burst of 50 overall).
# kube-router REJECTs with ICMP port-unreachable, so under many probes a blocked TCP connect would turn from
# `refused` into a slow `timeout` at random. The lab lifts the limits inside its own namespaces only.
ICMP_UNLIMITED = ("net.ipv4.icmp_ratelimit=0", "net.ipv4.icmp_msgs_per_sec=1000000", "net.ipv4.icmp_msgs_burst=1000000")


def unlimit_icmp(netns: str) -> None:
    run(["ip", "netns", "exec", netns, "sysctl", "-q", "-w", *ICMP_UNLIMITED])


# ---------------------------------------------------------------------------------------------- node namespaces
def node_up(node: C.LabNode) -> None:
    """The node namespace, its veth link to the root namespace, and its pod CIDR route. Idempotent."""
    if not netns_exists(node.netns):
        run(["ip", "netns", "add", node.netns])
    n = ["ip", "-n", node.netns]
    run([*n, "link", "set", "lo", "up"])
    if not link_exists(node.root_veth):
        run(["ip", "link", "add", node.root_veth, "type", "veth", "peer", "name", node.node_veth, "netns",
             node.netns])
    run(["ip", "addr", "replace", f"{node.root_ip}/{C.LINK_PREFIX}", "dev", node.root_veth])
    run(["ip", "link", "set", node.root_veth, "up"])
    run([*n, "addr", "replace", f"{node.ip}/{C.LINK_PREFIX}", "dev", node.node_veth])
    run([*n, "link", "set", node.node_veth, "up"])
    run([*n, "route", "replace", "default", "via", node.root_ip, "dev", node.node_veth])
    sysctl(node.netns, "net.ipv4.ip_forward", "1", *ICMP_UNLIMITED)
    # The pod CIDR is reachable from the root namespace only through the node namespace.
    run(["ip", "route", "replace", node.pod_cidr, "via", node.ip, "dev", node.root_veth])


def nodes_up() -> None:
    """Every node namespace, and the link between the two that routes each node's pod CIDR to the other."""
    for node in C.NODES:
        node_up(node)
    a, b = C.NODES
    if not link_exists(a.peer_veth, a.netns):
        run(["ip", "-n", a.netns, "link", "add", a.peer_veth, "type", "veth", "peer", "name", b.peer_veth,
             "netns", b.netns])
    for here, there in ((a, b), (b, a)):
        n = ["ip", "-n", here.netns]
        run([*n, "addr", "replace", f"{here.peer_ip}/{C.LINK_PREFIX}", "dev", here.peer_veth])
        run([*n, "link", "set", here.peer_veth, "up"])
        run([*n, "route", "replace", there.pod_cidr, "via", there.peer_ip, "dev", here.peer_veth])


def nodes_down() -> list[str]:
    """Removes the pod CIDR routes, the node links and the node namespaces; returns what it removed."""
    removed = []
    for node in C.NODES:
        if run(["ip", "route", "show", node.pod_cidr], check=False).stdout.strip():
            run(["ip", "route", "del", node.pod_cidr], check=False)
            removed.append(f"route {node.pod_cidr}")
        if link_exists(node.root_veth):
            run(["ip", "link", "del", node.root_veth], check=False)
            removed.append(f"link {node.root_veth}")
        if netns_exists(node.netns):  # the link between the nodes goes with the first of them
            run(["ip", "netns", "del", node.netns], check=False)
            removed.append(f"netns {node.netns}")
    return removed


# ----------------------------------------------------------------------------------------------- pod namespaces
def pod_names(uid: str) -> tuple[str, str]:
    """(pod netns name, node-side veth name) for a pod uid."""
    h = uid.replace("-", "")[:12]
    return C.POD_NETNS_PREFIX + h, C.POD_VETH_PREFIX + h


def pod_netns_list() -> list[str]:
    return [n for n in netns_list() if n.startswith(C.POD_NETNS_PREFIX)]


def pod_up(node: C.LabNode, netns: str, veth: str, ip: str) -> None:
    """Pod namespace with eth0 holding ip/32, default route via the link-local gateway, host veth (in the
    node's namespace) routed."""
    if not netns_exists(netns):
        run(["ip", "netns", "add", netns])
    if link_exists(veth, node.netns):
        run(["ip", "-n", node.netns, "link", "del", veth])
    run(["ip", "-n", node.netns, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns])
    n = ["ip", "-n", node.netns]
    p = ["ip", "-n", netns]
    sysctl(node.netns, f"net.ipv4.conf.{veth}.proxy_arp", "1")
    unlimit_icmp(netns)  # a UDP probe to a closed port is answered by the pod's own kernel
    run([*n, "link", "set", veth, "up"])
    mac = run([*n, "-o", "link", "show", veth]).stdout.split("link/ether", 1)[1].split()[0]
    run([*p, "link", "set", "lo", "up"])
    run([*p, "addr", "add", f"{ip}/32", "dev", "eth0"])
    run([*p, "link", "set", "eth0", "up"])
    run([*p, "route", "add", C.POD_GATEWAY, "dev", "eth0", "scope", "link"])
    run([*p, "route", "add", "default", "via", C.POD_GATEWAY, "dev", "eth0"])
    run([*p, "neigh", "replace", C.POD_GATEWAY, "lladdr", mac, "dev", "eth0", "nud", "permanent"])
    run([*n, "route", "replace", f"{ip}/32", "dev", veth])


def pod_down(node: C.LabNode, netns: str, veth: str, ip: str | None) -> None:
    """Removes the pod's veth (and with it its route), its namespace, and conntrack entries of its IP on
    every node (a flow between nodes is tracked on both)."""
    if netns_exists(node.netns) and link_exists(veth, node.netns):
        run(["ip", "-n", node.netns, "link", "del", veth], check=False)
    if netns_exists(netns):
        run(["ip", "netns", "del", netns], check=False)
    if ip:
        for n in C.NODES:
            if netns_exists(n.netns):
                for flag in ("-s", "-d"):
                    run(["ip", "netns", "exec", n.netns, "conntrack", "-D", flag, ip], check=False)


# ------------------------------------------------------------------------------------------------- the firewall
def node_iptables(table: str | None = None, node: C.LabNode = C.NODE) -> str:
    """iptables-save of a node's namespace (kube-router's rules are in `filter`, kube-proxy's mostly in `nat`),
    of one table if given."""
    return run(["ip", "netns", "exec", node.netns, "iptables-save", *(["-t", table] if table else [])],
               timeout=20).stdout


def node_iptables_of(ip: str, table: str | None = None) -> str:
    """iptables-save of the node whose pod CIDR holds ip (the node that enforces that pod's policies)."""
    node = C.node_of_ip(ip)
    if node is None:
        raise ValueError(f"{ip} is not in any lab node's pod CIDR")
    return node_iptables(table, node)


def flush_conntrack() -> None:
    """conntrack -F on every node (a flow between two nodes is tracked on both)."""
    for node in C.NODES:
        run(["ip", "netns", "exec", node.netns, "conntrack", "-F"], check=False)

"""Thin wrappers over `ip`, `iptables-save` and `conntrack` for the lab's own network namespaces.

Job: create/remove the node namespace and its link to the root namespace, create/remove pod namespaces with
their veth, route and neighbour entries, and read the node namespace's firewall. Must not: run iptables in the
root namespace, or touch any interface, route or namespace whose name the lab did not choose.
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


# ---------------------------------------------------------------------------------------------- node namespace
def node_up() -> None:
    """The node namespace, its veth link to the root namespace, and the pod CIDR route. Idempotent."""
    if not netns_exists(C.NODE_NETNS):
        run(["ip", "netns", "add", C.NODE_NETNS])
    n = ["ip", "-n", C.NODE_NETNS]
    run([*n, "link", "set", "lo", "up"])
    if not link_exists(C.ROOT_VETH):
        run(["ip", "link", "add", C.ROOT_VETH, "type", "veth", "peer", "name", C.NODE_VETH, "netns", C.NODE_NETNS])
    run(["ip", "addr", "replace", f"{C.ROOT_IP}/{C.LINK_PREFIX}", "dev", C.ROOT_VETH])
    run(["ip", "link", "set", C.ROOT_VETH, "up"])
    run([*n, "addr", "replace", f"{C.NODE_IP}/{C.LINK_PREFIX}", "dev", C.NODE_VETH])
    run([*n, "link", "set", C.NODE_VETH, "up"])
    run([*n, "route", "replace", "default", "via", C.ROOT_IP, "dev", C.NODE_VETH])
    sysctl(C.NODE_NETNS, "net.ipv4.ip_forward", "1", *ICMP_UNLIMITED)
    # The pod CIDR is reachable from the root namespace only through the node namespace.
    run(["ip", "route", "replace", C.POD_CIDR, "via", C.NODE_IP, "dev", C.ROOT_VETH])


def node_down() -> list[str]:
    """Removes the pod CIDR route, the node link and the node namespace; returns what it removed."""
    removed = []
    if run(["ip", "route", "show", C.POD_CIDR], check=False).stdout.strip():
        run(["ip", "route", "del", C.POD_CIDR], check=False)
        removed.append(f"route {C.POD_CIDR}")
    if link_exists(C.ROOT_VETH):
        run(["ip", "link", "del", C.ROOT_VETH], check=False)
        removed.append(f"link {C.ROOT_VETH}")
    if netns_exists(C.NODE_NETNS):
        run(["ip", "netns", "del", C.NODE_NETNS], check=False)
        removed.append(f"netns {C.NODE_NETNS}")
    return removed


# ----------------------------------------------------------------------------------------------- pod namespaces
def pod_names(uid: str) -> tuple[str, str]:
    """(pod netns name, node-side veth name) for a pod uid."""
    h = uid.replace("-", "")[:12]
    return C.POD_NETNS_PREFIX + h, C.POD_VETH_PREFIX + h


def pod_netns_list() -> list[str]:
    return [n for n in netns_list() if n.startswith(C.POD_NETNS_PREFIX)]


def pod_up(netns: str, veth: str, ip: str) -> None:
    """Pod namespace with eth0 holding ip/32, default route via the link-local gateway, host veth routed."""
    if not netns_exists(netns):
        run(["ip", "netns", "add", netns])
    if link_exists(veth, C.NODE_NETNS):
        run(["ip", "-n", C.NODE_NETNS, "link", "del", veth])
    run(["ip", "-n", C.NODE_NETNS, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns])
    n = ["ip", "-n", C.NODE_NETNS]
    p = ["ip", "-n", netns]
    sysctl(C.NODE_NETNS, f"net.ipv4.conf.{veth}.proxy_arp", "1")
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


def pod_down(netns: str, veth: str, ip: str | None) -> None:
    """Removes the pod's veth (and with it its route), its namespace, and conntrack entries of its IP."""
    if netns_exists(C.NODE_NETNS) and link_exists(veth, C.NODE_NETNS):
        run(["ip", "-n", C.NODE_NETNS, "link", "del", veth], check=False)
    if netns_exists(netns):
        run(["ip", "netns", "del", netns], check=False)
    if ip and netns_exists(C.NODE_NETNS):
        for flag in ("-s", "-d"):
            run(["ip", "netns", "exec", C.NODE_NETNS, "conntrack", "-D", flag, ip], check=False)


# ------------------------------------------------------------------------------------------------- the firewall
def node_iptables(table: str | None = None) -> str:
    """iptables-save of the node namespace (kube-router's rules are in `filter`, kube-proxy's mostly in `nat`),
    of one table if given."""
    return run(["ip", "netns", "exec", C.NODE_NETNS, "iptables-save", *(["-t", table] if table else [])],
               timeout=20).stdout


def flush_conntrack() -> None:
    run(["ip", "netns", "exec", C.NODE_NETNS, "conntrack", "-F"], check=False)

"""Label selector and IP block matching. Pure functions; no policy semantics beyond metav1.LabelSelector."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from functools import lru_cache

from monitor.models import IPBlock, LabelSelector


def selector_matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelector semantics: every matchLabels pair AND every expression; empty matches all."""
    for key, value in selector.match_labels:
        if labels.get(key) != value:
            return False
    for req in selector.match_expressions:
        present = req.key in labels
        if req.operator == "In":
            if not present or labels[req.key] not in req.values:
                return False
        elif req.operator == "NotIn":
            if present and labels[req.key] in req.values:
                return False
        elif req.operator == "Exists":
            if not present:
                return False
        elif req.operator == "DoesNotExist" and present:
            return False
    return True


@lru_cache(maxsize=65536)
def _network(cidr: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(cidr, strict=False)


@lru_cache(maxsize=65536)
def _address(ip: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(ip)


def ip_version(address_or_cidr: str) -> int:
    """4 or 6, for an address or a CIDR."""
    return (_network(address_or_cidr) if "/" in address_or_cidr else _address(address_or_cidr)).version


def ip_in(ip: str, cidr: str) -> bool:
    addr, net = _address(ip), _network(cidr)
    return addr.version == net.version and addr in net


@lru_cache(maxsize=1 << 18)
def address_bits(ip: str) -> tuple[int, int]:
    """(IP version, the address as an integer): matched against many blocks with two integer operations."""
    a = _address(ip)
    return a.version, int(a)


@lru_cache(maxsize=4096)
def block_bits(cidr: str, excepts: tuple[str, ...] = ()) -> tuple[tuple[int, int, int], ...]:
    """A block as (version, network, netmask) integers, its cidr first and then each except."""
    return tuple((n.version, int(n.network_address), int(n.netmask)) for n in map(_network, (cidr, *excepts)))


def in_block_bits(address: tuple[int, int], block: tuple[tuple[int, int, int], ...]) -> bool:
    """ip_block_matches on address_bits and block_bits: in the cidr, in none of the excepts."""
    version, x = address
    (v, net, mask), *excepts = block
    return v == version and x & mask == net and not any(
        ev == version and x & em == en for ev, en, em in excepts)


def ip_block_matches(block: IPBlock, ip: str | None) -> bool:
    if ip is None or not ip_in(ip, block.cidr):
        return False
    return not any(ip_in(ip, e) for e in block.except_)


def primary_cidrs(pod_cidrs: Iterable[str]) -> tuple[str, ...]:
    """The pod CIDRs of the primary family (the first one's): where a pod without an IP is assumed to be."""
    cidrs = tuple(pod_cidrs)
    return tuple(c for c in cidrs if ip_version(c) == ip_version(cidrs[0])) if cidrs else ()


@lru_cache(maxsize=4096)
def block_coverage(cidr: str, excepts: tuple[str, ...], networks: tuple[str, ...]) -> bool | None:
    """Does a block (cidr minus excepts) hold an address known only to lie somewhere in `networks`?

    True: every address of the networks is in the block; False: none is; None: it depends on which one.
    Networks of the other IP family are never in the block.
    """
    block = _network(cidr)
    answers = set()
    for text in networks:
        net = _network(text)
        if net.version != block.version or not net.overlaps(block):
            answers.add(False)
            continue
        cut = [_network(e) for e in excepts if _network(e).version == net.version]
        if any(net.subnet_of(e) for e in cut):
            answers.add(False)
        elif net.subnet_of(block) and not any(net.overlaps(e) for e in cut):
            answers.add(True)
        else:
            answers.add(None)
    if len(answers) == 1:
        return answers.pop()
    return None if answers else False


def describe_selector(selector: LabelSelector | None) -> str:
    if selector is None:
        return "-"
    parts = [f"{k}={v}" for k, v in selector.match_labels]
    for r in selector.match_expressions:
        if r.operator in ("In", "NotIn"):
            parts.append(f"{r.key} {'in' if r.operator == 'In' else 'notin'} ({','.join(r.values)})")
        else:
            parts.append(r.key if r.operator == "Exists" else f"!{r.key}")
    return ",".join(parts) if parts else "{}"

"""Label selector and IP block matching. Pure functions; no policy semantics beyond metav1.LabelSelector."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
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


def ip_in(ip: str, cidr: str) -> bool:
    addr, net = _address(ip), _network(cidr)
    return addr.version == net.version and addr in net


def ip_block_matches(block: IPBlock, ip: str | None) -> bool:
    if ip is None or not ip_in(ip, block.cidr):
        return False
    return not any(ip_in(ip, e) for e in block.except_)


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

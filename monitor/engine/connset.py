"""Connection sets: per protocol (TCP, UDP, SCTP), a set of port intervals within 1..65535.

Interval algebra (union, intersection, difference) rather than enumeration, so a rule for 1-65535 costs the
same as one for port 80. Values are immutable and interned-friendly (hashable). No I/O, no policy knowledge.
"""

from __future__ import annotations

from collections.abc import Iterable

from monitor.models import PROTOCOLS

MIN_PORT, MAX_PORT = 1, 65535
Intervals = tuple[tuple[int, int], ...]
_FULL: Intervals = ((MIN_PORT, MAX_PORT),)


def _normalise(intervals: Iterable[tuple[int, int]]) -> Intervals:
    merged: list[list[int]] = []
    for lo, hi in sorted(intervals):
        lo, hi = max(lo, MIN_PORT), min(hi, MAX_PORT)
        if lo > hi:
            continue
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return tuple((a, b) for a, b in merged)


def _intersect(a: Intervals, b: Intervals) -> Intervals:
    out, i, j = [], 0, 0
    while i < len(a) and j < len(b):
        lo, hi = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if lo <= hi:
            out.append((lo, hi))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


def _subtract(a: Intervals, b: Intervals) -> Intervals:
    out = []
    for lo, hi in a:
        cur = lo
        for blo, bhi in b:
            if bhi < cur or blo > hi:
                continue
            if blo > cur:
                out.append((cur, blo - 1))
            cur = max(cur, bhi + 1)
            if cur > hi:
                break
        if cur <= hi:
            out.append((cur, hi))
    return tuple(out)


class ConnSet:
    """An immutable set of (protocol, port) connections."""

    __slots__ = ("_hash", "by_protocol")

    def __init__(self, by_protocol: dict[str, Intervals] | None = None) -> None:
        # Only non-empty protocols are kept so that equal sets compare equal.
        self.by_protocol: dict[str, Intervals] = {p: v for p, v in (by_protocol or {}).items() if v}
        self._hash = hash(tuple(sorted(self.by_protocol.items())))

    # ------------------------------------------------------------------ constructors
    @staticmethod
    def all() -> ConnSet:
        return ALL

    @staticmethod
    def none() -> ConnSet:
        return EMPTY

    @staticmethod
    def ports(protocol: str, lo: int | None = None, hi: int | None = None) -> ConnSet:
        """Every port of `protocol` when lo is None, else lo..hi (hi defaults to lo)."""
        if lo is None:
            return ConnSet({protocol: _FULL})
        return ConnSet({protocol: _normalise([(lo, lo if hi is None else hi)])})

    # ------------------------------------------------------------------ algebra
    def __or__(self, other: ConnSet) -> ConnSet:
        if not other.by_protocol or other is self:
            return self
        if not self.by_protocol:
            return other
        keys = self.by_protocol.keys() | other.by_protocol.keys()
        return ConnSet({p: _normalise(self.by_protocol.get(p, ()) + other.by_protocol.get(p, ())) for p in keys})

    def __and__(self, other: ConnSet) -> ConnSet:
        if other is ALL or other is self:
            return self
        if self is ALL:
            return other
        keys = self.by_protocol.keys() & other.by_protocol.keys()
        return ConnSet({p: _intersect(self.by_protocol[p], other.by_protocol[p]) for p in keys})

    def __sub__(self, other: ConnSet) -> ConnSet:
        if not other.by_protocol or not self.by_protocol:
            return self
        if other is ALL:
            return EMPTY
        return ConnSet({p: _subtract(v, other.by_protocol[p]) if p in other.by_protocol else v
                        for p, v in self.by_protocol.items()})

    def __bool__(self) -> bool:
        return bool(self.by_protocol)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConnSet) and self.by_protocol == other.by_protocol

    def __hash__(self) -> int:
        return self._hash

    def first(self) -> tuple[str, int]:
        """The lowest port of the first protocol (TCP, UDP, SCTP order) in the set: a sample connection."""
        for proto in PROTOCOLS:
            intervals = self.by_protocol.get(proto)
            if intervals:
                return proto, intervals[0][0]
        raise ValueError("an empty connection set has no first connection")

    def contains(self, protocol: str, port: int) -> bool:
        return any(lo <= port <= hi for lo, hi in self.by_protocol.get(protocol, ()))

    def is_all(self) -> bool:
        return all(self.by_protocol.get(p) == _FULL for p in PROTOCOLS)

    # ------------------------------------------------------------------ rendering
    def __str__(self) -> str:
        """`all`, `none`, or `TCP:80,9000-9100;UDP:53` (the tsv CONNS format of DESIGN.md)."""
        if self.is_all():
            return "all"
        if not self.by_protocol:
            return "none"
        parts = []
        for p in PROTOCOLS:
            iv = self.by_protocol.get(p)
            if iv:
                parts.append(p + ":" + ",".join(str(a) if a == b else f"{a}-{b}" for a, b in iv))
        return ";".join(parts)

    def __repr__(self) -> str:
        return f"ConnSet({self})"


ALL = ConnSet({p: _FULL for p in PROTOCOLS})
EMPTY = ConnSet()

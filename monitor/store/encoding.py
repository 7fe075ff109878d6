"""How values are stored: times, ids, result digests, result-set members and per-run latencies.

It owns the storage conventions (naive UTC times, the stable text and digest of a result, delta-varint
result-set members, one log-scale byte per latency) and parsing ids people type.
It must not import the ORM or open a session: these are pure functions of their arguments.
"""

from __future__ import annotations

import hashlib
import json
import math
import zlib
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

from monitor.cycles import no_cycle_collection
from monitor.errors import InputError, StoreError
from monitor.models import FlowResult, Outcome, Verdict


def _dt(iso: str | None) -> datetime | None:
    """ISO 8601 in, naive UTC out (the storage convention)."""
    if iso is None:
        return None
    try:
        value = datetime.fromisoformat(iso)
    except ValueError as e:
        raise InputError(f"not an ISO 8601 time: {iso!r}") from e
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    text = value.replace(tzinfo=None).isoformat(timespec="microseconds" if value.microsecond else "seconds")
    return text + "Z"


def _stable(r: FlowResult) -> tuple:
    return (r.case, r.source, r.destination, r.port, r.protocol, str(r.expected), str(r.intent),
            str(r.outcome), str(r.verdict), r.explanation, r.reason, r.node)


def _stable_text(r: FlowResult) -> str:
    # repr of a tuple of str/int/None is unambiguous and several times faster than JSON: this runs 500
    # times per stored run.
    return repr(_stable(r))


def _result_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _set_digest(texts: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(texts).encode()).hexdigest()


def _encode_ids(ids: Sequence[int]) -> bytes:
    out = bytearray()
    prev = 0
    for i in ids:
        d = i - prev
        prev = i
        z = (d << 1) ^ (d >> 63)  # zigzag: small negative deltas stay small
        while True:
            b = z & 0x7F
            z >>= 7
            if z:
                out.append(b | 0x80)
            else:
                out.append(b)
                break
    return zlib.compress(bytes(out), 9)


def _decode_ids(blob: bytes, limit: int | None = None) -> list[int]:
    """The ids in order; only the first `limit` when given (a page's first rows of a 40,000-member set)."""
    data = zlib.decompress(blob)
    ids, prev, z, shift = [], 0, 0, 0
    for b in data:
        z |= (b & 0x7F) << shift
        if b & 0x80:
            shift += 7
            continue
        prev += (z >> 1) ^ -(z & 1)
        ids.append(prev)
        z, shift = 0, 0
        if len(ids) == limit:
            break
    return ids


# Latency in one byte: log scale, ~4% resolution from 0.05 ms to ~40 s; 0 means "none".
_LAT_SCALE = 24.0


def _lat_byte(ms: float | None) -> int:
    if ms is None or ms < 0 or math.isnan(ms):
        return 0
    return 1 + min(254, round(math.log1p(ms) * _LAT_SCALE))


def _lat_value(b: int) -> float | None:
    return None if b == 0 else round(math.expm1((b - 1) / _LAT_SCALE), 2)


def _encode_volatile(results: Sequence[FlowResult]) -> bytes | None:
    raw = bytes(_lat_byte(r.latency_ms) for r in results) + bytes(min(255, r.attempts) for r in results)
    return zlib.compress(raw, 9) if any(raw) else None


_LAT_VALUES = [_lat_value(b) for b in range(256)]


def _apply_volatile(fields: Sequence[tuple], blob: bytes | None, total: int | None = None) -> list[FlowResult]:
    """Results from their stable fields (9 before latency/attempts, 3 after) and the run's volatile bytes;
    `total`: the size of the whole set when `fields` are only its first members."""
    if not blob:
        return [FlowResult(*f[:9], None, 0, *f[9:]) for f in fields]
    raw = zlib.decompress(blob)
    n = len(fields) if total is None else total
    if len(raw) != 2 * n or len(fields) > n:
        raise StoreError(f"run data is damaged: {len(raw)} volatile bytes for {n} results")
    lat = _LAT_VALUES
    return [FlowResult(*f[:9], lat[raw[i]], raw[n + i], *f[9:]) for i, f in enumerate(fields)]


_VERDICTS = {v.value: v for v in Verdict}
_OUTCOMES = {o.value: o for o in Outcome}


def _fields_from_row(row: Any) -> tuple:
    """A row of runs._RESULT_COLUMNS (id first) as FlowResult's stable fields. Unpacked by position and
    enums by dictionary, not by column name and Verdict(x): this runs 40,000 times for a big run."""
    _, case, source, destination, port, protocol, expected, intent, outcome, verdict, explanation, reason, node = row
    v = _VERDICTS
    try:
        return (case, source, destination, port, protocol, v[expected], v[intent], _OUTCOMES[outcome], v[verdict],
                explanation, reason, node)
    except KeyError as e:
        raise StoreError(f"run data is damaged: unknown verdict or outcome {e.args[0]!r}") from e


# A stored grid (monitor.grid.grid) in columns: one character per cell for its state and its mark, and the
# hover texts joined by NUL; decoding 40,000 cells is then a split, not a JSON parse of 40,000 small arrays
# (~60 -> ~20 ms). A text holding a NUL itself (a suite may name a case anything) falls back to plain JSON.
_STATE_CODE = {"violation": "v", "gap": "g", "unobserved": "u", "allow": "a", "deny": "d"}
_CODE_STATE = {c: s for s, c in _STATE_CODE.items()}


def _encode_grid(grids: list[dict]) -> bytes:
    heads, texts = [], []
    for g in grids:
        cells = [c for row in g["cells"] for c in row]
        heads.append({k: g[k] for k in ("port", "sources", "destinations", "counts")}
                     | {"states": "".join("-" if c is None else _STATE_CODE[c[0]] for c in cells),
                        "marks": "".join(" " if c is None else c[2] for c in cells)})
        texts += [c[3] for c in cells if c is not None]
    body = "\0".join(texts)
    if body.count("\0") != max(0, len(texts) - 1) or any(c[1] for g in grids for row in g["cells"] for c in row if c):
        return b"J" + zlib.compress(json.dumps(grids, separators=(",", ":"), ensure_ascii=False).encode(), 6)
    return b"C" + zlib.compress(json.dumps(heads, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
                                + body.encode(), 6)


def _decode_grid(blob: bytes) -> list[dict]:
    raw = zlib.decompress(blob[1:])
    if blob[:1] == b"J":
        return json.loads(raw)
    head, _, body = raw.partition(b"\n")
    texts = iter(body.decode().split("\0"))
    with no_cycle_collection():
        return _cells(json.loads(head), texts)


def _cells(heads: list[dict], texts: Iterator[str]) -> list[dict]:
    grids, states_of = [], _CODE_STATE
    for h in heads:
        width, states, marks = len(h["destinations"]), h["states"], h["marks"]
        rows = []
        for start in range(0, len(h["sources"]) * width, width):
            rows.append([None if states[j] == "-" else [states_of[states[j]], False, marks[j], next(texts)]
                         for j in range(start, start + width)])
        grids.append({"port": h["port"], "sources": h["sources"], "destinations": h["destinations"],
                      "cells": rows, "counts": h["counts"]})
    return grids


def _int_id(text: str, what: str) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        value = -1
    if value <= 0 or value > 2**62:
        raise InputError(f"unknown {what} {text} (see netpol-drift history)" if what == "run"
                         else f"unknown {what} {text}")
    return value

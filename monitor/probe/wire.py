"""The compact text formats between the probe runner and the probe agent: targets in, outcomes out.

Targets travel in the probe pod's spec (an argument), because probe pods have no API token. Outcomes travel
back through the container termination message, which the kubelet cuts at 4096 bytes, so they are encoded
by position (the n-th outcome belongs to the n-th target) with one letter per outcome class.

Target list:  `T10.244.0.5:80,U10.244.0.6:53,S[fd00::1]:9000`   (protocol letter, host, port)
Result:       `P1 <count> <form> <body>[ E <index>=<detail>;...]`
  form `L`: one token per target, a letter plus the latency in whole milliseconds (`c3r1t` ...); timeouts
            carry no latency (it is the timeout). Used whenever it fits.
  form `R`: run-length letters (`c40r2t`), no latencies; the fallback for very many targets.
  Fewer outcomes than <count> means the message was cut to fit: the missing ones were not reported.
This module must stay standard-library only and cheap to import: the agent starts from it in every probe pod.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

RESULT_LIMIT = 4096  # bytes: the kubelet truncates termination messages beyond this
VERSION = "P1"

# `n`: unsettled, the agent's passes disagreed (its detail lists them, e.g. `t>c>t`; `r*` is a pass refused by
# the destination itself: CLOSED_AT_DESTINATION, RESET_BY_DESTINATION).
OUTCOME_LETTERS = {"connected": "c", "refused": "r", "timeout": "t", "unreachable": "u", "error": "e",
                   "unsettled": "n"}
LETTER_OUTCOMES = {v: k for k, v in OUTCOME_LETTERS.items()}
# Detail of a UDP `refused` whose ICMP port unreachable came from the destination itself: the datagram got
# there and nothing listens on the port. That says nothing about policies (run.py judges it `unknown`), unlike
# a refusal sent by something in between (a REJECTing CNI on a node), which probe.udp_refused_means judges.
CLOSED_AT_DESTINATION = "closed"
# Detail of a TCP `refused` that no ICMP error caused: a reset, which the destination's own kernel sends when
# nothing listens on the port (or a CNI that rejects with a forged reset: probe.tcp_reset_means says which).
RESET_BY_DESTINATION = "reset"
PROTOCOL_LETTERS = {"TCP": "T", "UDP": "U", "SCTP": "S"}
LETTER_PROTOCOLS = {v: k for k, v in PROTOCOL_LETTERS.items()}


class WireError(ValueError):
    """A target list or result that does not follow the format above."""


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    host: str  # an IP address: probe pods have no DNS
    port: int
    protocol: str = "TCP"


@dataclass(frozen=True, slots=True)
class TargetOutcome:
    outcome: str  # connected, refused, timeout, unreachable, error, unsettled
    latency_ms: float | None = None
    detail: str = ""  # errno name or exception class for `error` and `unreachable`; CLOSED_AT_DESTINATION,
    # RESET_BY_DESTINATION


# ------------------------------------------------------------------------------------------------- targets
def encode_targets(targets: list[ProbeTarget] | tuple[ProbeTarget, ...]) -> str:
    parts = []
    for t in targets:
        host = f"[{t.host}]" if ":" in t.host else t.host
        parts.append(f"{PROTOCOL_LETTERS[t.protocol]}{host}:{t.port}")
    return ",".join(parts)


def decode_targets(text: str) -> list[ProbeTarget]:
    targets = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        letter, rest = part[0], part[1:]
        if letter not in LETTER_PROTOCOLS:
            raise WireError(f"target {part!r}: unknown protocol letter {letter!r}")
        host, sep, port = rest.rpartition(":")
        if not sep or not host or not _number(port) or not 0 < int(port) < 65536:
            raise WireError(f"target {part!r}: expected HOST:PORT")
        targets.append(ProbeTarget(host.strip("[]"), int(port), LETTER_PROTOCOLS[letter]))
    return targets


# ------------------------------------------------------------------------------------------------- results
def encode_result(outcomes: list[TargetOutcome], limit: int = RESULT_LIMIT) -> str:
    """The most detailed encoding that fits in `limit` bytes (ASCII, so bytes == characters)."""
    head = f"{VERSION} {len(outcomes)} "
    full = "".join(_token(o) for o in outcomes)
    body = "L " + full
    if len(head) + len(body) > limit:
        body = "R " + _run_length(outcomes)
    if len(head) + len(body) > limit:
        # Still too long (only possible with thousands of alternating outcomes): report a prefix and let the
        # reader see from <count> which targets are missing.
        body = body[: limit - len(head)]
        body = body.rstrip("0123456789") if body[-1:].isdigit() else body
    text = head + body
    details = [f"{i}={o.detail}" for i, o in enumerate(outcomes) if o.detail]
    if details:
        extra = " E "
        for d in details:
            if len(text) + len(extra) + len(d) + 1 > limit:
                break
            extra += d + ";"
        if extra != " E ":
            text += extra.rstrip(";")
    return text


def _token(o: TargetOutcome) -> str:
    letter = OUTCOME_LETTERS[o.outcome]
    if o.latency_ms is None or o.outcome == "timeout":
        return letter
    return f"{letter}{round(o.latency_ms)}"


def _run_length(outcomes: list[TargetOutcome]) -> str:
    out: list[str] = []
    letters = [OUTCOME_LETTERS[o.outcome] for o in outcomes]
    i = 0
    while i < len(letters):
        j = i
        while j < len(letters) and letters[j] == letters[i]:
            j += 1
        out.append(letters[i] + (str(j - i) if j - i > 1 else ""))
        i = j
    return "".join(out)


_TOKEN = re.compile(r"([a-z])([0-9]*)")


def _number(text: str) -> bool:
    # ASCII digits only: str.isdigit() also accepts "²", which int() refuses.
    return text.isascii() and text.isdigit()


def decode_result(text: str) -> tuple[int, list[TargetOutcome]]:
    """(number of targets the agent probed, the outcomes it reported: possibly fewer, never more)."""
    text = text.strip()
    main, _, detail_part = text.partition(" E ")
    fields = main.split(" ")
    if len(fields) not in (3, 4) or fields[0] != VERSION or not _number(fields[1]) or fields[2] not in ("L", "R"):
        raise WireError(f"not a probe result: {text[:60]!r}")
    count, form = int(fields[1]), fields[2]
    body = fields[3] if len(fields) == 4 else ""
    pos, outcomes = 0, []
    for m in _TOKEN.finditer(body):
        if m.start() != pos or m.group(1) not in LETTER_OUTCOMES:
            raise WireError(f"probe result: bad token at {pos}: {body[pos:pos + 10]!r}")
        pos = m.end()
        outcome, number = LETTER_OUTCOMES[m.group(1)], m.group(2)
        if form == "L":
            outcomes.append(TargetOutcome(outcome, float(number) if number else None))
        else:
            outcomes.extend(TargetOutcome(outcome) for _ in range(int(number) if number else 1))
    if pos != len(body) or len(outcomes) > count:
        raise WireError(f"probe result: {len(outcomes)} outcomes for {count} targets")
    details = {}
    for item in filter(None, detail_part.split(";")):
        index, _, what = item.partition("=")
        if _number(index):
            details[int(index)] = what
    outcomes = [TargetOutcome(o.outcome, o.latency_ms, details.get(i, "")) for i, o in enumerate(outcomes)]
    return count, outcomes

"""The reachability grid: a run's flows as source x destination cells per port, each the worst of its flows.

It owns the grid's vocabulary (a flow's state, the cell mark, the hover text) and `grid`, which the store
calls once per new result set (a 200 x 200 run is 40,000 cells: building them is most of a cold run page,
so it is done when the run is written, not when it is first viewed), `with_drift`, which marks a run's
drifted flows on a stored grid, and the dashboard and `matrix --format html` use both.
It must not import anything but models.py, do I/O or escape HTML (the pages escape what they print).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from monitor.models import FlowResult, Verdict

STATES = ("violation", "gap", "unobserved", "allow", "deny")  # worst first
EXPLANATION_CHARS = 400  # a hover text, not a report: the flows table and the API have it whole
DRIFT_MARK = " - DRIFT"
_ALLOW, _DENY = Verdict.ALLOW, Verdict.DENY
_RANK = {s: i for i, s in enumerate(STATES)}
_MARK = {"allow": "✓", "deny": "✗"}


def flow_state(r: FlowResult) -> str:
    """The grid's colour of one flow (FlowResult.violation / enforcement_gap / observed, spelled out: a
    200 x 200 run page classifies 40,000 of them)."""
    v = r.verdict
    if v is not _ALLOW and v is not _DENY:
        return "unobserved"
    if v is not r.expected:
        return "violation"
    if (r.intent is _ALLOW or r.intent is _DENY) and v is not r.intent:
        return "gap"
    return "allow" if v is _ALLOW else "deny"


def _flow_line(r: FlowResult, offline: bool) -> str:
    # Enum members formatted straight (StrEnum): .value is a property call, 200,000 of them on a big run.
    if offline:
        line = f"policies say {r.intent}"
    else:
        v = r.verdict
        seen = f"{v} ({r.outcome})" if v is _ALLOW or v is _DENY else f"nothing: not observed ({r.outcome})"
        line = f"[{r.case}] expected {r.expected}, policies say {r.intent}, observed {seen}"
    text = r.explanation or r.reason
    if text:
        line += "\n" + (text if len(text) <= EXPLANATION_CHARS else text[:EXPLANATION_CHARS - 1] + "…")
    return line


def grid(results: Sequence[FlowResult], states: Sequence[str] | None = None, *, offline: bool = False) -> list[dict]:
    """One grid per port: sources x destinations; each cell [state, drift, mark, hover text] for the worst of
    its flows (STATES order), None where no flow was planned; drift is False here (`with_drift` marks a
    run's). Marks say what was observed (offline: what the policies say): ✓ reachable, ✗ blocked, ? not known.
    Plain lists, str and int only: the store keeps it as JSON."""
    if states is None:
        states = [flow_state(r) for r in results]
    by_port: dict[tuple[str, int], dict[tuple[str, str], list[int]]] = {}
    for i, r in enumerate(results):
        by_port.setdefault((r.protocol, r.port), {}).setdefault((r.source, r.destination), []).append(i)
    grids = []
    for proto, port in sorted(by_port):
        cells = by_port[(proto, port)]
        sources = sorted({s for s, _ in cells})
        destinations = sorted({d for _, d in cells})
        counts = dict.fromkeys(STATES, 0)
        matrix = []
        where = f" {port}/{proto}\n"
        for s in sources:
            line: list = []
            head = s + " -> "
            for d in destinations:
                idx = cells.get((s, d))
                if idx is None:
                    line.append(None)
                    continue
                if len(idx) == 1:
                    worst = idx[0]
                    text = _flow_line(results[worst], offline)
                else:
                    worst = min(idx, key=lambda i: _RANK[states[i]])
                    text = "\n".join(_flow_line(results[i], offline) for i in idx)
                r = results[worst]
                state = states[worst]
                counts[state] += 1
                v = r.verdict
                shown = v if v is _ALLOW or v is _DENY else r.intent
                line.append([state, False, _MARK.get(shown, "?"), head + d + where + text])
            matrix.append(line)
        grids.append({"port": f"{port}/{proto}", "sources": sources, "destinations": destinations,
                      "cells": matrix, "counts": counts})
    return grids


def with_drift(grids: list[dict], drift_keys: Iterable[str]) -> list[dict]:
    """The grids with the cells of these flow keys (`case|source|destination|port/protocol`) marked drifted
    and " - DRIFT" after the flow's line in the hover text. The grids passed in are shared (the store's,
    a cache's) and stay untouched: only the rows that change are copied."""
    by_port = {g["port"]: i for i, g in enumerate(grids)}
    out = list(grids)
    for key in sorted(drift_keys):
        # Kubernetes names, addresses and port/protocol never hold "|"; a suite's case name might.
        case, source, destination, port = key.rsplit("|", 3) if key.count("|") >= 3 else ("", "", "", "")
        gi = by_port.get(port)
        if gi is None:
            continue
        g = out[gi]
        try:
            si, di = g["sources"].index(source), g["destinations"].index(destination)
        except ValueError:
            continue
        cell = g["cells"][si][di]
        if cell is None:
            continue
        text = cell[3]
        start = text.find(f"\n[{case}] expected ")
        if start >= 0:
            end = text.find("\n", start + 1)
            end = len(text) if end < 0 else end
            text = text[:end] + DRIFT_MARK + text[end:]
        if g is grids[gi]:
            g = out[gi] = dict(g, cells=list(g["cells"]))
        row = g["cells"][si] = list(g["cells"][si])
        row[di] = [cell[0], True, cell[2], text]
    return out

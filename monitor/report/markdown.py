"""Markdown for a pull-request comment (`--format markdown` of check, diff and compare).

Shape: one summary line, a table of the failing (or changed) flows, the explanations folded under
<details>. A comment has a size limit (GitHub: 65,536 characters), so the body stops before MAX_CHARS and
says how many rows and explanations it left out. Every cluster- or manifest-sourced text goes through
`cell()`/`text()`: a `|` must not split a table cell, and names must not become links, HTML or @mentions.
This module must not decide pass or fail (the callers' data says it), print or write files.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from monitor.report import FAILED, PASSED, CaseReport, counts, flow_line

MAX_CHARS = 60_000

# Characters that start markup in GitHub-flavoured markdown, backslash-escaped; <, >, & and @ become entities
# so that no name turns into an HTML tag or a mention.
_MARKUP = re.compile(r"([\\`*_{}\[\]#!|~])")
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", "@": "&#64;"}


def text(value: object) -> str:
    """Outside text made inert for markdown (one line)."""
    out = _MARKUP.sub(r"\\\1", str(value))
    out = "".join(_ENTITIES.get(ch, ch) for ch in out)
    return " ".join(out.split())


def cell(value: object) -> str:
    return text(value) or " "


@dataclass
class Comment:
    """A comment body under construction: summary, one table, folded explanations."""

    summary: str
    headers: Sequence[str]
    rows: list[Sequence[str]] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    details_title: str = "Explanations"
    footer: str = ""

    def render(self, limit: int = MAX_CHARS) -> str:
        parts = [self.summary, ""]
        if self.rows:
            parts += ["| " + " | ".join(self.headers) + " |", "|" + "---|" * len(self.headers)]
        # What always goes in: the summary, the table head, the closing of <details> and the truncation note.
        reserve = 400 + len(self.footer)
        size = sum(len(p) + 1 for p in parts)
        shown_rows = 0
        for row in self.rows:
            line = "| " + " | ".join(row) + " |"
            if size + len(line) + 1 > limit - reserve:
                break
            parts.append(line)
            size += len(line) + 1
            shown_rows += 1
        shown_details = 0
        if self.details and shown_rows == len(self.rows):
            head = ["", f"<details><summary>{self.details_title}</summary>", ""]
            parts += head
            size += sum(len(p) + 1 for p in head)
            for item in self.details:
                if size + len(item) + 1 > limit - reserve:
                    break
                parts.append(item)
                size += len(item) + 1
                shown_details += 1
            parts += ["", "</details>"]
        left_rows, left_details = len(self.rows) - shown_rows, len(self.details) - shown_details
        if left_rows or left_details:
            parts += ["", f"_Truncated to fit a comment: {left_rows} more row(s) and {left_details} more "
                          f"explanation(s) not shown; run the command locally for all of them._"]
        if self.footer:
            parts += ["", self.footer]
        return "\n".join(parts) + "\n"


def _icon(ok: bool) -> str:
    return "✅" if ok else "❌"


# ------------------------------------------------------------------------------------------------- check
def check_markdown(suite: str, cases: Sequence[CaseReport], where: str) -> str:
    """`check` (and a run's cases): failing and unverified cases, one row per offending flow."""
    n = counts(cases)
    ok = n["fail"] == 0 and n["unverified"] == 0
    summary = (f"{_icon(ok)} **netpol-drift** suite {text(suite)} on {text(where)}: {n['pass']} passed, "
               f"{n['fail']} failed, {n['unverified']} not verified")
    seen = "Observed" if any(c.live for c in cases) else "Policies say"
    comment = Comment(summary, ["Result", "Case", "From", "To", "Port", "Expected", seen])
    for c in cases:
        if c.status == PASSED:
            continue
        flows = c.offending() if c.status == FAILED else c.flows
        for f in flows or c.flows:
            port = f"{f.port}/{f.protocol}" if f.port else f.protocol
            seen_value = f.verdict.value if c.live else f.intent.value
            comment.rows.append([c.status.upper(), cell(c.name), cell(f.source), cell(f.destination), cell(port),
                                 cell(f.expected.value), cell(seen_value)])
        comment.details.append(f"- **{text(c.name)}** ({c.status}): {text(c.explanation or '-')}")
        comment.details += [f"  - {text(flow_line(f, c.live))}" for f in (flows or c.flows)]
    if not comment.rows:
        comment.summary += "; every case holds"
    return comment.render()


# -------------------------------------------------------------------------------------------------- diff
def flow_diff_markdown(before: str, after: str, changes: Sequence, policy_lines: Sequence[str]) -> str:
    """`diff --before --after`: pod pairs whose connections changed (analyze.FlowChange) and why."""
    summary = (f"{'⚠️' if changes else '✅'} **netpol-drift diff** {text(before)} → {text(after)}: "
               f"{len(changes)} flow(s) changed, {len(policy_lines)} policy or pod change(s)")
    comment = Comment(summary, ["From", "To", "Before", "After", "Gained", "Lost"], details_title="Causes")
    comment.details += [f"- {text(line)}" for line in policy_lines]
    for c in changes:
        comment.rows.append([cell(c.source), cell(c.destination), cell(c.before), cell(c.after),
                             cell(c.added or "-"), cell(c.removed or "-")])
        why = "; ".join(c.causes) + (f" ({c.reason})" if c.reason else "")
        comment.details.append(f"- {text(c.source)} → {text(c.destination)}: {text(why or '-')}")
    return comment.render()


def run_diff_markdown(a: str, b: str, snapshot_changes: Sequence[str],
                      rows: Sequence[tuple[str, str, str, str]]) -> str:
    """`diff RUN RUN`: flows whose outcome differs between two stored runs (key, in a, in b, cause)."""
    summary = (f"{'⚠️' if rows else '✅'} **netpol-drift diff** run {text(a)} → run {text(b)}: "
               f"{len(rows)} flow(s) changed")
    comment = Comment(summary, ["Flow", f"Run {text(a)}", f"Run {text(b)}"], details_title="Causes")
    comment.details += [f"- {text(line)}" for line in snapshot_changes]
    for key, in_a, in_b, cause in rows:
        comment.rows.append([cell(key), cell(in_a), cell(in_b)])
        if cause:
            comment.details.append(f"- {text(key)}: {text(cause)}")
    return comment.render()


def compare_markdown(name_a: str, run_a: str, name_b: str, run_b: str, rows: Sequence[tuple[str, str, str]],
                     summary_counts: str, ok: bool) -> str:
    """`compare`: flows on which two clusters' latest runs disagree (key, in a, in b)."""
    summary = (f"{_icon(ok)} **netpol-drift compare** {text(name_a)} (run {text(run_a)}) vs "
               f"{text(name_b)} (run {text(run_b)}): {text(summary_counts)}")
    comment = Comment(summary, ["Flow", cell(name_a), cell(name_b)])
    comment.rows += [[cell(key), cell(in_a), cell(in_b)] for key, in_a, in_b in rows]
    return comment.render()

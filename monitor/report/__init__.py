"""Results in the formats other tools already read: JUnit XML (junit.py), pull-request markdown (markdown.py),
wgpolicyk8s.io PolicyReports (policyreport.py).

Job: turn what `check` and `run` found into one neutral shape (`CaseReport`, one per suite case) and hand it
to each renderer. Renderers are pure functions from frozen dataclasses to text or plain dicts: they must not
read the clock, print, write files or talk to a cluster (the CLI writes, monitor/cluster.py applies).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from monitor.models import FlowResult, Outcome, Verdict

if TYPE_CHECKING:
    from monitor.analyze import CaseCheck
    from monitor.run import CaseSummary

_NAMESPACE = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
# A case is verified only when every flow of it was judged; anything else is not a pass.
FAILED, PASSED = "fail", "pass"


@dataclass(frozen=True, slots=True)
class CaseReport:
    """A suite case as every output format shows it."""

    name: str
    status: str  # pass, fail, skipped, partial (some flows unverified), unknown (no flow gave a verdict)
    expected: str  # allow / deny
    observed: str  # live: the verdicts seen (allow, deny/unknown...); offline: what the policies say
    explanation: str  # why it failed, or why it was not verified
    flows: tuple[FlowResult, ...]
    live: bool  # observed by probes (run) or only evaluated from the policies (check)

    @property
    def verified(self) -> bool:
        return self.status in (PASSED, FAILED)

    def offending(self) -> tuple[FlowResult, ...]:
        """The flows that contradict the expectation: what the probes saw (live) or the policies say (check)."""
        if self.live:
            return tuple(f for f in self.flows if f.violation)
        return tuple(f for f in self.flows if f.intent in (Verdict.ALLOW, Verdict.DENY) and f.intent != f.expected)

    def namespaces(self) -> set[str]:
        """The namespaces whose workloads the case probes (sources and destinations named ns/...)."""
        out = set()
        for f in self.flows:
            for ref in (f.source, f.destination):
                ns, sep, _ = ref.partition("/")
                # An external target (10.0.0.0/8, fd00::/64) has a slash too, but no namespace.
                if sep and _NAMESPACE.fullmatch(ns):
                    out.add(ns)
        return out


def flow_line(f: FlowResult, live: bool) -> str:
    """One flow in words: who, where, what was expected, what was seen, why."""
    port = f"{f.port}/{f.protocol}" if f.port else f.protocol
    head = f"{f.source} -> {f.destination} {port}: expected {f.expected.value}"
    if live:
        seen = (f"observed {f.verdict.value} ({f.outcome.value})" if f.outcome is not Outcome.SKIPPED
                else "not probed")
        head += f", {seen}, policies say {f.intent.value}"
    else:
        head += f", policies say {f.intent.value}"
    why = "; ".join(t for t in (f.reason, f.explanation) if t)
    return f"{head}{': ' + why if why else ''}"


def from_check(c: CaseCheck) -> CaseReport:
    """A case of the static `check`: "observed" is what the policies say."""
    intents = sorted({f.intent.value for f in c.flows if f.intent in (Verdict.ALLOW, Verdict.DENY)})
    return CaseReport(c.name, c.status, c.expected.value, "/".join(intents) or "-",
                      "" if c.status == PASSED else c.summary, c.flows, live=False)


def from_live(c: CaseSummary) -> CaseReport:
    """A case of a live run: "observed" is the verdict the probes saw."""
    return CaseReport(c.name, c.status, c.expected.value, c.verdict or "-", c.explanation, c.flows, live=True)


def counts(cases: tuple[CaseReport, ...] | list[CaseReport]) -> dict[str, int]:
    """pass / fail / not verified (skipped, partial, unknown) counts."""
    out = {"pass": 0, "fail": 0, "unverified": 0}
    for c in cases:
        out[c.status if c.status in (PASSED, FAILED) else "unverified"] += 1
    return out

"""wgpolicyk8s.io/v1alpha2 PolicyReports of a live run, for policy dashboards (`report.policy_reports: true`).

`policy_reports()` builds, from one run, a PolicyReport per probed namespace (the cases whose flows start or
end there) and one ClusterPolicyReport with every case: result pass / fail / skip per case (a case that was
not verified is `skip`, never `pass`), the explanation as message, source `netpol-drift`. Every object has the
same name (`report.name`), so each run replaces the previous one instead of adding to it.
`PolicyReportPublisher` is the serve after-run hook that hands them to monitor/cluster.py. Nothing here
talks to the API server itself, reads the clock or decides pass or fail.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from monitor.errors import NetpolDriftError
from monitor.report import FAILED, PASSED, CaseReport, from_live

if TYPE_CHECKING:
    from monitor.cluster import ClusterAdapter
    from monitor.run import LiveRun
    from monitor.service import RunOutcome

log = logging.getLogger(__name__)

API_VERSION = "wgpolicyk8s.io/v1alpha2"
SOURCE = "netpol-drift"
MANAGED_BY = {"app.kubernetes.io/managed-by": "netpol-drift"}
# A dashboard shows the message in a table cell; the whole story is in `netpol-drift show RUN`.
_MESSAGE_CHARS = 1024


@dataclass(frozen=True, slots=True)
class PolicyReports:
    namespaced: tuple[dict, ...]  # one PolicyReport per probed namespace
    cluster: dict  # the ClusterPolicyReport


def _result(c: CaseReport) -> str:
    return "pass" if c.status == PASSED else "fail" if c.status == FAILED else "skip"


def _entry(c: CaseReport, suite: str, run_id: str, cluster: str, seconds: int) -> dict:
    message = c.explanation or ("every flow as expected" if c.status == PASSED else c.status)
    if len(message) > _MESSAGE_CHARS:
        message = message[:_MESSAGE_CHARS - 1] + "…"
    flows = c.flows
    return {
        "source": SOURCE, "policy": suite, "rule": c.name, "category": "NetworkPolicy",
        "result": _result(c), "scored": True, "message": message,
        "severity": "high" if c.status == FAILED else "info",
        "timestamp": {"seconds": seconds, "nanos": 0},
        "properties": {"run": run_id, "cluster": cluster, "status": c.status, "expected": c.expected,
                       "observed": c.observed,
                       "from": ",".join(sorted({f.source for f in flows})) or "-",
                       "to": ",".join(sorted({f.destination for f in flows})) or "-",
                       "flows": str(len(flows))},
    }


def _summary(results: Sequence[dict]) -> dict:
    out = {"pass": 0, "fail": 0, "warn": 0, "error": 0, "skip": 0}
    for r in results:
        out[r["result"]] += 1
    return out


def policy_reports(live: LiveRun, suite: str, name: str, run_ref: str | None = None) -> PolicyReports:
    """The objects that describe `live`, ready to be created or replaced (no status, no resourceVersion).
    `run_ref` is what `netpol-drift show` takes (the stored run's id; default: the run's own id)."""
    run = live.run
    seconds = int(datetime.fromisoformat(run.started_at).timestamp())
    cases = [from_live(c) for c in live.cases]
    entries = [(c, _entry(c, suite, run_ref or run.id, run.cluster, seconds)) for c in cases]
    by_ns: dict[str, list[dict]] = {}
    for c, e in entries:
        for ns in sorted(c.namespaces()):
            by_ns.setdefault(ns, []).append(e)
    labels = dict(MANAGED_BY)
    namespaced = tuple(
        {"apiVersion": API_VERSION, "kind": "PolicyReport",
         "metadata": {"name": name, "namespace": ns, "labels": labels},
         "scope": {"apiVersion": "v1", "kind": "Namespace", "name": ns},
         "summary": _summary(results), "results": results}
        for ns, results in sorted(by_ns.items()))
    results = [e for _, e in entries]
    cluster = {"apiVersion": API_VERSION, "kind": "ClusterPolicyReport",
               "metadata": {"name": name, "labels": labels},
               "summary": _summary(results), "results": results}
    return PolicyReports(namespaced, cluster)


class PolicyReportPublisher:
    """serve's after-run hook: each run that probed replaces the reports of the previous one. A run that
    failed before probing publishes nothing (the last reports stay, they are still the latest truth)."""

    def __init__(self, adapter: ClusterAdapter, name: str, suite_name: Callable[[], str]) -> None:
        self._adapter, self._name, self._suite_name = adapter, name, suite_name

    def __call__(self, outcome: RunOutcome) -> None:
        live = outcome.live
        if live is None:
            return
        stored = outcome.recorded.stored_id if outcome.recorded is not None else None
        reports = policy_reports(live, self._suite_name(), self._name, stored)
        try:
            written = self._adapter.publish_policy_reports(reports.namespaced, reports.cluster, MANAGED_BY)
        except NetpolDriftError as e:
            log.warning("run %s: PolicyReports not published: %s", live.run.id, e)
            return
        log.info("run %s: PolicyReports %s in %d namespace(s), ClusterPolicyReport %s", live.run.id,
                 self._name, written, self._name)

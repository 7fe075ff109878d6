"""Metrics: the only module that imports `prometheus_client`; every metric of the product is defined here.

Job: one `Metrics` object per service instance, with its own CollectorRegistry (no global registry, so that
tests and several services in one process never share counters), the methods the service calls after each run,
watch and reload, and the ASGI app that serves /metrics. Label values stay few and fixed (trigger, status,
state, outcome, kind, verb): never a run id, a namespace or a flow.
This module must not decide anything (it is told what happened) nor import kubernetes or the store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    make_asgi_app,
)

# A run is seconds (a few probe pods) to minutes (hundreds of source identities, re-probe rounds).
RUN_BUCKETS = (1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600, float("inf"))
CASE_STATES = ("pass", "fail", "drifted", "gap", "skipped")
RUN_STATUSES = ("ok", "partial", "failed", "timeout", "aborted")


class Metrics:
    """Every metric, registered in this instance's own registry."""

    def __init__(self) -> None:
        # prometheus_client's one process-wide switch: no `*_created` series beside each counter and histogram
        # (Prometheus ignores them; they double what a scrape carries and what the README must list).
        disable_created_metrics()
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.runs = Counter("netpol_drift_runs", "Runs by what triggered them (schedule, change, startup) and how "
                            "they ended (ok, partial: some case skipped, failed, timeout, aborted)",
                            ["trigger", "status"], registry=r)
        self.run_duration = Histogram("netpol_drift_run_duration_seconds", "Wall time of a run, snapshot to "
                                      "stored", buckets=RUN_BUCKETS, registry=r)
        self.last_run = Gauge("netpol_drift_last_run_timestamp_seconds", "Unix time the last run with this "
                              "status ended", ["status"], registry=r)
        self.cases = Gauge("netpol_drift_cases", "Cases of the last run: pass, fail, skipped (not verified) add "
                           "up to the suite; drifted and gap count cases among them", ["state"], registry=r)
        self.drift_open = Gauge("netpol_drift_drift_open", "Open drift events (confirmed and not yet resolved)",
                                registry=r)
        self.probe_outcomes = Counter("netpol_drift_probe_outcomes", "Probed flows by raw outcome", ["outcome"],
                                      registry=r)
        self.probe_pods_running = Gauge("netpol_drift_probe_pods_running", "Probe pods this process created and "
                                        "has not deleted yet", registry=r)
        self.policies = Gauge("netpol_drift_policies", "Policies in the last snapshot by kind", ["kind"],
                              registry=r)
        self.api_errors = Counter("netpol_drift_api_errors", "Failed Kubernetes API calls by verb", ["verb"],
                                  registry=r)
        self.api_throttled = Counter("netpol_drift_api_throttled", "Kubernetes API calls the API server throttled "
                                     "(HTTP 429 from API Priority and Fairness), by verb; retried after its "
                                     "Retry-After, a probe that still cannot run is skipped", ["verb"], registry=r)
        self.watch_relists = Counter("netpol_drift_watch_relists", "Watches that had to list again because the API "
                                     "server no longer had their resourceVersion (410 Gone), by kind", ["kind"],
                                     registry=r)
        self.leader = Gauge("netpol_drift_leader", "1 while this replica holds the Lease (only the leader probes)",
                            registry=r)
        self.config_reload_errors = Counter("netpol_drift_config_reload_errors", "Changed config or suite files "
                                            "that were rejected (the previous ones keep running)", registry=r)
        self.alerts = Counter("netpol_drift_alerts", "Alert deliveries by target (slack, webhook, log) and result: "
                              "sent, suppressed (history only: refused <-> timeout, flapping), error (queued for "
                              "a retry), config_error (halted until the Slack settings are fixed), recovered (found "
                              "in the channel, posted by a delivery a crash cut off: not posted again)",
                              ["channel", "result"], registry=r)
        self.alert_queue_depth = Gauge("netpol_drift_alert_queue_depth", "Alerts in the outbox not delivered yet",
                                       registry=r)
        self.alert_oldest_queued = Gauge("netpol_drift_alert_oldest_queued_seconds", "Age of the oldest undelivered "
                                         "alert (0 when none waits)", registry=r)
        self.store_errors = Counter("netpol_drift_store_errors", "Database calls of the leader that failed "
                                    "(unreachable, locked); the run is held and stored when the database is back",
                                    registry=r)
        self.runs_held = Gauge("netpol_drift_runs_held", "Runs probed but not stored yet: held in memory while the "
                               "database is unavailable (alert on > 0 for long)", registry=r)
        for state in CASE_STATES:
            self.cases.labels(state)  # exported as 0 before the first run, so absent never means "fine"

    # ------------------------------------------------------------------------------------------ updates
    def run_finished(self, trigger: str, status: str, seconds: float, ended_unix: float) -> None:
        self.runs.labels(trigger, status).inc()
        self.run_duration.observe(seconds)
        self.last_run.labels(status).set(ended_unix)

    def run_results(self, case_states: Mapping[str, int], outcomes: Iterable[str],
                    policies_by_kind: Mapping[str, int]) -> None:
        for state in CASE_STATES:
            self.cases.labels(state).set(case_states.get(state, 0))
        for outcome in outcomes:
            self.probe_outcomes.labels(outcome).inc()
        for kind, n in policies_by_kind.items():
            self.policies.labels(kind).set(n)

    def set_drift_open(self, n: int) -> None:
        self.drift_open.set(n)

    def api_error(self, verb: str) -> None:
        self.api_errors.labels(verb).inc()

    def api_throttled_call(self, verb: str) -> None:
        self.api_throttled.labels(verb).inc()

    def watch_relisted(self, kind: str) -> None:
        self.watch_relists.labels(kind).inc()

    def alert_result(self, channel: str, result: str) -> None:
        """monitor.alert.AlertMetrics: one delivery attempt's result."""
        self.alerts.labels(channel, result).inc()

    def alert_queue(self, depth: int, oldest_seconds: float) -> None:
        """monitor.alert.AlertMetrics: the outbox after a delivery pass."""
        self.alert_queue_depth.set(depth)
        self.alert_oldest_queued.set(oldest_seconds)

    def store_error(self) -> None:
        self.store_errors.inc()

    def set_runs_held(self, n: int) -> None:
        self.runs_held.set(n)

    def set_leader(self, leading: bool) -> None:
        self.leader.set(1 if leading else 0)

    def reload_rejected(self) -> None:
        self.config_reload_errors.inc()

    def count_probe_pods_with(self, count: Callable[[], int]) -> None:
        """The gauge reads the count when scraped (the cluster adapter knows which pods it still owns)."""
        self.probe_pods_running.set_function(lambda: float(count()))

    # ---------------------------------------------------------------------------------------- exposition
    def asgi_app(self):
        """The /metrics endpoint (prometheus_client's own ASGI app, gzip and OpenMetrics negotiation included)."""
        return make_asgi_app(self.registry)

    def render(self) -> str:
        return generate_latest(self.registry).decode()

"""The service (`netpol-drift serve`): the only module that imports `apscheduler`.

Job: keep proving the cluster's policies for as long as the process lives. An APScheduler interval job runs
the suite every `schedule.interval_seconds` (with jitter; one run at a time, coalesced, memory job store);
watches on policies, namespaces and the suite's pods move that job's next start to a short quiet period after a
change (debounced, capped); only the holder of the Lease probes; each run's probing stops at
`probe.run_deadline_seconds` (the rest `skipped`, the run stored as partial), and a run still busy well after
that (a hung API server or database) is cut; the config and suite files are re-read when they change (a
ConfigMap update); retention is applied daily; each run first sweeps the probe pods of runs that are gone (a
dead leader's, or what a run could not delete while the API server was away), again when their run Lease lapses
if it was still fresh.
After each run, `_after_run` is the one place for follow-up work (metrics, then every `after_run` hook, e.g.
the alerts); `add_periodic` schedules other leader-only work (e.g. the alert outbox sender).
This module must not probe, compare or store by itself (monitor.run does, the store is handed in), print, or
import kubernetes, sqlalchemy or prometheus_client (cluster.py, store/ and metrics.py own those; it loads
kubernetes through monitor.cluster and loads prometheus_client through monitor.metrics at import time; the store
only when it leads).
"""

from __future__ import annotations

import hashlib
import logging
import math
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from monitor import __version__
from monitor.cluster import (
    ADMIN_POLICY_APIS,
    PROBE_LABEL,
    RUN_LABEL,
    ClusterAdapter,
    ClusterConflictError,
    ClusterEvent,
    ClusterNotFoundError,
    LeaderElector,
)
from monitor.errors import ClusterError, ClusterUnreachableError, InputError, NetpolDriftError, StoreUnavailableError
from monitor.metrics import Metrics
from monitor.models import Run, Snapshot
from monitor.probe.runner import sweep_probe_pods
from monitor.run import LiveRun, Recorded, record_run, reprobe, run_once
from monitor.settings import Settings, load_settings
from monitor.suite import Suite, load_suite, suite_namespaces

if TYPE_CHECKING:
    from monitor.store import Store

log = logging.getLogger(__name__)

# What the service watches to trigger runs (admin-policy kinds only where their CRD is served).
WATCHED_KINDS = ("NetworkPolicy", *(kind for kind, _, _ in ADMIN_POLICY_APIS), "Namespace", "Pod")
# Settings a running process cannot take over: they shape connections, the Lease or the listening socket.
RESTART_ONLY = ("cluster", "store", "web", "leader", "report", "log_level")
_CRD_RECHECK_SECONDS = 300.0
ALERT_RETRY_SECONDS = 15.0  # how often queued alerts are looked at (their own backoff decides when they go)
# How long an aborted run's worker and probe-pod deletion may take before the service goes on without them.
_ABORT_WAIT_SECONDS = 10.0
# After the run deadline has stopped the probes, judging, storing and alerting get as long again (at most this),
# before the run counts as hung (an API server or database that never answers) and is cut, nothing of it stored.
_FINISH_SECONDS_MAX = 60.0
# Runs probed while the database is down are held in memory, oldest first, and stored when it is back. A day of
# 5-minute runs fits; past that the oldest goes (said in the log): memory stays bounded in a long outage.
MAX_HELD_RUNS = 300


@dataclass(frozen=True, slots=True)
class RunOutcome:
    """What one run of the service gave: what after-run work (metrics, alerts) gets."""

    run_id: str
    trigger: str  # schedule, change, startup
    cause: str  # what triggered it, in words (the changed objects, or the schedule)
    status: str  # ok, partial (some case not verified), failed, timeout, aborted
    seconds: float
    live: LiveRun | None = None
    recorded: Recorded | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Check:
    """One readiness check: /readyz is ready when all pass."""

    name: str
    ok: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class _Loaded:
    """The config and suite that runs use; replaced whole on reload."""

    settings: Settings
    suite: Suite
    suite_text: str
    digest: str  # of the config file and suite file bytes


@dataclass(frozen=True, slots=True)
class _Held:
    """A run probed but not stored (the database failed): what record_run needs to store it later, no more
    (no plan, no case summaries). `rounds` are the re-probes it made before the database failed (none when it
    could not read the baseline)."""

    run: Run
    snapshot: Snapshot
    settings: Settings
    suite_text: str
    now: datetime
    rounds: tuple
    history_only: str | None = None  # it ran right after an API server outage: stored unjudged, also later


class _Aborted(Exception):
    """The run was aborted (SIGTERM, lost leadership, deadline): nothing of it is stored."""


class RunClock:
    """A run's monotonic clock. `abort()` puts it at infinity: every deadline the probe runner computed (or
    will compute) has then passed, so it creates no pod any more, stops waiting and deletes what it created."""

    def __init__(self, base: Callable[[], float] = time.monotonic) -> None:
        self._base = base
        self.aborted = threading.Event()

    def __call__(self) -> float:
        return math.inf if self.aborted.is_set() else self._base()

    def abort(self) -> None:
        self.aborted.set()

    def check(self) -> None:
        if self.aborted.is_set():
            raise _Aborted


@dataclass
class _Current:
    run_id: str
    clock: RunClock
    worker: threading.Thread
    cut: str | None = None  # the status when the service cut the run: timeout or aborted


class Service:
    """Scheduler, watches, Lease and runs. `start()`, then `stop()` (on SIGTERM) releases everything."""

    def __init__(self, settings: Settings, *, config_path: str | None, metrics: Metrics,
                 connect: Callable[[], ClusterAdapter], identity: str | None = None) -> None:
        self.metrics = metrics
        self._config_path = config_path
        self._connect = connect
        self.identity = identity or f"{socket.gethostname()}_{uuid.uuid4().hex[:8]}"
        self._loaded = self._load(settings)
        # Separate clients: a slow run or a long watch must never hold up the Lease renewal or /readyz.
        self._runs, self._watch, self._lease, self._health = connect(), connect(), connect(), connect()
        self._runs.on_api_error = self._watch.on_api_error = self._lease.on_api_error = metrics.api_error
        self._runs.on_api_throttled = self._watch.on_api_throttled = self._lease.on_api_throttled = \
            metrics.api_throttled_call
        metrics.count_probe_pods_with(self._runs.probe_pods_alive)
        self._store: Store | None = None
        self._held: list[_Held] = []
        self._held_lock = threading.Lock()  # held runs are stored in order, before any newer run
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._leading = False
        self._running: _Current | None = None
        self._changes: list[str] = []
        self._first_change: float | None = None
        self._next_trigger = "startup"
        self._rejected_digest: str | None = None
        # When the watches found the API server unreachable, and when they reached it again (monotonic): runs are
        # history only until drift.hold_after_api_outage_seconds after that (see _history_only_because).
        self._api_lost_at: float | None = None
        self._api_back_at: float | None = None
        self.after_run: list[Callable[[RunOutcome], None]] = []
        s = settings
        self._scheduler = BackgroundScheduler(
            jobstores={"default": MemoryJobStore()},  # the SQL job store would pickle jobs outside Alembic
            executors={"default": ThreadPoolExecutor(4)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None}, timezone=UTC)
        # Paused (no next run time) until this replica leads.
        self._scheduler.add_job(self._run_job, self._interval(s), id="run", name="run", next_run_time=None)
        self._scheduler.add_job(self._reload_job, IntervalTrigger(seconds=s.schedule.reload_check_seconds),
                                id="reload", name="reload")
        self._scheduler.add_job(self._retention_job, IntervalTrigger(days=1), id="retention", name="retention",
                                next_run_time=datetime.now(UTC) + timedelta(minutes=1))
        self.add_periodic("held", self._store_held_job, ALERT_RETRY_SECONDS)
        self._elector = None
        if s.leader.enabled:
            self._elector = LeaderElector(
                self._lease, s.probe.namespace, s.leader.lease_name, self.identity,
                lease_seconds=s.leader.lease_seconds, renew_deadline_seconds=s.leader.renew_deadline_seconds,
                retry_seconds=s.leader.retry_seconds, on_change=self._leadership)
        self._watchers = [threading.Thread(target=self._watch_loop, args=(kind,), name=f"watch-{kind}",
                                           daemon=True) for kind in WATCHED_KINDS]

    @property
    def settings(self) -> Settings:
        return self._loaded.settings

    @property
    def suite(self) -> Suite:
        return self._loaded.suite

    # ------------------------------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._scheduler.start()
        for t in self._watchers:
            t.start()
        if self._elector is not None:
            self._elector.start()
        else:
            self._leadership(True)

    def stop(self) -> None:
        """SIGTERM: no new run; the current one may finish within shutdown_grace_seconds, else it is aborted
        and its probe pods deleted; the Lease is released; connections closed. Calling it again does nothing."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._scheduler.pause()
        current = self._running
        if current is not None:
            grace = self.settings.schedule.shutdown_grace_seconds
            log.info("stopping: waiting up to %gs for run %s to finish", grace, current.run_id)
            current.worker.join(grace)
            if current.worker.is_alive():
                self._abort(current, f"shutdown grace period ({grace:g}s) over")
        if self._elector is not None:
            self._elector.stop()
        self._leadership(False)
        self._scheduler.shutdown(wait=False)
        for adapter in (self._runs, self._watch, self._lease, self._health):
            adapter.close()
        if self._store is not None:
            self._store.close()

    def add_periodic(self, job_id: str, fn: Callable[[], None], seconds: float) -> None:
        """Leader-only work every `seconds` (e.g. sending the alert outbox); exceptions are logged, never fatal."""
        def job() -> None:
            if not self._leading or self._stopping.is_set():
                return
            try:
                fn()
            except Exception:  # the top of a periodic job: log, go on
                log.exception("periodic job %s failed", job_id)

        self._scheduler.add_job(job, IntervalTrigger(seconds=seconds), id=job_id, name=job_id,
                                replace_existing=True)

    # -------------------------------------------------------------------------------------- leadership
    def _leadership(self, leading: bool) -> None:
        with self._lock:
            was, self._leading = self._leading, leading
            current = self._running
        self.metrics.set_leader(leading)
        if leading and not was and not self._stopping.is_set():
            # A new leader does not know when the previous one last ran: run now, and sweep what it left.
            self._next_trigger = "startup"
            self._scheduler.modify_job("run", next_run_time=datetime.now(UTC))
        elif not leading and was:
            self._scheduler.modify_job("run", next_run_time=None)
            if self._held:  # the new leader probes afresh: results held here would land after its runs
                threading.Thread(target=self._drop_held, args=("lost the Lease",), daemon=True).start()
            if current is not None:
                # Another replica may already probe: this one stops at once (in its own thread, so that the
                # Lease loop that told us goes on).
                threading.Thread(target=self._abort, args=(current, "lost the Lease"), daemon=True).start()

    # ------------------------------------------------------------------------------------------- changes
    def _watch_loop(self, kind: str) -> None:
        """One kind: list, then watch from the list's resourceVersion, resume after the server ends a watch,
        re-list on 410 Gone (comparing fingerprints, so a change in the gap is not missed). Every API failure,
        the re-list's too, is retried with backoff: this thread ends only when the service stops."""
        known: dict[tuple[str, str], str] | None = None
        version = ""
        backoff = 1.0
        absent_logged = False
        gone = False  # the last watch was answered 410 Gone: the next list is compared with what was known
        lost = False  # the API server did not answer at all: the next call says when it does again
        while not self._stopping.is_set():
            try:
                if lost:
                    # Any answer, an error too (a 403 while its RBAC cache fills), says it is back; then the watch
                    # resumes (or re-lists on 410), as client-go's do.
                    try:
                        self._watch.ping()
                    except ClusterUnreachableError:
                        raise
                    except ClusterError:
                        pass
                    self._api_reached()
                    lost = False
                if known is None or gone:
                    listed, version = self._watch.list_fingerprints(kind)
                    self._api_reached()
                    if gone:
                        for key in set(known or {}) | set(listed):
                            if (known or {}).get(key) != listed.get(key):
                                self._observe(kind, known or {}, ClusterEvent(
                                    "DELETED" if key not in listed else "MODIFIED", kind, key[0] or None, key[1],
                                    version, listed.get(key, "")))
                    known, gone = listed, False
                    continue
                timeout = self.settings.schedule.watch_timeout_seconds
                for event in self._watch.watch_changes(kind, timeout, version):
                    version = event.resource_version or version
                    self._observe(kind, known, event)
                    if self._stopping.is_set():
                        return
                backoff = 1.0
            except ClusterConflictError as e:  # 410 Gone: the version is too old, re-list and compare
                log.info("watch %s: %s", kind, e)
                self.metrics.watch_relisted(kind)
                gone = True
            except ClusterNotFoundError:
                # Logged once; checked again now and then, quietly, in case the CRD gets installed.
                log.log(logging.INFO if not absent_logged else logging.DEBUG,
                        "%s is not served by this cluster (no CRD): not watched", kind)
                absent_logged = True
                if self._stopping.wait(_CRD_RECHECK_SECONDS):
                    return
                known = None
            except ClusterError as e:
                if isinstance(e, ClusterUnreachableError):
                    self._api_unreachable()
                    lost = True
                log.warning("watch %s: %s; again in %.0fs", kind, e, backoff)
                if self._stopping.wait(backoff):
                    return
                backoff = min(backoff * 2, 30.0)

    def _api_unreachable(self) -> None:
        with self._lock:
            if self._api_lost_at is None:
                self._api_lost_at = time.monotonic()
                log.warning("the API server is unreachable: runs are not judged until %gs after it answers again "
                            "(drift.hold_after_api_outage_seconds: the CNI agents re-sync then)",
                            self.settings.drift.hold_after_api_outage_seconds)

    def _api_reached(self) -> None:
        with self._lock:
            if self._api_lost_at is None:
                return
            self._api_lost_at, self._api_back_at = None, time.monotonic()
        log.info("the API server answers again: runs are judged again from %s",
                 _wall(self._api_back_at + self.settings.drift.hold_after_api_outage_seconds))

    def _history_only_because(self, since: float | None = None) -> tuple[str | None, float]:
        """(why a run that began at `since` (monotonic; default now) is history only, or None; the monotonic time
        from which runs are judged again). Every client's watches broke with the API server's connections, the CNI
        agents' too: client-go backs their reconnects off (up to 30 s, jittered to 60 s, then once more before a
        re-list when their version is gone), and until they have re-listed they program no pod created meanwhile.
        Every probe pod is such a pod, so what a run sees from the outage until the hold is over is the CNI
        catching up, not what the policies do: its changes are neither drift nor recovery, nor a new baseline."""
        hold = self.settings.drift.hold_after_api_outage_seconds
        with self._lock:
            lost, back = self._api_lost_at, self._api_back_at
        now = time.monotonic()
        if lost is not None and hold > 0:
            return (f"the API server has been unreachable since {_wall(lost)} (the CNI agents re-sync after it)",
                    now + hold)
        if back is not None and back + hold > (now if since is None else since):
            return (f"the API server answered again at {_wall(back)}; the CNI agents re-sync until "
                    f"{_wall(back + hold)} (drift.hold_after_api_outage_seconds)", back + hold)
        return None, now

    def _observe(self, kind: str, known: dict[tuple[str, str], str], event: ClusterEvent) -> None:
        if kind == "Pod":
            wanted = suite_namespaces(self.suite)
            if wanted is not None and event.namespace not in wanted:
                return
        key = event.key
        if event.type == "DELETED":
            if known.pop(key, None) is None:
                return
        elif known.get(key) == event.fingerprint:
            return  # nothing a snapshot reads has changed (a status heartbeat, an annotation)
        else:
            known[key] = event.fingerprint
        where = f"{event.namespace}/{event.name}" if event.namespace else event.name
        self.changed(f"{kind} {where} {event.type.lower()}")

    def changed(self, what: str) -> None:
        """A change that may move reachability: run after `debounce_seconds` of quiet, at the latest
        `debounce_max_seconds` after the first change; during a run, right after it."""
        sched = self.settings.schedule
        with self._lock:
            if not self._leading or self._stopping.is_set():
                return
            now = time.monotonic()
            self._changes.append(what)
            if self._first_change is None:
                self._first_change = now
            running = self._running.run_id if self._running is not None else None
            due = min(now + sched.debounce_seconds, self._first_change + sched.debounce_max_seconds)
        if running is not None:
            # Every change is logged (the run's start line names three): _run_job runs again after this one.
            log.debug("change: %s; run after run %s", what, running)
            return
        log.debug("change: %s; run in %.1fs", what, due - now)
        self._scheduler.modify_job("run", next_run_time=datetime.now(UTC) + timedelta(seconds=max(0.0, due - now)))

    # ---------------------------------------------------------------------------------------------- runs
    def _run_job(self) -> None:
        with self._lock:
            if not self._leading or self._stopping.is_set():
                return
            changes, self._changes, self._first_change = self._changes, [], None
            trigger = "change" if changes else self._next_trigger
            self._next_trigger = "schedule"
            run_id = uuid.uuid4().hex[:10]
            clock = RunClock()
            box: dict = {}
            cause = _describe_changes(changes) if changes else trigger
            deadline = self.settings.probe.run_deadline_seconds
            began = time.monotonic()
            # Probing stops at the deadline (what is not probed by then is skipped, the run stored as partial);
            # only a run still busy well after it is cut.
            worker = threading.Thread(target=self._execute_into,
                                      args=(box, run_id, trigger, cause, clock, began + deadline),
                                      name=f"run-{run_id}", daemon=True)
            current = self._running = _Current(run_id, clock, worker)
        log.info("run %s starting (trigger %s: %s)", run_id, trigger, cause)
        worker.start()
        end = began + deadline + min(deadline, _FINISH_SECONDS_MAX)
        while worker.is_alive() and not clock.aborted.is_set() and time.monotonic() < end:
            worker.join(0.5)
        if worker.is_alive() and not clock.aborted.is_set():
            self._abort(current, f"still busy {time.monotonic() - began - deadline:.0f}s after the run deadline "
                                 f"({deadline}s)", status="timeout")
        elif worker.is_alive():  # aborted by stop() or a lost Lease: the worker gets as long as _abort gives it
            worker.join(_ABORT_WAIT_SECONDS)
        status = current.cut or box.get("status") or "failed"
        outcome = RunOutcome(run_id, trigger, cause, status, time.monotonic() - began,
                             None if current.cut else box.get("live"), None if current.cut else box.get("recorded"),
                             box.get("error"))
        with self._lock:
            self._running = None
            pending = bool(self._changes) and self._leading and not self._stopping.is_set()
            first = self._first_change
        self._after_run(outcome)
        rec = outcome.recorded
        if rec is not None and rec.history_only is not None:
            # What it saw (a change that triggered it, too) is judged by a run as soon as that is possible, not at
            # the next interval.
            _, judged_from = self._history_only_because()
            self._run_at(max(judged_from - time.monotonic(), 0.0) + 1.0)
        if pending and first is not None:
            # Changes that came during the run: the snapshot may have missed them, run again (debounced from the
            # first of them, so a busy cluster gets a run every debounce_max_seconds at most).
            sched = self.settings.schedule
            due = max(0.0, min(sched.debounce_seconds, first + sched.debounce_max_seconds - time.monotonic()))
            self._scheduler.modify_job("run", next_run_time=datetime.now(UTC) + timedelta(seconds=due))

    def _run_at(self, seconds: float) -> None:
        """The next run in `seconds` at the latest (an earlier one planned stays)."""
        with self._lock:
            if not self._leading or self._stopping.is_set():
                return
        due = datetime.now(UTC) + timedelta(seconds=seconds)
        job = self._scheduler.get_job("run")
        if job is not None and (job.next_run_time is None or job.next_run_time > due):
            self._scheduler.modify_job("run", next_run_time=due)

    def _execute_into(self, box: dict, run_id: str, trigger: str, cause: str, clock: RunClock,
                      until: float) -> None:
        """The worker thread of one run. The top of a run: every failure is logged and counted, never raised."""
        try:
            box["live"], box["recorded"] = self._execute(run_id, trigger, cause, clock, until)
            box["status"] = "ok" if box["live"].run.status == "ok" else "partial"
        except _Aborted:
            box["status"] = "aborted"
        except NetpolDriftError as e:
            box["status"], box["error"] = ("aborted", str(e)) if clock.aborted.is_set() else ("failed", str(e))
        except Exception as e:  # a bug; the service goes on with the next run
            if clock.aborted.is_set():
                box["status"] = "aborted"
            else:
                log.exception("run %s failed", run_id)
                box["status"], box["error"] = "failed", f"{type(e).__name__}: {e}"

    def _execute(self, run_id: str, trigger: str, cause: str, clock: RunClock,
                 until: float) -> tuple[LiveRun, Recorded | None]:
        loaded = self._loaded
        try:
            self.open_store()
        except StoreUnavailableError as e:  # the run still probes: its result is held until the database is back
            log.warning("run %s: %s; probing all the same", run_id, e)
        clock.check()
        now = datetime.now(UTC)  # the one reading of the wall clock for this run
        began = time.monotonic()
        # Every run, not only a new leader's first: pods an earlier run could not delete (the API server went
        # away mid-run, and came back before the Lease changed hands) go as soon as their run Lease has lapsed.
        self._sweep(now, run_id)
        live = run_once(self._runs, loaded.suite, loaded.settings, now, run_id, trigger=trigger, sweep=False,
                        clock=clock, trigger_detail=cause if trigger == "change" else None, until=until)
        clock.check()
        rounds: list = []

        def again(flows, n):
            clock.check()
            got = reprobe(self._runs, live, flows, loaded.settings, f"{run_id}-c{n}", clock, until=until)
            rounds.append(got)
            return got

        # Probed (in part) from the outage to the end of the hold: history only, however it ended meanwhile.
        history_only, _ = self._history_only_because(since=began)
        with self._held_lock:
            try:
                store = self.open_store()
                self._store_held(store)
                return live, record_run(store, live, loaded.settings, now, loaded.suite_text, again,
                                        history_only)
            except StoreUnavailableError as e:
                self._hold(_Held(live.run, live.snapshot, loaded.settings, loaded.suite_text, now, tuple(rounds),
                                 history_only), run_id, e)
                return live, None

    # ------------------------------------------------------------------------------------ held runs
    def _hold(self, held: _Held, run_id: str, error: StoreUnavailableError) -> None:
        """Keeps a run the database refused (nothing of it was written: save_run is one transaction)."""
        self.metrics.store_error()
        same = next((h.snapshot for h in self._held if h.run.snapshot_digest == held.run.snapshot_digest), None)
        if same is not None:  # an unchanged cluster: the held runs share one snapshot in memory
            held = replace(held, snapshot=same)
        self._held.append(held)
        if len(self._held) > MAX_HELD_RUNS:
            dropped = self._held.pop(0)
            log.error("%d runs held: the oldest (started %s) is dropped", MAX_HELD_RUNS + 1,
                      dropped.run.started_at)
        self.metrics.set_runs_held(len(self._held))
        log.warning("run %s not stored: %s; held in memory until the database is back (%d held)", run_id, error,
                    len(self._held))

    def _store_held(self, store: Store) -> None:
        """Stores the held runs, oldest first (raises StoreError at the first that fails: it stays held; one
        the database rejects for good, not for being unavailable, is dropped with an error line).
        A held run is judged when it is stored, against the baseline and events of that moment (the same as
        when it ran: nothing newer was stored in between) with the re-probes it made; changes it could not
        re-probe stay unconfirmed (the next run confirms them), so holding never makes an alert up."""
        while self._held:
            held = self._held[0]

            def kept(flows, n, rounds=held.rounds):
                return rounds[n - 1] if n <= len(rounds) else {}

            try:
                live = LiveRun(held.run, (), held.snapshot, 0, 0.0)
                recorded = record_run(store, live, held.settings, held.now, held.suite_text, kept,
                                      held.history_only)
            except StoreUnavailableError:
                raise
            except NetpolDriftError as e:  # not a matter of time: keeping it would hold back every later run
                self._held.pop(0)
                self.metrics.set_runs_held(len(self._held))
                log.error("held run of %s cannot be stored, dropped: %s", held.run.started_at, e)
                continue
            self._held.pop(0)
            self.metrics.set_runs_held(len(self._held))
            log.info("run of %s (held while the database was unavailable) stored as %s, %d drift confirmed",
                     held.run.started_at, recorded.stored_id, len(recorded.judgement.confirmation.confirmed))

    def _drop_held(self, why: str) -> None:
        with self._held_lock:
            if self._held:
                log.warning("%s: %d held run(s) dropped, never stored", why, len(self._held))
                self._held.clear()
                self.metrics.set_runs_held(0)

    def _store_held_job(self) -> None:
        """Every ALERT_RETRY_SECONDS while runs are held: the database back means they are stored now, not at the
        next run."""
        if not self._held:
            return
        with self._held_lock:
            try:
                self._store_held(self.open_store())
            except StoreUnavailableError as e:
                self.metrics.store_error()
                log.debug("held runs: the database is still unavailable: %s", e)

    def _sweep(self, now: datetime, own_run: str | None) -> None:
        """Deletes the probe pods of runs that are gone (a killed leader's). Pods of another run whose Lease is
        still fresh stay: a one-shot job sweeps again a second after the first such Lease lapses, so what a dead
        leader left goes within probe.lease_seconds, not at the next leadership change."""
        report = sweep_probe_pods(self._runs, self.settings.probe, now)
        lapses = [at for run, at in report.kept if own_run is None or run.split("-")[0] != own_run]
        if lapses:
            due = min(lapses) + timedelta(seconds=1)
            log.info("probe pods of %d other run(s) kept; swept again at %s", len(lapses), due.isoformat())
            self._sweep_at(due)

    def _sweep_at(self, due: datetime) -> None:
        if not self._stopping.is_set():
            self._scheduler.add_job(self._sweep_job, DateTrigger(run_date=due), id="sweep", name="sweep",
                                    replace_existing=True)

    def _sweep_job(self) -> None:
        with self._lock:
            if not self._leading or self._stopping.is_set():
                return
            own = self._running.run_id if self._running is not None else None
        try:
            self._sweep(datetime.now(UTC), own)
        except ClusterError as e:
            log.warning("sweep of probe pods failed: %s; again in %ds", e, self.settings.probe.lease_seconds)
            self._sweep_at(datetime.now(UTC) + timedelta(seconds=self.settings.probe.lease_seconds))

    def open_store(self) -> Store:
        """Opened by the leader only, which also brings the schema up to date (followers never migrate)."""
        if self._store is None:
            from monitor.store import Store

            s = self.settings
            self._store = Store.open(s.store.url, password=s.secrets.database_password, migrate=True)
        return self._store

    def _abort(self, current: _Current, why: str, status: str = "aborted") -> None:
        """Cuts the run (its clock jumps past every deadline), deletes its probe pods (this run's and its
        re-probe rounds') and gives the worker and the deletion _ABORT_WAIT_SECONDS together: an API server
        that hangs must not hold up a shutdown (the next leader's sweep deletes what is left)."""
        log.warning("aborting run %s: %s", current.run_id, why)
        current.cut = status
        current.clock.abort()
        cleanup = threading.Thread(target=self._delete_probe_pods, args=(current.run_id,), daemon=True,
                                   name=f"abort-{current.run_id}")
        cleanup.start()
        end = time.monotonic() + _ABORT_WAIT_SECONDS
        for t in (cleanup, current.worker):
            t.join(max(0.0, end - time.monotonic()))

    def _delete_probe_pods(self, run_id: str) -> None:
        try:
            pods, _ = self._runs.list_probe_pods(f"{PROBE_LABEL}=true")
            for p in pods:
                run = dict(p.labels).get(RUN_LABEL, "")
                if run == run_id or run.startswith(run_id + "-"):
                    self._runs.delete_pod(p.namespace, p.name)
        except ClusterError as e:
            log.warning("run %s: could not delete its probe pods: %s (the next leader's sweep will)", run_id, e)

    def _after_run(self, outcome: RunOutcome) -> None:
        """THE place for work after each run: metrics first, then every hook in `self.after_run` (alerts).
        A hook that fails is logged and does not stop the others."""
        ended = time.time()
        self.metrics.run_finished(outcome.trigger, outcome.status, outcome.seconds, ended)
        if outcome.live is not None:
            live, rec = outcome.live, outcome.recorded
            drifted = set()
            if rec is not None:
                confirmed = rec.judgement.confirmation.confirmed
                drifted = {c.name for c in live.cases if any(f.key in confirmed for f in c.flows)}
            states = {"pass": sum(c.status == "pass" for c in live.cases),
                      "fail": sum(c.status == "fail" for c in live.cases),
                      "skipped": sum(c.status not in ("pass", "fail") for c in live.cases),
                      "gap": sum(c.enforcement_gap for c in live.cases), "drifted": len(drifted)}
            kinds = {"NetworkPolicy": len(live.snapshot.policies)} | {k: 0 for k, _, _ in ADMIN_POLICY_APIS}
            for p in live.snapshot.admin_policies:
                kinds[p.kind] = kinds.get(p.kind, 0) + 1
            self.metrics.run_results(states, (r.outcome.value for r in live.run.results), kinds)
            if self._store is not None and rec is not None:
                try:
                    events = self._store.open_events(live.run.cluster)
                    self.metrics.set_drift_open(sum(e.kind == "drift" for e in events))
                except NetpolDriftError as e:
                    log.warning("could not count open drift events: %s", e)
        summary = f"run {outcome.run_id} {outcome.status} in {outcome.seconds:.1f}s (trigger {outcome.trigger})"
        if outcome.error:
            log.error("%s: %s", summary, outcome.error)
        elif outcome.live is not None and outcome.recorded is None:
            log.warning("%s: not stored yet (held until the database is back)", summary)
        elif outcome.recorded is not None:
            j = outcome.recorded.judgement
            if outcome.recorded.history_only is not None:
                log.info("%s: stored as %s, history only (%d change(s) not judged): %s", summary,
                         outcome.recorded.stored_id, len(j.assessment.changed), outcome.recorded.history_only)
            else:
                log.info("%s: stored as %s, %d drift confirmed, %d event(s) opened, %d resolved", summary,
                         outcome.recorded.stored_id, len(j.confirmation.confirmed), len(j.transitions.opened),
                         len(j.transitions.resolved))
        else:
            log.info(summary)
        for hook in self.after_run:
            try:
                hook(outcome)
            except Exception:  # one failing hook must not stop the others nor the service
                log.exception("after-run hook %s failed", getattr(hook, "__name__", hook))

    # --------------------------------------------------------------------------------- reload, retention
    def _load(self, settings: Settings) -> _Loaded:
        if not settings.suite:
            raise InputError("no suite: set `suite` in the config (in the cluster: the mounted ConfigMap)",
                             file=self._config_path or "<defaults>", field="suite")
        suite = load_suite(settings.suite)
        text = Path(settings.suite).read_text(encoding="utf-8")
        return _Loaded(settings, suite, text, self._digest(settings))

    def _digest(self, settings: Settings) -> str:
        h = hashlib.sha256()
        for path in (self._config_path, settings.suite):
            try:
                h.update(Path(path).read_bytes() if path else b"")
            except OSError as e:
                h.update(f"unreadable: {e}".encode())
            h.update(b"\0")
        return h.hexdigest()

    def _reload_job(self) -> None:
        """A changed config or suite file (a ConfigMap update swaps the `..data` symlink) is validated whole
        and swapped in; an invalid one is rejected with one line and a metric, the old one keeps running."""
        old = self._loaded
        digest = self._digest(old.settings)
        if digest in (old.digest, self._rejected_digest):
            return
        try:
            new = self._load(load_settings(self._config_path))
        except NetpolDriftError as e:
            self._rejected_digest = digest
            self.metrics.reload_rejected()
            log.error("reload rejected, the running config and suite stay: %s", e)
            return
        kept = {name: getattr(old.settings, name) for name in RESTART_ONLY
                if getattr(new.settings, name) != getattr(old.settings, name)}
        if kept:
            log.warning("reload: %s changed but take effect only after a restart", ", ".join(sorted(kept)))
        settings = replace(new.settings, **kept)
        self._loaded = replace(new, settings=settings, digest=self._digest(settings))
        self._rejected_digest = None
        log.info("reloaded: suite %s (%d cases, digest %s)", new.suite.name, len(new.suite.cases),
                 new.suite.digest[:12])
        if (settings.schedule.interval_seconds, settings.schedule.jitter_seconds) != (
                old.settings.schedule.interval_seconds, old.settings.schedule.jitter_seconds):
            job = self._scheduler.get_job("run")
            self._scheduler.modify_job("run", trigger=self._interval(settings),
                                       next_run_time=job.next_run_time if job else None)

    def _retention_job(self) -> None:
        if not self._leading or self._store is None or self._stopping.is_set():
            return
        days = self.settings.store.retention_days
        try:
            report = self._store.prune(datetime.now(UTC).isoformat(), days)
            log.info("retention: pruned %d run(s) older than %d days", report.runs, days)
        except NetpolDriftError as e:
            log.warning("retention: %s", e)

    @staticmethod
    def _interval(settings: Settings) -> IntervalTrigger:
        return IntervalTrigger(seconds=settings.schedule.interval_seconds,
                               jitter=settings.schedule.jitter_seconds or None)

    # -------------------------------------------------------------------------------------------- health
    def alive(self) -> bool:
        return not self._stopping.is_set()

    def readiness(self) -> list[Check]:
        """Store reachable, API reachable, scheduler running. A follower is ready too: it serves metrics."""
        checks = [Check("scheduler", self._scheduler.running and not self._stopping.is_set())]
        try:
            from monitor.store import current_revision

            s = self.settings
            revision = current_revision(s.store.url, password=s.secrets.database_password)
            checks.append(Check("store", True, f"schema {revision}"))
        except NetpolDriftError as e:
            checks.append(Check("store", False, str(e)))
        try:
            checks.append(Check("api", True, self._health.ping()))
        except ClusterError as e:
            checks.append(Check("api", False, str(e)))
        return checks


def _wall(monotonic: float) -> str:
    """A time.monotonic() reading as wall-clock time of day (UTC), for log lines."""
    return (datetime.now(UTC) + timedelta(seconds=monotonic - time.monotonic())).strftime("%H:%M:%S UTC")


def _describe_changes(changes: list[str]) -> str:
    unique = list(dict.fromkeys(changes))
    more = f" (+{len(unique) - 3} more)" if len(unique) > 3 else ""
    return ", ".join(unique[:3]) + more


def serve(config_path: str | None) -> int:
    """The main loop: settings, start-up line, service and web server, wait for SIGTERM, stop."""
    from monitor.alert import AlertDelivery, make_target
    from monitor.web import WebServer, create_app

    settings = load_settings(config_path)
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Their INFO lines (every job execution, every migration plug-in) would drown ours.
    for noisy in ("apscheduler", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().getEffectiveLevel()))
    log.info("netpol-drift %s serve: %s", __version__, "; ".join(settings.describe()))
    # A Slack target that cannot work (a token without a channel) is a config error now, not after the first drift.
    make_target(settings)
    metrics = Metrics()
    service = Service(settings, config_path=config_path, metrics=metrics,
                      connect=lambda: ClusterAdapter.connect(settings.cluster))
    # Alerts: after every run, and on a timer for retries (leader only, both).
    alerts = AlertDelivery(service.open_store, lambda: service.settings, metrics)

    def send_alerts(_outcome: RunOutcome | None = None) -> None:
        alerts.deliver(datetime.now(UTC))

    service.after_run.append(send_alerts)
    service.add_periodic("alerts", send_alerts, ALERT_RETRY_SECONDS)
    if settings.report.policy_reports:
        from monitor.report.policyreport import PolicyReportPublisher

        service.after_run.append(PolicyReportPublisher(ClusterAdapter.connect(settings.cluster),
                                                       settings.report.name, lambda: service.suite.name))
    routes = []
    if settings.web.dashboard:
        from monitor.store import Store
        from monitor.web.dashboard import dashboard_access, dashboard_routes

        # Its own read-only Store, opened on the first page view: the leader creates the database on its first run.
        routes = dashboard_routes(lambda: Store.open(settings.store.url, password=settings.secrets.database_password),
                                  dashboard_access(settings))
    web = WebServer(create_app(service, metrics.asgi_app(), routes), settings.web.listen)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    web.start()
    service.start()
    log.info("serving /metrics, /healthz, /readyz%s on %s as %s", " and the dashboard" if routes else "",
             settings.web.listen, service.identity)
    while not stop.wait(1.0):
        pass
    log.info("SIGTERM: stopping")
    service.stop()
    web.stop()
    return 0

"""The probe runner: turns probe tasks into short-lived probe pods, waits for their results, deletes them.

One pod per task (a source identity, or a source identity on one node in per-node mode), created in the
source's namespace with the labels of a live pod of that identity (so every policy that selects the workload
selects the probe too), never Ready, owned by an object of the monitor, locked down to PodSecurity
"restricted". At most `concurrency` pods exist at once; the run has a deadline. Results come back through the
termination message (monitor.probe.wire). A pod that could not be scheduled, could not start, or did not finish
in time gives `skipped` for each of its targets, never a verdict.
Several runs may probe at once (a manual `run --once` beside the service, two CronJob runs): each run holds a
Lease (`netpol-drift-run-<run>` in the monitor's namespace) renewed while its pods exist, and labels its pods
with its run and owner; the start-up sweep deletes only pods whose run holds no live Lease.
This module must not import kubernetes, nor load it at import time (every API call goes through the adapter of
monitor.cluster that the caller hands in; what it names of the cluster, pod states, labels and the adapter's
errors, comes from monitor/probe/pods.py and monitor/errors.py), evaluate policies, or read the clock for anything
but deadlines (it takes a monotonic clock so tests can control it; Lease stamps are deadlines other processes
read, so they are wall-clock time).
"""

from __future__ import annotations

import logging
import math
import os
import re
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from monitor.errors import ClusterConflictError, ClusterError, ProbeError
from monitor.models import Labels
from monitor.probe.pods import OWNER_LABEL, PROBE_LABEL, RUN_LABEL, ProbePodState
from monitor.probe.wire import ProbeTarget, TargetOutcome, WireError, decode_result, encode_targets
from monitor.settings import ProbeSettings

if TYPE_CHECKING:
    from monitor.cluster import ClusterAdapter

log = logging.getLogger(__name__)

SOURCE_ANNOTATION = "netpol-drift.io/source"
# A termination message holds ~1,500 outcomes in the worst case: stay well below, split bigger tasks.
MAX_TARGETS_PER_POD = 1000
# Waiting reasons after which a container will not start within a run (the image is wrong or missing).
_HOPELESS_WAITING = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError",
                     "CreateContainerError"}
# How long one watch request lasts: the runner checks its deadline at least this often.
_WATCH_SLICE_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class ProbeTask:
    """Everything one probe pod needs: where it runs, what it looks like to policies, what it probes."""

    identity: str  # the source identity, e.g. shop/Deployment/web
    namespace: str
    labels: Labels  # of a live pod of the identity
    targets: tuple[ProbeTarget, ...]
    node: str | None = None  # per-node mode: pinned here


@dataclass(frozen=True, slots=True)
class ProbeReport:
    """What one task's probing gave: one outcome per target (None: not probed), or why it was skipped."""

    task: ProbeTask
    outcomes: tuple[TargetOutcome | None, ...]
    pod: str | None = None  # namespace/name of the probe pod
    node: str | None = None  # where it actually ran
    skipped_reason: str = ""  # set when no outcome came back at all

    def reason_for(self, index: int) -> str:
        if self.outcomes and self.outcomes[index] is not None:
            return ""
        return self.skipped_reason or "the probe pod did not report this target (termination message cut)"


@dataclass(frozen=True, slots=True)
class ProbeProgress:
    """Where one round of probing is, for a person watching (`run --once` on a terminal)."""

    pods: int  # probe pods this round needs
    created: int
    finished: int  # done: reported, failed, deleted or given up
    flows: int  # targets to probe
    observed: int  # targets whose pod reported an outcome


@dataclass
class _Live:
    """Book-keeping of one created pod while the run waits for it."""

    index: int  # position in the chunk list
    namespace: str
    name: str
    created_at: float
    last_state: ProbePodState | None = field(default=None)


def probe_owner() -> str:
    """Who runs this process, as a label value: host (the pod name in a cluster) and process id."""
    raw = f"{socket.gethostname()}.{os.getpid()}"
    return re.sub(r"[^A-Za-z0-9_.-]", "-", raw)[-63:].strip("-_.") or "unknown"


def probe_selector(run_id: str | None = None) -> str:
    return f"{PROBE_LABEL}=true" + (f",{RUN_LABEL}={run_id}" if run_id else "")


def probe_pod_manifest(task: ProbeTask, name: str, run_id: str, settings: ProbeSettings,
                       owner_uid: str, owner: str = "") -> dict:
    """The probe pod as a plain manifest. Every field here is there for a reason given in DESIGN.md."""
    labels = dict(task.labels)
    labels[PROBE_LABEL] = "true"
    labels[RUN_LABEL] = run_id
    labels[OWNER_LABEL] = owner or probe_owner()
    timeout = f"{settings.timeout_seconds:g}"
    spec: dict = {
        "restartPolicy": "Never",
        # Bounds the pod even if the runner dies before deleting it (the start-up sweep is the second net).
        "activeDeadlineSeconds": max(1, int(settings.run_deadline_seconds)),
        # Probe pods talk to nobody but their targets: no token, no service env vars, no grace period.
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": 0,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [{
            "name": "probe",
            "image": settings.image,
            "imagePullPolicy": "IfNotPresent",
            "command": ["netpol-drift", "probe-agent"],
            "args": ["--timeout", timeout, "--settle", f"{settings.settle_seconds:g}",
                     "--targets", encode_targets(task.targets)],
            # Never Ready, so no Service ever sends traffic to a probe pod that wears a workload's labels.
            "readinessProbe": {"exec": {"command": ["false"]}, "periodSeconds": 3600,
                               "failureThreshold": 1},
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "File",
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"},
                          "limits": {"cpu": "200m", "memory": "64Mi"}},
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
                "readOnlyRootFilesystem": True,
                "runAsNonRoot": True,
            },
        }],
    }
    if task.node:
        spec["nodeName"] = task.node
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": task.namespace,
            "labels": labels,
            "annotations": {SOURCE_ANNOTATION: task.identity},
            # A controller reference keeps ReplicaSets/StatefulSets whose selector matches the copied labels
            # from adopting the pod. The owner is the monitor's Namespace: owner references cannot cross
            # namespaces (the garbage collector would treat a ConfigMap elsewhere as absent and delete the
            # pod), a cluster-scoped owner can be referenced from every namespace, and uninstalling the
            # monitor then garbage-collects leftovers too.
            "ownerReferences": [{
                "apiVersion": "v1", "kind": "Namespace", "name": settings.namespace, "uid": owner_uid,
                "controller": True, "blockOwnerDeletion": False,
            }],
        },
        "spec": spec,
    }


@dataclass(frozen=True)
class SweepReport:
    """What a sweep did, and what it had to leave: (run, when its Lease lapses) of runs whose pods it kept."""

    deleted: int
    kept: tuple[tuple[str, datetime], ...] = ()


def sweep_probe_pods(adapter: ClusterAdapter, settings: ProbeSettings, now: datetime) -> SweepReport:
    """Deletes the probe pods of runs that are gone (no Lease, or one not renewed in time), and their
    expired Leases; the pods of a run still going are left alone (the caller may sweep again when its Lease
    lapses). Pods are listed before Leases: a run creates its Lease before its first pod, so every pod listed
    has its Lease in the later list unless the run is gone."""
    pods, _ = adapter.list_probe_pods(probe_selector())
    leases = adapter.list_run_leases(settings.namespace)
    alive = {lease.run: lease.lapses_at for lease in leases if lease.alive(now)}
    deleted = 0
    kept: dict[str, datetime] = {}
    for p in pods:
        run = dict(p.labels).get(RUN_LABEL)
        if run in alive:
            kept[run] = alive[run]
            continue
        if adapter.delete_pod(p.namespace, p.name):
            deleted += 1
    for lease in leases:
        if lease.run not in alive:
            adapter.delete_run_lease(settings.namespace, lease.run)
    if deleted:
        log.info("sweep deleted %d probe pod(s) of runs that are gone", deleted)
    if kept:
        log.info("sweep left the probe pods of %d run(s) still going (their Lease is fresh)", len(kept))
    return SweepReport(deleted, tuple(sorted(kept.items())))


def _chunks(tasks: list[ProbeTask]) -> list[tuple[int, int, ProbeTask]]:
    """(task index, offset of the chunk's first target, chunk task) with at most MAX_TARGETS_PER_POD each."""
    out = []
    for i, task in enumerate(tasks):
        for start in range(0, max(1, len(task.targets)), MAX_TARGETS_PER_POD):
            chunk = task.targets[start:start + MAX_TARGETS_PER_POD]
            out.append((i, start, ProbeTask(task.identity, task.namespace, task.labels, chunk, task.node)))
    return out


class ProbeRun:
    """One run's probe pods, from creation to deletion. Use `run()`; it always deletes what it created."""

    def __init__(self, adapter: ClusterAdapter, settings: ProbeSettings, run_id: str,
                 clock: Callable[[], float] = time.monotonic,
                 progress: Callable[[ProbeProgress], None] | None = None, until: float | None = None) -> None:
        self.adapter = adapter
        # When probing stops, on `clock`: the run's deadline (the run began before its snapshot, and re-probe
        # rounds share it); without one, run_deadline_seconds from the start of probing.
        self.until = until
        self.progress = progress
        self.settings = settings
        self.run_id = run_id
        self.clock = clock
        self.created: list[tuple[str, str]] = []  # still to delete
        self.pods_created = 0
        self._chunk_list: list[tuple[int, int, ProbeTask]] = []
        self.owner = probe_owner()
        self._lease_held = False
        self._lease_renewed = 0.0

    def run(self, tasks: list[ProbeTask]) -> list[ProbeReport]:
        tasks = [t for t in tasks if t.targets]
        if not tasks:
            return []
        try:
            owner_uid = self.adapter.namespace_uid(self.settings.namespace)
        except ClusterError as e:
            raise ProbeError(f"cannot read the monitor's namespace {self.settings.namespace!r}, the owner of "
                             f"probe pods: {e}") from e
        chunks = self._chunk_list = _chunks(tasks)
        results: dict[int, tuple[list[TargetOutcome | None] | None, str, str | None, str | None]] = {}
        self._take_lease()
        self._report(results)
        try:
            self._drive(chunks, owner_uid, results)
        finally:
            self._delete_all()
            self._drop_lease()
        return self._assemble(tasks, chunks, results)

    # -------------------------------------------------------------------------------------------- the lease
    def _take_lease(self) -> None:
        """Before the first pod: from now on a concurrent run's start-up sweep leaves this run's pods alone."""
        try:
            self.adapter.create_run_lease(self.settings.namespace, self.run_id, self.owner,
                                          self.settings.lease_seconds, datetime.now(UTC))
            self._lease_held, self._lease_renewed = True, self.clock()
        except ClusterError as e:  # probing still works; only a concurrent run could take these pods
            log.warning("could not create this run's Lease (probe pods unprotected from other runs' "
                        "start-up sweeps): %s", e)

    def _renew_lease(self) -> None:
        if not self._lease_held or self.clock() - self._lease_renewed < self.settings.lease_seconds / 3:
            return
        try:
            self.adapter.renew_run_lease(self.settings.namespace, self.run_id, datetime.now(UTC))
            self._lease_renewed = self.clock()
        except ClusterError as e:  # tried again on the next turn of the loop
            log.warning("could not renew this run's Lease: %s", e)

    def _drop_lease(self) -> None:
        if not self._lease_held:
            return
        try:
            self.adapter.delete_run_lease(self.settings.namespace, self.run_id)
        except ClusterError as e:  # it expires by itself; the next start-up sweep deletes it
            log.warning("could not delete this run's Lease: %s", e)

    # --------------------------------------------------------------------------------------------- main loop
    def _drive(self, chunks: list[tuple[int, int, ProbeTask]], owner_uid: str, results: dict) -> None:
        """Creates pods up to the concurrency limit, follows them on ONE watch (re-listing only at the start
        and when the watch's resource version expires: listing every pod after every event costs the API
        server and us far more than the events do), refills slots as pods finish, stops at the deadline."""
        deadline = self.until if self.until is not None else self.clock() + self.settings.run_deadline_seconds
        limit = f"the run deadline ({self.settings.run_deadline_seconds}s)"  # in the skip reasons
        waiting = deque(range(len(chunks)))
        live: dict[str, _Live] = {}  # by pod name
        selector = probe_selector(self.run_id)
        concurrency = max(1, self.settings.concurrency)

        def time_left() -> float:
            return deadline - self.clock()

        def fill() -> None:
            # The clock is read for every pod: a throttled API server (429s, each retried after its
            # Retry-After) can make every create take seconds, and an aborted run's clock jumps to infinity.
            while waiting and len(live) < concurrency and time_left() > 0:
                c = waiting.popleft()
                name = f"netpol-drift-probe-{self.run_id}-{c}"
                task = chunks[c][2]
                manifest = probe_pod_manifest(task, name, self.run_id, self.settings, owner_uid, self.owner)
                # Booked for deletion before the call: a SIGTERM that lands while the create is in flight
                # must not leave a pod the cleanup does not know (deleting a pod that never came is a no-op).
                self.created.append((task.namespace, name))
                try:
                    self.adapter.create_pod(manifest, time_left=time_left)
                except ClusterConflictError:
                    pass  # a retried create that had succeeded: the name is unique to this run
                except ClusterError as e:
                    self.created.remove((task.namespace, name))
                    results[c] = (None, f"could not create the probe pod: {e}", None, None)
                    continue
                self.pods_created += 1
                live[name] = _Live(c, task.namespace, name, self.clock())
                self._report(results)
            if waiting and time_left() <= 0:
                while waiting:
                    results[waiting.popleft()] = (None, f"the probe pod was not created before {limit}", None, None)

        fill()
        resource_version: str | None = None
        while live:
            self._renew_lease()
            if self.clock() >= deadline:
                for item in live.values():
                    results[item.index] = (None, self._late_reason(item, limit), f"{item.namespace}/{item.name}",
                                           None)
                return
            if resource_version is None:
                listed_at = self.clock()
                states, resource_version = self.adapter.list_probe_pods(selector)
                if self._vanished(states, live, results, listed_at) | self._observe(states, live, results):
                    fill()
                continue
            # Short enough to renew the Lease in time (a third of its duration).
            slice_ = max(1.0, min(_WATCH_SLICE_SECONDS, self.settings.lease_seconds / 3, deadline - self.clock()))
            try:
                for state, rv in self.adapter.watch_probe_pods(selector, resource_version, slice_):
                    resource_version = rv or resource_version
                    if state is not None and self._observe([state], live, results):
                        fill()
                    if not live or self.clock() >= deadline or (
                            self._lease_held and self.clock() - self._lease_renewed >= self.settings.lease_seconds / 3):
                        break
            except ClusterConflictError:
                resource_version = None  # expired: re-list, then watch again

    def _vanished(self, states: list[ProbePodState] | tuple[ProbePodState, ...], live: dict[str, _Live],
                  results: dict, listed_at: float) -> bool:
        """Pods created before this list that it does not hold were deleted (by someone else) before the watch
        began: no event will ever say so, so they are done now instead of at the run deadline."""
        listed = {s.name for s in states}
        gone = [item for item in live.values() if item.created_at <= listed_at and item.name not in listed]
        for item in gone:
            results[item.index] = (None, "the probe pod was deleted before it finished (gone from the API)",
                                   f"{item.namespace}/{item.name}", None)
            del live[item.name]
        return bool(gone)

    def _observe(self, states: list[ProbePodState] | tuple[ProbePodState, ...], live: dict[str, _Live],
                 results: dict) -> bool:
        """Updates book-keeping from pod states; True when some pod is done (finished, failed or hopeless)."""
        done = False
        for s in states:
            item = live.get(s.name)
            if item is None:
                continue
            item.last_state = s
            where = f"{s.namespace}/{s.name}"
            if s.finished:
                results[item.index] = self._read_result(s, len(self._chunk_targets(item)))
                done = True
            elif s.phase == "Deleted" or s.deleting:
                results[item.index] = (None, "the probe pod was deleted before it finished", where, s.node)
                done = True
            elif s.waiting_reason in _HOPELESS_WAITING:
                results[item.index] = (None, f"the probe container cannot start: {s.waiting_reason} "
                                             f"(image {self.settings.image})", where, s.node)
                done = True
            if item.index in results:
                del live[s.name]
                self._report(results)
                if not s.finished:
                    self._delete_now(s.namespace, s.name)
                # A finished pod is deleted with the rest at the end of the run: it holds no CPU or IP any
                # more, and every pod deletion makes the CNI agent re-sync its rules, which delays the start
                # of the probe pods still coming (measured in bench/probe_fanout.py).
        return done

    def _delete_now(self, namespace: str, name: str) -> None:
        try:
            self.adapter.delete_pod(namespace, name)
            self.created.remove((namespace, name))
        except ClusterError as e:  # retried once more at the end of the run
            log.warning("could not delete probe pod %s/%s: %s", namespace, name, e)

    def _report(self, results: dict) -> None:
        if self.progress is None:
            return
        chunks = self._chunk_list
        observed = sum(len(chunks[i][2].targets) for i, r in results.items() if r[0] is not None)
        self.progress(ProbeProgress(len(chunks), self.pods_created, len(results),
                                    sum(len(c[2].targets) for c in chunks), observed))

    def _chunk_targets(self, item: _Live) -> tuple[ProbeTarget, ...]:
        return self._chunk_list[item.index][2].targets

    def _read_result(self, s: ProbePodState, expected: int) -> tuple:
        where = f"{s.namespace}/{s.name}"
        message = (s.termination_message or "").strip()
        try:
            count, outcomes = decode_result(message)
        except WireError:
            why = message[:200] or s.termination_reason or "no termination message"
            return (None, f"the probe pod ended (exit code {s.exit_code}) without a result: {why}", where, s.node)
        if count != expected:
            return (None, f"the probe pod reported {count} targets, {expected} were given", where, s.node)
        padded: list[TargetOutcome | None] = [*outcomes, *([None] * (expected - len(outcomes)))]
        return (padded, "", where, s.node)

    @staticmethod
    def _late_reason(item: _Live, limit: str) -> str:
        s = item.last_state
        if s is None:
            return f"the probe pod did not appear before {limit}"
        if s.unschedulable:
            return f"the probe pod could not be scheduled before {limit}: {s.unschedulable}"
        if s.phase == "Pending":
            extra = f" ({s.waiting_reason})" if s.waiting_reason else ""
            return f"the probe pod was still Pending{extra} at {limit}"
        return f"the probe pod did not finish before {limit} (phase {s.phase})"

    def _delete_all(self) -> None:
        for ns, name in self.created:
            try:
                self.adapter.delete_pod(ns, name)
            except ClusterError as e:  # keep deleting the others; the start-up sweep catches this one
                log.warning("could not delete probe pod %s/%s: %s", ns, name, e)

    def _assemble(self, tasks: list[ProbeTask], chunks: list[tuple[int, int, ProbeTask]],
                  results: dict) -> list[ProbeReport]:
        reports = []
        for i, task in enumerate(tasks):
            outcomes: list[TargetOutcome | None] = [None] * len(task.targets)
            reasons, pods, nodes = [], [], []
            for c, (ti, offset, chunk) in enumerate(chunks):
                if ti != i:
                    continue
                got, reason, pod, node = results.get(c, (None, "the probe pod was not run", None, None))
                if got is not None:
                    outcomes[offset:offset + len(chunk.targets)] = got
                if reason:
                    reasons.append(reason)
                pods.append(pod)
                nodes.append(node)
            reports.append(ProbeReport(task, tuple(outcomes), next((p for p in pods if p), None),
                                       next((n for n in nodes if n), None), "; ".join(dict.fromkeys(reasons))))
        return reports


def run_probes(adapter: ClusterAdapter, tasks: list[ProbeTask], settings: ProbeSettings, run_id: str,
               clock: Callable[[], float] = time.monotonic,
               progress: Callable[[ProbeProgress], None] | None = None,
               until: float | None = None) -> tuple[list[ProbeReport], int]:
    """(one report per task with targets, in order; the number of probe pods created). `progress` hears of
    every pod created and every pod done; `until` (on `clock`) is when probing stops, unfinished probes
    skipped."""
    runner = ProbeRun(adapter, settings, run_id, clock, progress, until)
    reports = runner.run(tasks)
    return reports, runner.pods_created


def pods_needed(tasks: list[ProbeTask]) -> int:
    return sum(math.ceil(len(t.targets) / MAX_TARGETS_PER_POD) for t in tasks if t.targets)

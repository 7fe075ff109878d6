"""The start-up sweep (issue 8 item 8): only probe pods of runs that are gone are deleted.

The cluster is replaced at our own boundary (ClusterAdapter's list/delete of probe pods and run Leases): what
is under test is the rule. tests/test_live_lab.py runs it for real: two concurrent runs, a SIGKILLed one.
Also the runner's side of pods deleted by someone else and of pods no node takes
(tests/test_reliability_probe_lab.py does both for real), and of an API server that throttles every create
(tests/test_reliability_api_lab.py does it with real 429s).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from monitor.probe.pods import OWNER_LABEL, RUN_LABEL, ProbePodState, RunLease
from monitor.probe.runner import ProbeTask, probe_owner, probe_pod_manifest, sweep_probe_pods
from monitor.settings import ProbeSettings

NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


class Cluster:
    def __init__(self, pods: list[ProbePodState], leases: list[RunLease]) -> None:
        self.pods, self.leases, self.calls = pods, leases, []

    def list_probe_pods(self, selector: str):
        self.calls.append("pods")
        return tuple(self.pods), "1"

    def list_run_leases(self, namespace: str):
        self.calls.append("leases")
        return tuple(self.leases)

    def delete_pod(self, namespace: str, name: str) -> bool:
        self.pods = [p for p in self.pods if p.name != name]
        return True

    def delete_run_lease(self, namespace: str, run: str) -> bool:
        self.leases = [le for le in self.leases if le.run != run]
        return True


def pod(name: str, run: str | None) -> ProbePodState:
    labels = (("netpol-drift.io/probe", "true"),) + (((RUN_LABEL, run),) if run else ())
    return ProbePodState("shop", name, "Running", labels=labels)


def test_only_pods_of_runs_without_a_live_lease_are_swept() -> None:
    cluster = Cluster(
        [pod("a-0", "aaa"), pod("b-0", "bbb"), pod("c-0", "ccc"), pod("old", None)],
        [RunLease("aaa", "host.1", NOW - timedelta(seconds=10), 60),  # renewed 10 s ago: running
         RunLease("bbb", "host.2", NOW - timedelta(seconds=61), 60),  # lapsed: its run was killed
         RunLease("zzz", "host.3", None, 60)])  # no renewTime at all: dead
    report = sweep_probe_pods(cluster, ProbeSettings(), NOW)
    assert report.deleted == 3
    # What it had to leave, and when it may come back for it (serve schedules its next sweep then).
    assert report.kept == (("aaa", NOW + timedelta(seconds=50)),)
    assert [p.name for p in cluster.pods] == ["a-0"]
    assert [le.run for le in cluster.leases] == ["aaa"]
    # Pods first, then Leases: a run creates its Lease before its first pod, so no live run's pod can be
    # listed without its Lease being in the later list.
    assert cluster.calls == ["pods", "leases"]


def test_probe_pods_carry_their_run_and_owner() -> None:
    m = probe_pod_manifest(ProbeTask("shop/Deployment/web", "shop", (("app", "web"),), ()), "p", "r1",
                           ProbeSettings(), "uid")
    labels = m["metadata"]["labels"]
    assert labels[RUN_LABEL] == "r1" and labels[OWNER_LABEL] == probe_owner()
    assert len(probe_owner()) <= 63 and probe_owner()[0].isalnum()


class Vanishing(Cluster):
    """Every probe pod is deleted by someone else right after it is created, before the runner lists them."""

    def __init__(self) -> None:
        super().__init__([], [])
        self.created: list[str] = []
        self.watched = 0.0

    def namespace_uid(self, name: str) -> str:
        return "uid"

    def create_run_lease(self, *args: object) -> None:
        return None

    def renew_run_lease(self, *args: object) -> None:
        return None

    def create_pod(self, manifest: dict, time_left=None) -> None:
        self.created.append(manifest["metadata"]["name"])

    def watch_probe_pods(self, selector: str, resource_version: str, timeout_seconds: float):
        self.watched += timeout_seconds  # nothing ever comes: the pods were gone before the watch began
        return iter(())


def test_a_probe_pod_deleted_before_the_runner_lists_it_is_skipped_at_once_not_at_the_deadline() -> None:
    """Issue 15 item 2: no watch event ever reports a pod deleted before the watch began; the first list does
    (it lacks the pod), so the target is skipped with the reason at once instead of after run_deadline_seconds."""
    from monitor.probe.runner import run_probes
    from monitor.probe.wire import ProbeTarget

    cluster = Vanishing()
    task = ProbeTask("shop/Deployment/web", "shop", (("app", "web"),), (ProbeTarget("10.0.0.2", 80, "TCP"),))
    [report], created = run_probes(cluster, [task], ProbeSettings(run_deadline_seconds=3), "r1")
    assert created == 1 and cluster.created and cluster.watched == 0.0
    assert report.outcomes == (None,)
    assert report.skipped_reason == "the probe pod was deleted before it finished (gone from the API)"


class Throttling(Vanishing):
    """Every create is throttled: the adapter's retries after Retry-After take 0.4 s (of the test's clock),
    then it gives up."""

    def __init__(self) -> None:
        super().__init__()
        self.now = 100.0
        self.time_left: list[float] = []

    def clock(self) -> float:
        return self.now

    def create_pod(self, manifest: dict, time_left=None) -> None:
        from monitor.errors import ClusterThrottledError

        self.time_left.append(time_left())
        self.now += 0.4
        raise ClusterThrottledError(f"create pod shop/{manifest['metadata']['name']}: HTTP 429: Too many requests")


def test_a_throttled_api_server_cannot_hold_the_run_past_its_deadline() -> None:
    """Issue 15 item 1: under API Priority and Fairness every create may cost seconds of waiting for
    Retry-After. The runner reads its clock for every pod and hands the adapter the time left, so the run ends
    at its deadline with every flow skipped for its reason, never a verdict, and nothing to delete (it used to
    read the clock once per batch and go on creating: 10 creates of 0.4 s against a deadline of 1 s)."""
    from monitor.probe.runner import run_probes
    from monitor.probe.wire import ProbeTarget

    cluster = Throttling()
    tasks = [ProbeTask(f"shop/Deployment/w{i}", "shop", (("app", f"w{i}"),), (ProbeTarget("10.0.0.2", 80, "TCP"),))
             for i in range(10)]
    reports, created = run_probes(cluster, tasks, ProbeSettings(run_deadline_seconds=1, concurrency=10), "r1",
                                  clock=cluster.clock)
    assert created == 0 and len(cluster.time_left) == 3  # tried at 0, 0.4 and 0.8 s
    assert [round(t, 1) for t in cluster.time_left] == [1.0, 0.6, 0.2]
    assert all(r.outcomes == (None,) for r in reports)
    reasons = [r.skipped_reason for r in reports]
    assert reasons[:3] == [f"could not create the probe pod: create pod shop/netpol-drift-probe-r1-{i}: HTTP 429: "
                           "Too many requests" for i in range(3)]
    assert set(reasons[3:]) == {"the probe pod was not created before the run deadline (1s)"}


class NeverScheduled(Vanishing):
    """Every probe pod stays Pending: the scheduler finds no node for it (all cordoned). A clock of its own:
    each watch request lasts what the runner asked for, so the run deadline comes without waiting for it."""

    MESSAGE = ("0/2 nodes are available: 2 node(s) were unschedulable. preemption: 0/2 nodes are available: "
               "2 Preemption is not helpful for scheduling.")

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.deleted: list[str] = []

    def clock(self) -> float:
        return self.now

    def list_probe_pods(self, selector: str):
        return tuple(ProbePodState("shop", n, "Pending", unschedulable=self.MESSAGE) for n in self.created
                     if n not in self.deleted), "1"

    def watch_probe_pods(self, selector: str, resource_version: str, timeout_seconds: float):
        self.now += timeout_seconds
        return iter(())

    def delete_pod(self, namespace: str, name: str) -> bool:
        self.deleted.append(name)
        return True


def test_a_probe_pod_no_node_takes_is_skipped_with_the_schedulers_reason_at_the_run_deadline() -> None:
    """Issue 15 item 2: a scheduler may still place the pod (a node uncordoned), so the runner waits for it,
    but no longer than the run deadline; then each target is skipped with the scheduler's words, and the
    Pending pod is deleted."""
    from monitor.probe.runner import run_probes
    from monitor.probe.wire import ProbeTarget

    cluster = NeverScheduled()
    targets = (ProbeTarget("10.0.0.2", 80, "TCP"), ProbeTarget("10.0.0.3", 53, "UDP"))
    task = ProbeTask("shop/Deployment/web", "shop", (("app", "web"),), targets)
    [report], created = run_probes(cluster, [task], ProbeSettings(run_deadline_seconds=8), "r1", cluster.clock)
    assert created == 1 and report.outcomes == (None, None)
    assert report.skipped_reason == ("the probe pod could not be scheduled before the run deadline (8s): "
                                     + NeverScheduled.MESSAGE)
    assert report.reason_for(1) == report.skipped_reason
    assert 8.0 <= cluster.now < 8.0 + 5.0  # waited for the deadline, not beyond one watch slice of it
    assert cluster.deleted == cluster.created

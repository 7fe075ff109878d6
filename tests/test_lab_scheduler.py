"""The lab agent's scheduling choice (tests/lab/agent.py Agent.schedule), without the lab: which of the two
nodes an unscheduled pod goes to, which nodes cordons and taints keep it off (kube-scheduler's filters and
toleration rules), and the message a pod no node fits gets. The lab tests (tests/test_lab_nodes.py) prove the
binding, the PodScheduled condition and the retry after an uncordon for real."""

from __future__ import annotations

import threading

import pytest

from tests.lab import config as C
from tests.lab.agent import UNSCHEDULABLE_TAINT as UNSCHEDULABLE
from tests.lab.agent import Agent, fit_error, tolerates, untolerated_taint

FIRST, SECOND = C.NODES


def _agent() -> Agent:
    agent = Agent.__new__(Agent)  # no API client: schedule() only reads the pods it is given
    agent.lock = threading.Lock()
    agent.spread = 0
    return agent


def _pod(name: str, ns: str = "t", node: str | None = None, **spec: object) -> dict:
    return {"metadata": {"name": name, "namespace": ns}, "spec": {**({"nodeName": node} if node else {}), **spec},
            "status": {"phase": "Running" if node else "Pending"}}


def test_node_selector_and_daemonset_affinity_pick_the_node() -> None:
    agent = _agent()
    on_second = _pod("x", nodeSelector={"kubernetes.io/hostname": SECOND.name})
    assert agent.schedule(on_second, []) is SECOND
    daemon = _pod("ds-abcde", affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchFields": [{"key": "metadata.name", "operator": "In", "values": [FIRST.name]}]}]}}})
    assert agent.schedule(daemon, [_pod(f"busy-{i}", node=FIRST.name) for i in range(5)]) is FIRST
    assert agent.schedule(_pod("y", nodeSelector={"kubernetes.io/hostname": "elsewhere"}), []) is None


def test_the_rest_spread_by_namespace_then_by_load() -> None:
    agent = _agent()
    pods = [_pod("a", node=FIRST.name), _pod("b", node=FIRST.name), _pod("other", ns="o", node=SECOND.name),
            _pod("done", node=SECOND.name)]
    pods[-1]["status"]["phase"] = "Succeeded"  # finished pods do not count
    assert agent.schedule(_pod("c"), pods) is SECOND  # no pod of namespace t there yet
    assert agent.schedule(_pod("d", ns="o"), pods) is FIRST  # namespace o has its pod on SECOND
    # Same count of the namespace (none) on both: the less loaded node overall.
    assert agent.schedule(_pod("e", ns="new"), pods) is SECOND
    # A full tie goes to each node in turn.
    picks = {agent.schedule(_pod(f"f{i}", ns="new"), []) for i in range(2)}
    assert picks == {FIRST, SECOND}


def _node(name: str, unschedulable: bool = False, taints: tuple[dict, ...] = ()) -> dict:
    spec = {**({"unschedulable": True} if unschedulable else {}), **({"taints": list(taints)} if taints else {})}
    return {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}},
            "spec": spec}


TAINT = {"key": "dedicated", "value": "infra", "effect": "NoSchedule"}


@pytest.mark.parametrize(("toleration", "expected"), [
    ({"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}, True),
    ({"key": "dedicated", "value": "infra"}, True),  # operator defaults to Equal, an empty effect matches all
    ({"key": "dedicated", "operator": "Equal", "value": "other"}, False),
    ({"key": "dedicated", "operator": "Equal"}, False),  # Equal with no value matches only an empty value
    ({"key": "dedicated", "operator": "Exists"}, True),
    ({"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}, False),  # effects must match
    ({"key": "other", "operator": "Exists"}, False),
    ({"operator": "Exists"}, True),  # an empty key with Exists tolerates everything
    ({"operator": "Exists", "effect": "NoExecute"}, False),
    ({"key": "dedicated", "operator": "Gt", "value": "1"}, False),  # behind a feature gate that is off
])
def test_tolerations_match_taints_by_the_kubernetes_rules(toleration: dict, expected: bool) -> None:
    assert tolerates(toleration, TAINT) is expected


def test_only_noschedule_and_noexecute_taints_keep_a_pod_off() -> None:
    prefer = {"key": "soft", "effect": "PreferNoSchedule"}
    execute = {"key": "gone", "effect": "NoExecute"}
    assert untolerated_taint([prefer], []) is None
    assert untolerated_taint([prefer, execute], []) == execute
    assert untolerated_taint([prefer, execute], [{"key": "gone", "operator": "Exists"}]) is None


def test_cordoned_and_tainted_nodes_are_skipped_with_kube_schedulers_reasons() -> None:
    agent = _agent()
    pod = _pod("p")
    both_cordoned = {n.name: _node(n.name, unschedulable=True) for n in C.NODES}
    fits, reasons, considered = agent.feasible(pod, both_cordoned)
    assert fits == [] and considered == 2
    assert agent.schedule(pod, [], both_cordoned) is None
    assert fit_error(considered, reasons) == (
        "0/2 nodes are available: 2 node(s) were unschedulable. preemption: 0/2 nodes are available: "
        "2 Preemption is not helpful for scheduling.")
    # One cordoned, one tainted: one reason each, sorted as kube-scheduler sorts them.
    cordon_taint = {"key": UNSCHEDULABLE, "effect": "NoSchedule"}  # the node lifecycle controller adds it
    mixed = {FIRST.name: _node(FIRST.name, unschedulable=True, taints=(cordon_taint,)),
             SECOND.name: _node(SECOND.name, taints=(TAINT,))}
    fits, reasons, considered = agent.feasible(pod, mixed)
    assert fits == [] and fit_error(considered, reasons).startswith(
        "0/2 nodes are available: 1 node(s) had untolerated taint(s), 1 node(s) were unschedulable. preemption:")
    # A toleration for the taint opens the tainted node only.
    tolerant = _pod("q", tolerations=[{"key": "dedicated", "operator": "Exists"}])
    assert agent.schedule(tolerant, [], mixed) is SECOND
    # One node left open: everything goes there, whatever the spreading would say.
    one_open = {FIRST.name: _node(FIRST.name), SECOND.name: _node(SECOND.name, unschedulable=True)}
    assert {agent.schedule(_pod(f"r{i}"), [_pod("busy", node=FIRST.name)], one_open) for i in range(3)} == {FIRST}
    # A selector on a cordoned node: the cordon is what the scheduler names (its filter runs first).
    pinned = _pod("s", nodeSelector={"kubernetes.io/hostname": SECOND.name})
    _, reasons, _ = agent.feasible(pinned, one_open)
    assert reasons == {"node(s) didn't match Pod's node affinity/selector": 1, "node(s) were unschedulable": 1}


def test_daemonset_pods_tolerate_the_cordon_and_nothing_else() -> None:
    """The DaemonSet controller gives its pods a toleration of node.kubernetes.io/unschedulable:NoSchedule
    (among others): they still land on a cordoned node, but not on one with a taint of someone's own."""
    agent = _agent()
    ds_tolerations = [{"key": UNSCHEDULABLE, "operator": "Exists", "effect": "NoSchedule"},
                      {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}]
    pin = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
        {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [SECOND.name]}]}]}}}
    daemon = _pod("ds-x", tolerations=ds_tolerations, affinity=pin)
    cordoned = {n.name: _node(n.name, unschedulable=True,
                              taints=({"key": UNSCHEDULABLE, "effect": "NoSchedule"},)) for n in C.NODES}
    assert agent.schedule(daemon, [], cordoned) is SECOND
    tainted = {n.name: _node(n.name, taints=(TAINT,)) for n in C.NODES}
    assert agent.schedule(daemon, [], tainted) is None


class _Api:
    """Records the agent's status writes (the API client is our own boundary; the lab test writes for real)."""

    def __init__(self) -> None:
        self.patches: list[tuple[str, dict]] = []

    def request(self, method: str, path: str, body: dict, content_type: str = "") -> None:
        self.patches.append((path, body))


def test_the_unschedulable_condition_is_written_only_when_it_changes() -> None:
    agent = _agent()
    agent.api = _Api()
    pod = _pod("p")
    pod["metadata"].update(uid="u1")
    agent.report_unschedulable(pod, "0/2 nodes are available: 2 node(s) were unschedulable.")
    [(path, body)] = agent.api.patches
    assert path == "/api/v1/namespaces/t/pods/p/status"
    [cond] = body["status"]["conditions"]
    assert (cond["type"], cond["status"], cond["reason"]) == ("PodScheduled", "False", "Unschedulable")
    pod["status"]["conditions"] = [cond]  # what the next pass reads back
    agent.report_unschedulable(pod, cond["message"])
    assert len(agent.api.patches) == 1  # unchanged: no write
    agent.report_unschedulable(pod, "0/2 nodes are available: 2 node(s) had untolerated taint(s).")
    assert len(agent.api.patches) == 2
    # Still not scheduled: the condition keeps the time it became False.
    assert agent.api.patches[1][1]["status"]["conditions"][0]["lastTransitionTime"] == cond["lastTransitionTime"]

"""The lab agent's scheduling choice (tests/lab/agent.py Agent.schedule), without the lab: which of the two
nodes an unscheduled pod goes to. The lab tests (tests/test_lab_nodes.py) prove the binding for real."""

from __future__ import annotations

import threading

from tests.lab import config as C
from tests.lab.agent import Agent

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

"""The lab node agent keeps its contract (LAB.md): status, termination messages, readiness, deletion, restart.

Job: prove the parts of the agent that live-mode tests rely on, against the real API server. Must not: leave
the session's agent stopped (the restart test restarts it in a finally block).
"""

from __future__ import annotations

import ipaddress
import time

import pytest

from tests.lab import config as C
from tests.lab import control, netns, procs
from tests.lab.fixtures import Lab, pod_manifest
from tests.lab.rest import ApiError

pytestmark = pytest.mark.lab


def job(name: str, script: str, **spec) -> dict:
    return pod_manifest(name, {"app": name}, tcp=[], command=["sh", "-c", script], **spec)


def gone(lab: Lab, ns: str, name: str) -> bool:
    try:
        lab.pod(ns, name)
    except ApiError as e:
        return e.status == 404
    return False


def wait(what: str, fn, timeout: float = 15.0):
    from tests.lab.kube import wait_for

    return wait_for(what, fn, timeout)


def test_termination_message_exit_code_and_times(lab: Lab, lab_namespace: str) -> None:
    ns = lab_namespace
    pods = f"/api/v1/namespaces/{ns}/pods"
    lab.api.post(pods, job("fails", "printf 'why: %s' bad > /dev/termination-log; exit 3"))
    lab.api.post(pods, job("big", "head -c 6000 /dev/zero | tr '\\0' x > /dev/termination-log"))
    fails = lab.wait_finished(ns, "fails")
    big = lab.wait_finished(ns, "big")

    assert fails["status"]["phase"] == "Failed"
    node = C.node_named(fails["spec"]["nodeName"])  # the agent spread them over the nodes
    assert ipaddress.ip_address(fails["status"]["podIP"]) in ipaddress.ip_network(node.pod_cidr)
    assert fails["status"]["hostIP"] == node.ip
    term = fails["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["reason"], term["message"]) == (3, "Error", "why: bad")
    assert term["startedAt"] <= term["finishedAt"]

    assert big["status"]["phase"] == "Succeeded"
    term = big["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (0, "Completed")
    assert term["message"] == "x" * 4096


def test_command_gets_env_and_venv_path(lab: Lab, lab_namespace: str) -> None:
    ns = lab_namespace
    pod = job("env", 'printf "%s|%s|%s" "$(command -v python)" "$GREETING" "$MY_IP" > /dev/termination-log',
              )
    pod["spec"]["containers"][0]["env"] = [
        {"name": "GREETING", "value": "hello"},
        {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]
    lab.api.post(f"/api/v1/namespaces/{ns}/pods", pod)
    done = lab.wait_finished(ns, "env")
    msg = done["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
    assert msg == f"{C.VENV_BIN}/python|hello|{done['status']['podIP']}"


def test_readiness_probe_means_never_ready(lab: Lab, lab_namespace: str) -> None:
    ns = lab_namespace
    probed = pod_manifest("probed")
    probed["spec"]["containers"][0]["readinessProbe"] = {"exec": {"command": ["false"]}, "periodSeconds": 1}
    pods = lab.run_pods(ns, [pod_manifest("plain"), probed])

    def ready(p: dict) -> tuple[bool, str]:
        cond = {c["type"]: c["status"] for c in p["status"]["conditions"]}
        return p["status"]["containerStatuses"][0]["ready"], cond["Ready"]

    assert ready(pods["plain"]) == (True, "True")
    assert ready(pods["probed"]) == (False, "False")


def test_deletion_removes_netns_route_and_frees_ip(lab: Lab, lab_namespace: str) -> None:
    ns = lab_namespace
    pod = lab.run_pods(ns, [pod_manifest("victim")])["victim"]
    pod_ns, veth = netns.pod_names(pod["metadata"]["uid"])
    ip = pod["status"]["podIP"]
    node = lab.node_of(pod)
    assert netns.netns_exists(pod_ns)
    assert ip in netns.run(["ip", "-n", node.netns, "route", "show"]).stdout

    lab.api.delete(f"/api/v1/namespaces/{ns}/pods/victim")  # graceful: the agent must finish it
    wait("pod to be deleted", lambda: gone(lab, ns, "victim"))

    assert not netns.netns_exists(pod_ns)
    assert not netns.link_exists(veth, node.netns)
    assert f"{ip} " not in netns.run(["ip", "-n", node.netns, "route", "show"]).stdout


def test_active_deadline(lab: Lab, lab_namespace: str) -> None:
    ns = lab_namespace
    lab.api.post(f"/api/v1/namespaces/{ns}/pods", job("slow", "sleep 60", activeDeadlineSeconds=1))
    t0 = time.monotonic()
    pod = lab.wait_finished(ns, "slow", timeout=20)
    assert time.monotonic() - t0 < 10
    assert (pod["status"]["phase"], pod["status"].get("reason")) == ("Failed", "DeadlineExceeded")


def test_agent_restart_readopts_and_leaks_nothing(lab: Lab, lab_namespace: str) -> None:
    ns = lab_namespace
    pods = lab.run_pods(ns, [pod_manifest("keep", {"app": "keep"}), pod_manifest("drop", {"app": "drop"}),
                             pod_manifest("client", {"app": "client"})])
    keep_ns = netns.pod_names(pods["keep"]["metadata"]["uid"])[0]
    drop_ns = netns.pod_names(pods["drop"]["metadata"]["uid"])[0]
    agent = procs.pid_of("agent")
    assert agent, "the lab's agent is not running"
    procs.stop([agent])
    try:
        # While the agent is away: one pod vanishes for good, another one is created.
        lab.api.delete(f"/api/v1/namespaces/{ns}/pods/drop", {"gracePeriodSeconds": 0})
        lab.api.post(f"/api/v1/namespaces/{ns}/pods", pod_manifest("late", {"app": "late"}))
        assert netns.netns_exists(drop_ns)  # nobody cleaned it yet
    finally:
        control.start_agent()

    wait("the vanished pod's netns to be removed", lambda: not netns.netns_exists(drop_ns))
    late = lab.wait_running(ns, "late")
    assert netns.netns_exists(keep_ns)
    assert lab.pod(ns, "keep")["status"]["phase"] == "Running"
    assert lab.connect(late, pods["keep"], 80) == "connected"  # its listener survived the agent's restart
    # Exactly the live pods of this test have namespaces (other sessions may share the lab: look at ours only).
    ours = {netns.pod_names(p["metadata"]["uid"])[0] for p in pods.values()} | {
        netns.pod_names(late["metadata"]["uid"])[0]}
    live = {netns.pod_names(p["metadata"]["uid"])[0] for p in lab.api.get(f"/api/v1/namespaces/{ns}/pods")["items"]}
    assert ours & set(netns.pod_netns_list()) == live
    lab.api.delete(f"/api/v1/namespaces/{ns}/pods/keep")  # and the re-adopted pod is still deletable
    wait("re-adopted pod deletion", lambda: gone(lab, ns, "keep") and not netns.netns_exists(keep_ns))

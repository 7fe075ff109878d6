"""UDP probed for real in the lab (issue 18 item 1): datagrams through kube-router, judged by `run --once`.

An allowed UDP flow is `connected` (the lab listener echoes), a denied one is refused by kube-router's REJECT
(an ICMP port unreachable sent by the node, which probe.udp_refused_means judges), a UDP port where nothing
listens is refused by the destination's own kernel (judged `unknown`: it proves nothing about the policies),
and a destination that swallows datagrams is silent (`unknown` too). Neither of the last two is ever a pass.
A policy change that flips a UDP flow is drift, confirmed and explained by that policy.
Must not: probe from a node namespace (always allowed there) or use the admin identity for the monitor.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.lab import config as C
from tests.lab.fixtures import Lab, deployment
from tests.test_live_lab import case, netpol, probe_pods, run_monitor, write_config

pytestmark = pytest.mark.lab

DNS = 5353
# A UDP socket bound on the port that reads and never answers: the datagram arrives, nothing comes back.
SINK = ["python3", "-c", "import socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"s.bind(('0.0.0.0', {DNS}))\n"
        "while True: s.recv(2048)\n"]


def deploy_udp_app(lab: Lab, ns: str) -> dict[str, dict]:
    """dns (UDP echo on 5353, ingress from client only), client, other, closed (TCP only: nothing on UDP
    5353, no policy) and sink (reads UDP 5353, never answers, no policy). Returns workload -> its pod."""
    sink = deployment("sink", tcp=[], udp=[DNS], command=SINK)
    workloads = lab.run_workloads(ns, [deployment("dns", tcp=[], udp=[("dns", DNS)]), deployment("client", tcp=[]),
                                       deployment("other", tcp=[]), deployment("closed", tcp=[8080]), sink])
    since = time.time()
    lab.apply(dns_policy(["client"]), namespace=ns)
    lab.wait_synced(since=since)
    return {name: pods[0] for name, pods in workloads.items()}


def dns_policy(sources: list[str]) -> dict:
    return netpol("dns-from-clients", {
        "podSelector": {"matchLabels": {"app": "dns"}}, "policyTypes": ["Ingress"],
        "ingress": [{"from": [{"podSelector": {"matchExpressions": [
            {"key": "app", "operator": "In", "values": sources}]}}], "ports": [{"port": DNS, "protocol": "UDP"}]}]})


def udp_case(ns: str, name: str, src: str, dst: str, expect: str) -> dict:
    return {"name": name, "from": {"namespace": ns, "workload": src}, "to": {"namespace": ns, "workload": dst},
            "port": DNS, "protocol": "UDP", "expect": expect}


def test_udp_allowed_denied_and_policy_drift_with_run_once(lab: Lab, lab_namespace: str, tmp_path: Path) -> None:
    ns = lab_namespace
    pods = deploy_udp_app(lab, ns)
    # The harness's own probe agrees before the monitor looks: echoed, and rejected by kube-router.
    assert lab.connect(pods["client"], pods["dns"], DNS, "UDP") == "connected"
    assert lab.connect(pods["other"], pods["dns"], DNS, "UDP") == "refused"
    suite = {"name": "udp", "cases": [udp_case(ns, "client-to-dns", "client", "dns", "allow"),
                                      udp_case(ns, "other-to-dns-denied", "other", "dns", "deny")]}
    config = write_config(lab, tmp_path)

    rc, first = run_monitor(config, suite, tmp_path)
    assert rc == 0 and first["ok"] is True, first
    got = {c["name"]: (c["result"], c["intent"], c["observed"], c["verdict"]) for c in first["cases"]}
    assert got == {"client-to-dns": ("pass", "allow", "connected", "allow"),
                   "other-to-dns-denied": ("pass", "deny", "refused", "deny")}
    [denied] = case(first, "other-to-dns-denied")["flows"]
    assert denied["protocol"] == "UDP" and denied["port"] == DNS
    assert "nothing listens" not in denied["reason"]  # kube-router's REJECT comes from the node, not from dns
    assert first["known_good"] is True and first["drift"] == []

    # The policy now admits `other` too: a UDP flow flips from blocked to reachable.
    since = time.time()
    lab.apply(dns_policy(["client", "other"]), namespace=ns)
    lab.wait_synced(since=since)
    rc, second = run_monitor(config, suite, tmp_path)

    assert rc == 1 and second["baseline_run"] == first["stored_run"]
    flipped = case(second, "other-to-dns-denied")
    assert (flipped["result"], flipped["observed"], flipped["verdict"]) == ("fail", "connected", "allow")
    assert flipped["enforcement_gap"] is False and flipped["drift"] is True  # the policies allow it now
    assert case(second, "client-to-dns")["result"] == "pass" and case(second, "client-to-dns")["drift"] is False
    [d] = second["drift"]
    assert (d["case"], d["protocol"], d["known_good"], d["observed"], d["state"]) == (
        "other-to-dns-denied", "UDP", "refused", "connected", "confirmed")
    assert d["cause"]["kind"] == "config"
    assert d["cause"]["intent_before"] is False and d["cause"]["intent_after"] is True
    assert d["cause"]["changes"] == [f"NetworkPolicy {ns}/dns-from-clients changed (ingress)"]
    assert probe_pods(lab) == []


@pytest.mark.parametrize("udp_refused_means", ["deny", "allow"])
def test_udp_port_without_an_answer_is_unknown_never_a_pass(lab: Lab, lab_namespace: str, tmp_path: Path,
                                                            udp_refused_means: str) -> None:
    """No policy selects `closed` or `sink`, so the policies allow both flows; neither destination answers
    on UDP 5353. Whatever the suite expects and whatever udp_refused_means says, neither is a pass."""
    ns = lab_namespace
    pods = deploy_udp_app(lab, ns)
    assert lab.connect(pods["client"], pods["closed"], DNS, "UDP") == "refused"  # closed's own kernel
    assert lab.connect(pods["client"], pods["sink"], DNS, "UDP") == "timeout"  # read, never answered
    suite = {"name": "udp-silent", "cases": [
        udp_case(ns, "to-closed-allow", "client", "closed", "allow"),
        udp_case(ns, "to-closed-deny", "client", "closed", "deny"),
        udp_case(ns, "to-sink-allow", "client", "sink", "allow"),
        udp_case(ns, "to-sink-deny", "client", "sink", "deny"),
    ]}
    config = write_config(lab, tmp_path, udp_refused_means=udp_refused_means)

    rc, report = run_monitor(config, suite, tmp_path, "--no-store")

    assert rc == 1 and report["ok"] is False and report["verified"] is False
    for c in report["cases"]:
        assert (c["result"], c["intent"], c["verdict"]) == ("unknown", "allow", "unknown"), c
        assert c["enforcement_gap"] is False
    for name in ("to-closed-allow", "to-closed-deny"):
        [flow] = case(report, name)["flows"]
        assert flow["outcome"] == "refused" and "nothing listens on the port" in flow["reason"], flow
    for name in ("to-sink-allow", "to-sink-deny"):
        [flow] = case(report, name)["flows"]
        assert flow["outcome"] == "timeout", flow
    assert probe_pods(lab) == []


def test_udp_rejected_by_kube_router_is_sent_by_the_node(lab: Lab, lab_namespace: str) -> None:
    """Why the two refusals differ: kube-router's REJECT answers from its node's address, a closed port from
    the destination's own. The monitor's probe agent tells them apart by the ICMP error's sender."""
    ns = lab_namespace
    pods = deploy_udp_app(lab, ns)
    script = ("import asyncio, json, sys\nfrom monitor.probe.agent import probe_target\n"
              "from monitor.probe.wire import ProbeTarget\n"
              "out = [asyncio.run(probe_target(ProbeTarget(ip, int(port), 'UDP'), 1.5)) for ip, port in "
              "(t.split(':') for t in sys.argv[1:])]\n"
              "print(json.dumps([[o.outcome, o.detail] for o in out]))\n")
    targets = [f"{pods['dns']['status']['podIP']}:{DNS}", f"{pods['closed']['status']['podIP']}:{DNS}"]
    out = subprocess.run(["ip", "netns", "exec", lab.netns_of(pods["other"]), str(C.PYTHON), "-c", script,
                          *targets], capture_output=True, text=True, timeout=60, cwd=C.REPO, check=True)
    assert json.loads(out.stdout) == [["refused", ""], ["refused", "closed"]]

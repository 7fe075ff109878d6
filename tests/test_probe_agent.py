"""The probe agent against real sockets on 127.0.0.0/8 (and a private, empty network namespace), and its
compact wire format against the 4 KiB termination-message limit."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from monitor.probe.agent import probe_all, probe_settled
from monitor.probe.wire import (
    CLOSED_AT_DESTINATION,
    RESET_BY_DESTINATION,
    RESULT_LIMIT,
    ProbeTarget,
    TargetOutcome,
    WireError,
    decode_result,
    decode_targets,
    encode_result,
    encode_targets,
)
from monitor.run import blocked_every_pass
from tests.standins import free_port

REPO = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "monitor"]


# ------------------------------------------------------------------------------------------- local endpoints
@pytest.fixture
def tcp_listener():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield sock.getsockname()[1]
    sock.close()


@pytest.fixture
def tcp_blackhole():
    """A listener whose accept queue is full and never drained: the kernel drops further SYNs, as a
    dropping firewall would, so a connect can only time out."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(0)
    port = sock.getsockname()[1]
    fillers = []
    for _ in range(3):
        c = socket.socket()
        c.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            c.connect(("127.0.0.1", port))
        fillers.append(c)
    time.sleep(0.1)
    yield port
    for c in fillers:
        c.close()
    sock.close()


@pytest.fixture
def udp_echo():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                data, peer = sock.recvfrom(2048)
            except TimeoutError:
                continue
            sock.sendto(data, peer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield sock.getsockname()[1]
    stop.set()
    thread.join()
    sock.close()


@pytest.fixture
def udp_silent():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    yield sock.getsockname()[1]
    sock.close()


def _probe(targets: list[ProbeTarget], timeout: float = 1.0) -> list[TargetOutcome]:
    return asyncio.run(probe_all(targets, timeout))


# ---------------------------------------------------------------------------------------------------- TCP
def test_tcp_listener_connected(tcp_listener):
    [result] = _probe([ProbeTarget("127.0.0.1", tcp_listener)])
    assert result.outcome == "connected"
    assert result.latency_ms is not None and 0 <= result.latency_ms < 1000


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_tcp_closed_port_is_refused_by_a_reset_from_the_destination(host):
    # Nothing listens: the destination's own kernel resets the SYN, and no ICMP error is queued on the socket.
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.bind((host, 0))  # bound then released: a port of this family nothing listens on
        port = s.getsockname()[1]
    [result] = _probe([ProbeTarget(host, port)])
    assert (result.outcome, result.detail) == ("refused", RESET_BY_DESTINATION)


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare") or not shutil.which("iptables")
                    or not shutil.which("setpriv"),
                    reason="needs root to create a private network namespace with iptables rules")
def test_tcp_refused_by_an_icmp_reject_is_told_from_a_reset_without_any_capability():
    """In a private network namespace: an iptables REJECT (ICMP port unreachable, as kube-router sends, v4 and
    v6) is a plain `refused` (the ICMP error reaches the socket's error queue), a closed port is `refused` with
    detail `reset`, and so is a REJECT with a forged reset (`--reject-with tcp-reset`, as Antrea's Reject):
    the agent cannot tell those two apart (probe.tcp_reset_means). The agent runs as uid 65532 with no
    capability at all, as in a probe pod under PodSecurity "restricted": IP_RECVERR needs none."""
    rules = ("ip link set lo up && iptables -A INPUT -p tcp --dport 9 -j REJECT && "
             "ip6tables -A INPUT -p tcp --dport 9 -j REJECT && "
             "iptables -A INPUT -p tcp --dport 10 -j REJECT --reject-with tcp-reset && "
             'exec setpriv --reuid 65532 --regid 65532 --clear-groups --inh-caps=-all --bounding-set=-all "$@"')
    proc = subprocess.run(
        ["unshare", "--net", "sh", "-c", rules, "sh", *CLI, "probe-agent", "--targets",
         "T127.0.0.1:9,T[::1]:9,T127.0.0.1:10,T127.0.0.1:11,T[::1]:11", "--timeout", "1", "--passes", "1",
         "--result-file", "/dev/null"], cwd=REPO, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    count, outcomes = decode_result(proc.stdout)
    assert count == 5
    assert [(o.outcome, o.detail) for o in outcomes] == [
        ("refused", ""), ("refused", ""), ("refused", RESET_BY_DESTINATION), ("refused", RESET_BY_DESTINATION),
        ("refused", RESET_BY_DESTINATION)]


def test_tcp_blackhole_times_out_within_the_timeout(tcp_blackhole):
    started = time.monotonic()
    [result] = _probe([ProbeTarget("127.0.0.1", tcp_blackhole)], timeout=0.4)
    elapsed = time.monotonic() - started
    assert result.outcome == "timeout"
    assert 0.35 < elapsed < 1.5


def test_targets_run_in_parallel(tcp_blackhole, tcp_listener):
    # Twenty silent targets with a 0.5 s timeout take about 0.5 s in all, not 10 s.
    targets = [ProbeTarget("127.0.0.1", tcp_blackhole)] * 20 + [ProbeTarget("127.0.0.1", tcp_listener)]
    started = time.monotonic()
    results = _probe(targets, timeout=0.5)
    assert time.monotonic() - started < 2.0
    assert [r.outcome for r in results] == ["timeout"] * 20 + ["connected"]


def test_results_keep_target_order(tcp_listener):
    closed = free_port()
    targets = [ProbeTarget("127.0.0.1", p) for p in (closed, tcp_listener, closed, tcp_listener)]
    assert [r.outcome for r in _probe(targets)] == ["refused", "connected", "refused", "connected"]


# ---------------------------------------------------------------------------------------------------- UDP
def test_udp_answering_destination_connected(udp_echo):
    [result] = _probe([ProbeTarget("127.0.0.1", udp_echo, "UDP")])
    assert result.outcome == "connected"


def test_udp_closed_port_refused_by_icmp():
    [result] = _probe([ProbeTarget("127.0.0.1", free_port(socket.SOCK_DGRAM), "UDP")])
    assert result.outcome == "refused"
    # The port unreachable came from the destination's own address: it got there, nothing listens. (A REJECT
    # on a node in between comes from the node's address: tests/test_lab_udp.py sees kube-router's.)
    assert result.detail == CLOSED_AT_DESTINATION


def test_udp_silent_destination_is_a_timeout(udp_silent):
    [result] = _probe([ProbeTarget("127.0.0.1", udp_silent, "UDP")], timeout=0.3)
    assert result.outcome == "timeout"


# --------------------------------------------------------------------------------------------------- SCTP
def test_sctp_follows_kernel_support():
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP).close()
        supported = True
    except OSError:
        supported = False
    [result] = _probe([ProbeTarget("127.0.0.1", free_port(), "SCTP")])
    if supported:
        assert result.outcome in ("refused", "timeout")  # nobody listens; SCTP answers with ABORT
    else:
        assert (result.outcome, result.detail) == ("error", "EPROTONOSUPPORT")


# ------------------------------------------------------------------------------------------ unreachable
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                    reason="needs root to create a private network namespace")
def test_no_route_is_unreachable(tmp_path):
    # A fresh network namespace has only a loopback: 10.0.0.1 has no route, so nothing leaves the machine.
    result_file = tmp_path / "result"
    proc = subprocess.run(
        ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", *CLI, "probe-agent",
         "--targets", "T10.0.0.1:80,U10.0.0.1:53", "--timeout", "1", "--result-file", str(result_file)],
        cwd=REPO, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    count, outcomes = decode_result(result_file.read_text())
    assert count == 2
    assert [(o.outcome, o.detail) for o in outcomes] == [("unreachable", "ENETUNREACH")] * 2


# ----------------------------------------------------------------------------------------------- wire format
def test_targets_round_trip():
    targets = [ProbeTarget("10.244.0.5", 80), ProbeTarget("10.96.0.10", 53, "UDP"),
               ProbeTarget("fd00::1", 9000, "SCTP")]
    assert decode_targets(encode_targets(targets)) == targets


@pytest.mark.parametrize("bad", ["X10.0.0.1:80", "T10.0.0.1", "T10.0.0.1:0", "T10.0.0.1:http"])
def test_bad_targets_are_rejected(bad):
    with pytest.raises(WireError):
        decode_targets(bad)


def test_result_round_trip_with_latencies_and_details():
    outcomes = [TargetOutcome("connected", 3.4), TargetOutcome("refused", 1.0), TargetOutcome("timeout"),
                TargetOutcome("unreachable", 2.0, "EHOSTUNREACH"), TargetOutcome("error", None, "EPERM")]
    count, decoded = decode_result(encode_result(outcomes))
    assert count == 5
    assert [(o.outcome, o.latency_ms, o.detail) for o in decoded] == [
        ("connected", 3.0, ""), ("refused", 1.0, ""), ("timeout", None, ""),
        ("unreachable", 2.0, "EHOSTUNREACH"), ("error", None, "EPERM")]


def test_many_targets_fit_the_termination_message_limit():
    # 2,000 targets with latencies do not fit in 4 KiB; the run-length form does, without losing an outcome.
    pattern = ["connected"] * 7 + ["refused"] * 3 + ["timeout"] * 10
    outcomes = [TargetOutcome(pattern[i % 20], 12.0) for i in range(2000)]
    text = encode_result(outcomes)
    assert len(text.encode()) <= RESULT_LIMIT
    count, decoded = decode_result(text)
    assert count == 2000
    assert [o.outcome for o in decoded] == [o.outcome for o in outcomes]


def test_forty_targets_keep_their_latencies():
    outcomes = [TargetOutcome("connected", 1234.0)] * 40
    text = encode_result(outcomes)
    assert " L " in text and len(text) < 300
    assert decode_result(text)[1][39].latency_ms == 1234.0


def test_pathological_result_is_cut_never_overlong():
    # Alternating outcomes defeat run-length encoding: the message is cut, and the count tells the reader.
    outcomes = [TargetOutcome("connected" if i % 2 else "refused", 5.0, "") for i in range(5000)]
    text = encode_result(outcomes)
    assert len(text.encode()) <= RESULT_LIMIT
    count, decoded = decode_result(text)
    assert count == 5000 and 1000 < len(decoded) < 5000
    assert [o.outcome for o in decoded] == [o.outcome for o in outcomes[:len(decoded)]]


def test_details_are_dropped_before_the_limit_is_crossed():
    outcomes = [TargetOutcome("error", None, "E" * 30)] * 400
    text = encode_result(outcomes)
    assert len(text.encode()) <= RESULT_LIMIT
    assert len(decode_result(text)[1]) == 400


# ------------------------------------------------------------------------------------------- the command
def test_command_writes_the_termination_message(tmp_path, tcp_listener):
    result_file = tmp_path / "termination-log"
    closed = free_port()
    proc = subprocess.run(
        [*CLI, "probe-agent", "--timeout", "1", "--result-file", str(result_file)],
        env={**os.environ, "NETPOL_DRIFT_PROBE_TARGETS": f"T127.0.0.1:{tcp_listener},T127.0.0.1:{closed}"},
        cwd=REPO, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    count, outcomes = decode_result(result_file.read_text())
    assert count == 2 and [o.outcome for o in outcomes] == ["connected", "refused"]
    assert proc.stdout.strip() == result_file.read_text()


def test_command_reports_bad_targets_in_the_message(tmp_path):
    result_file = tmp_path / "termination-log"
    proc = subprocess.run([*CLI, "probe-agent", "--targets", "Q1.2.3.4:5", "--result-file", str(result_file)],
                          cwd=REPO, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert result_file.read_text().startswith("error: ")
    with pytest.raises(WireError):
        decode_result(result_file.read_text())


# ------------------------------------------------------------------ passes (issue 8 item 4: one early packet)
class Toggled:
    """A TCP port whose listener comes and goes on a schedule (seconds from start -> listening?), like a
    destination whose allow rule for a fresh probe pod's IP appears (or flaps) while the pod probes."""

    def __init__(self, schedule: list[tuple[float, bool]]) -> None:
        self.port = free_port()
        self.sock: socket.socket | None = None
        self.schedule = schedule
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _set(self, listening: bool) -> None:
        if listening and self.sock is None:
            self.sock = socket.socket()
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.sock.bind(("127.0.0.1", self.port))
            self.sock.listen(64)
        elif not listening and self.sock is not None:
            self.sock.close()
            self.sock = None

    def _run(self) -> None:
        t0 = time.monotonic()
        for at, listening in self.schedule:
            time.sleep(max(0.0, at - (time.monotonic() - t0)))
            self._set(listening)

    def __enter__(self) -> Toggled:
        self._set(self.schedule[0][1])
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.join()
        self._set(False)


def test_a_refusal_that_clears_after_the_first_pass_settles_on_connected(tcp_listener):
    # Pass 1 at 0 s is refused (the allow rule is not there yet), passes 2 and 3 (1 s, 2 s) connect. On
    # loopback the refusal is a reset from the destination itself: `r*` in the passes.
    with Toggled([(0.0, False), (0.5, True)]) as late:
        got = asyncio.run(probe_settled([ProbeTarget("127.0.0.1", late.port),
                                         ProbeTarget("127.0.0.1", tcp_listener)], 1.0, 1.0))
    assert [(o.outcome, o.detail) for o in got] == [("connected", "r*>c>c"), ("connected", "")]


def test_passes_that_never_agree_are_unsettled_not_a_verdict():
    # Listening at 0 s, gone at 1 s, back at 2 s: c, r, c.
    with Toggled([(0.0, True), (0.5, False), (1.5, True), (2.6, False)]) as flap:
        got = asyncio.run(probe_settled([ProbeTarget("127.0.0.1", flap.port)], 1.0, 1.0))
    assert [(o.outcome, o.detail) for o in got] == [("unsettled", "c>r*>c")]
    count, decoded = decode_result(encode_result(got))
    assert count == 1 and (decoded[0].outcome, decoded[0].detail) == ("unsettled", "c>r*>c")


def test_a_refusal_by_icmp_and_a_reset_never_agree(monkeypatch):
    """Passes refused by something in between (ICMP) and by the destination itself (a reset) disagree on
    whether the SYN got there: a third pass decides, and `r*` never counts as blocked (run.blocked_every_pass)."""
    seen = iter([TargetOutcome("refused", 1.0), TargetOutcome("refused", 1.0, RESET_BY_DESTINATION),
                 TargetOutcome("refused", 1.0)])

    async def scripted(targets, timeout):  # the passes' outcomes, in order (the sockets are tested above)
        return [next(seen) for _ in targets]

    monkeypatch.setattr("monitor.probe.agent.probe_all", scripted)
    [got] = asyncio.run(probe_settled([ProbeTarget("10.0.0.1", 80)], 1.0, 0.0))
    assert (got.outcome, got.detail) == ("unsettled", "r>r*>r")
    assert blocked_every_pass(got.detail, "TCP", "deny") is None


def test_agreeing_passes_stop_after_two():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    got = asyncio.run(probe_settled([ProbeTarget("127.0.0.1", server.getsockname()[1])], 1.0, 0.2))
    server.setblocking(False)
    accepted = 0
    with contextlib.suppress(BlockingIOError):
        while True:
            server.accept()[0].close()
            accepted += 1
    server.close()
    assert [(o.outcome, o.detail) for o in got] == [("connected", "")]
    assert accepted == 2  # two agreeing passes: no third connection


def test_unsettled_results_with_their_passes_fit_the_limit():
    outcomes = [TargetOutcome("unsettled", None, "c>r>c") if i % 3 else TargetOutcome("connected", 2.0)
                for i in range(1000)]
    text = encode_result(outcomes)
    assert len(text.encode()) <= RESULT_LIMIT
    count, decoded = decode_result(text)
    assert count == 1000 and [o.outcome for o in decoded] == [o.outcome for o in outcomes]

"""`netpol-drift probe-agent`: runs inside a probe pod, probes every target of its source at once, reports.

It opens one connection (TCP, SCTP) or exchanges one datagram (UDP) per target, all in parallel, each bounded
by the timeout, classifies what happened (connected, refused, timeout, unreachable, error) with the latency,
and writes the compact result (monitor.probe.wire) to the termination message file, and to stdout.
One early packet is not a verdict: a kubelet starts a new pod's containers without waiting for the CNI, which
programs the pod's rules (and adds its IP to other pods' allow-lists) with a lag, so the first attempts of a
fresh pod can be blocked where the policies allow, or pass where they deny. So every target is probed in
passes `settle` seconds apart until its last two passes agree (at most MAX_PASSES); a target whose passes
still disagree is `unsettled`, which is not a verdict (the runner probes it again from a fresh pod).
The targets come from its own command line or environment: a probe pod has no API token and must not need
one. This module must not import anything beyond the standard library and monitor.probe.wire (it starts in
every probe pod, and start-up time is part of every run), nor talk to the Kubernetes API.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import os
import socket
import sys
import time

from monitor.probe.wire import (
    CLOSED_AT_DESTINATION,
    OUTCOME_LETTERS,
    RESET_BY_DESTINATION,
    ProbeTarget,
    TargetOutcome,
    WireError,
    decode_targets,
    encode_result,
)

DEFAULT_TIMEOUT = 3.0
DEFAULT_SETTLE = 2.0
# Pass 1, pass 2 after the settle time, pass 3 only for targets whose first two passes disagree.
MAX_PASSES = 3
DEFAULT_RESULT_FILE = "/dev/termination-log"
TARGETS_ENV = "NETPOL_DRIFT_PROBE_TARGETS"
RESULT_FILE_ENV = "NETPOL_DRIFT_RESULT_FILE"
# Far more than a suite gives one source, but a ceiling so that a huge target list cannot exhaust the pod's
# file descriptors (every open probe holds one).
MAX_OPEN = 512
UDP_PAYLOAD = b"netpol-drift probe\n"

# ICMP host/network unreachable and friends: the packet could not be delivered, which is not a refusal.
_UNREACHABLE = {errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN}
# Linux: queue each ICMP error of a socket with the address that sent it (the socket module lacks the names
# before Python 3.13 on some builds).
_IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
_IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _classify(exc: OSError, elapsed_ms: float) -> TargetOutcome:
    if isinstance(exc, ConnectionRefusedError):
        return TargetOutcome("refused", elapsed_ms)
    code = exc.errno
    name = errno.errorcode.get(code, type(exc).__name__) if code is not None else type(exc).__name__
    if code in _UNREACHABLE:
        return TargetOutcome("unreachable", elapsed_ms, name)
    return TargetOutcome("error", elapsed_ms, name)


def _recv_errors(sock: socket.socket, family: socket.AddressFamily) -> bool:
    """Asks the kernel to queue each ICMP error of the socket with the address that sent it (IP_RECVERR,
    IPV6_RECVERR: no capability needed). False where the kernel does not support it."""
    try:
        if family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, _IP_RECVERR, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, _IPV6_RECVERR, 1)
    except OSError:
        return False
    return True


async def _probe_stream(target: ProbeTarget, timeout: float, proto: int) -> TargetOutcome:
    """A TCP refusal is either the destination's own reset (its kernel: nothing listens on the port) or an
    ICMP error from something in between (a REJECTing CNI on a node). Linux tells them apart: with IP_RECVERR
    an ICMP error that ends a connect in SYN_SENT is also queued on the socket's error queue (tcp_v4_err ->
    ip_icmp_error), a reset queues nothing. So a refusal with nothing queued is `refused` with detail
    RESET_BY_DESTINATION. SCTP reports ICMP errors without queueing them, so its refusals stay undivided."""
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    family = _family(target.host)
    try:
        sock = socket.socket(family, socket.SOCK_STREAM, proto)
    except OSError as e:  # SCTP without kernel support: we cannot probe, and say so
        return TargetOutcome("error", None, errno.errorcode.get(e.errno or 0, "socket"))
    with sock:
        sock.setblocking(False)
        tells_reset = proto == 0 and _recv_errors(sock, family)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, (target.host, target.port)), timeout)
        except TimeoutError:
            return TargetOutcome("timeout")
        except OSError as e:
            got = _classify(e, (time.perf_counter() - started) * 1000)
            if got.outcome == "refused" and tells_reset and _queued_error(sock) is None:
                return TargetOutcome("refused", got.latency_ms, RESET_BY_DESTINATION)
            return got
        return TargetOutcome("connected", (time.perf_counter() - started) * 1000)


def _queued_error(sock: socket.socket) -> str | None:
    """The sender of the error queued on the socket (IP_RECVERR): its address, "" when queued without one
    (not an ICMP error); None when nothing is queued."""
    try:
        _, ancdata, _, _ = sock.recvmsg(1, 512, socket.MSG_ERRQUEUE)
    except OSError:  # EAGAIN: the queue is empty
        return None
    for level, kind, data in ancdata:
        # struct sock_extended_err (16 bytes: errno, origin, type, code, pad, info, data), then the offender's
        # sockaddr_in / sockaddr_in6; origin 2 / 3 is SO_EE_ORIGIN_ICMP / ICMP6.
        if (level, kind) == (socket.IPPROTO_IP, _IP_RECVERR) and len(data) >= 24 and data[4] == 2:
            return socket.inet_ntop(socket.AF_INET, data[20:24])
        if (level, kind) == (socket.IPPROTO_IPV6, _IPV6_RECVERR) and len(data) >= 40 and data[4] == 3:
            return socket.inet_ntop(socket.AF_INET6, data[24:40])
    return ""


async def _probe_udp(target: ProbeTarget, timeout: float) -> TargetOutcome:
    """A reply means connected, an ICMP port unreachable means refused (detail CLOSED_AT_DESTINATION when the
    destination itself sent it), silence is `timeout` (the verdict for a silent UDP target is `unknown`: a
    dropped datagram and an ignored one look the same)."""
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    family = _family(target.host)
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        try:
            _recv_errors(sock, family)
            sock.connect((target.host, target.port))  # connected UDP: ICMP errors come back to us
            await loop.sock_sendall(sock, UDP_PAYLOAD)
            await asyncio.wait_for(loop.sock_recv(sock, 2048), timeout)
        except TimeoutError:
            return TargetOutcome("timeout")
        except OSError as e:
            got = _classify(e, (time.perf_counter() - started) * 1000)
            sender = _queued_error(sock) if got.outcome == "refused" else None
            if sender and sender == socket.inet_ntop(family, socket.inet_pton(family, target.host)):
                return TargetOutcome("refused", got.latency_ms, CLOSED_AT_DESTINATION)
            return got
        return TargetOutcome("connected", (time.perf_counter() - started) * 1000)


async def probe_target(target: ProbeTarget, timeout: float) -> TargetOutcome:
    try:
        if target.protocol == "UDP":
            return await _probe_udp(target, timeout)
        proto = socket.IPPROTO_SCTP if target.protocol == "SCTP" else 0
        return await _probe_stream(target, timeout, proto)
    except Exception as e:  # one broken target must not lose the results of the others
        return TargetOutcome("error", None, type(e).__name__)


async def probe_all(targets: list[ProbeTarget], timeout: float) -> list[TargetOutcome]:
    gate = asyncio.Semaphore(MAX_OPEN)

    async def bounded(target: ProbeTarget) -> TargetOutcome:
        async with gate:
            return await probe_target(target, timeout)

    return list(await asyncio.gather(*(bounded(t) for t in targets)))


def _pass_letter(o: TargetOutcome) -> str:
    """A pass in the passes' detail: its outcome letter, `r*` for a refusal by the destination itself (a reset,
    a port unreachable from its own address), which got there, unlike a refusal from something in between:
    the two never agree, and run.blocked_every_pass does not count `r*` as blocked."""
    by_destination = o.outcome == "refused" and o.detail in (CLOSED_AT_DESTINATION, RESET_BY_DESTINATION)
    return OUTCOME_LETTERS[o.outcome] + ("*" if by_destination else "")


def _letters(history: list[TargetOutcome]) -> str:
    return ">".join(_pass_letter(o) for o in history)


async def probe_settled(targets: list[ProbeTarget], timeout: float, settle: float,
                        max_passes: int = MAX_PASSES) -> list[TargetOutcome]:
    """Pass after pass, `settle` seconds apart, until each target's last two passes agree.

    A target settled after a disagreement keeps the later outcome and says how it got there in `detail`
    (e.g. `t>c>c`: the first packet was lost to the race, the flow is allowed). One that does not settle
    within max_passes is `unsettled`, detail the outcomes seen.
    """
    history: list[list[TargetOutcome]] = [[o] for o in await probe_all(targets, timeout)]
    for _ in range(1, max_passes):
        pending = [i for i, h in enumerate(history) if len(h) < 2 or _pass_letter(h[-1]) != _pass_letter(h[-2])]
        if not pending:
            break
        await asyncio.sleep(settle)
        again = await probe_all([targets[i] for i in pending], timeout)
        for i, o in zip(pending, again, strict=True):
            history[i].append(o)
    out = []
    for h in history:
        last = h[-1]
        if len(h) == 1:  # max_passes 1: the first packet decides (what a kubelet's race makes unreliable)
            out.append(last)
        elif _pass_letter(last) == _pass_letter(h[-2]):
            changed = len({_pass_letter(o) for o in h}) > 1
            out.append(TargetOutcome(last.outcome, last.latency_ms,
                                     last.detail or (_letters(h) if changed else "")))
        else:
            out.append(TargetOutcome("unsettled", None, _letters(h)))
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--targets", help=f"comma-separated targets like T10.0.0.5:80,U10.0.0.6:53 "
                                          f"(default: ${TARGETS_ENV})")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds per target (default {DEFAULT_TIMEOUT:g}); all targets run in parallel")
    parser.add_argument("--settle", type=float, default=DEFAULT_SETTLE,
                        help=f"seconds between passes (default {DEFAULT_SETTLE:g}); a target is probed again "
                             f"until two passes agree, at most {MAX_PASSES} passes")
    parser.add_argument("--passes", type=int, default=MAX_PASSES, choices=range(1, 10), metavar="N",
                        help=f"at most N passes per target (default {MAX_PASSES}; 1 trusts the first packet, "
                             f"which a fresh pod may send before its network rules exist)")
    parser.add_argument("--result-file", help=f"where the result goes (default: ${RESULT_FILE_ENV} or "
                                              f"{DEFAULT_RESULT_FILE}, the container termination message)")


def run_agent(targets_text: str | None, timeout: float, result_file: str | None,
              settle: float = DEFAULT_SETTLE, passes: int = MAX_PASSES) -> int:
    """Probes, writes the result, returns the exit code (0 once a result is written, 2 for bad targets)."""
    text = targets_text if targets_text is not None else os.environ.get(TARGETS_ENV, "")
    path = result_file or os.environ.get(RESULT_FILE_ENV) or DEFAULT_RESULT_FILE
    try:
        targets = decode_targets(text)
    except WireError as e:
        _write(path, f"error: {e}"[:4000])
        print(f"netpol-drift probe-agent: {e}", file=sys.stderr)
        return 2
    outcomes = asyncio.run(probe_settled(targets, timeout, settle, passes))
    result = encode_result(outcomes)
    _write(path, result)
    print(result)
    return 0


def _write(path: str, text: str) -> None:
    try:
        with open(path, "w", encoding="ascii") as f:
            f.write(text)
    except OSError as e:
        # Without the file the runner sees no result and skips this source's flows: say why in the pod log.
        print(f"netpol-drift probe-agent: cannot write {path}: {e.strerror}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="netpol-drift probe-agent")
    add_arguments(parser)
    args = parser.parse_args(argv)
    return run_agent(args.targets, args.timeout, args.result_file, args.settle, args.passes)


if __name__ == "__main__":
    raise SystemExit(main())

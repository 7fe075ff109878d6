"""The lab probe: opens real connections from inside a pod's network namespace and prints the outcomes.

Job: `python probe.py [--timeout S] IP:PORT/PROTO...` connects to every target in parallel and prints one JSON
object {"IP:PORT/PROTO": outcome}; outcome is connected, refused, timeout, unreachable or error. TCP: a finished
handshake is connected. UDP: an echoed datagram is connected, an ICMP port-unreachable is refused, silence is
timeout. Run it with `ip netns exec <pod-netns>`. Must not: import anything from the repository (it runs with
any cwd), or send anything but one connection attempt / one datagram per target.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import json
import socket


async def _tcp(ip: str, port: int, timeout: float) -> str:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(ip, port), timeout)
    except TimeoutError:
        return "timeout"
    except ConnectionRefusedError:
        return "refused"
    except OSError as e:
        return "unreachable" if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH) else "error"
    writer.close()
    return "connected"


async def _udp(ip: str, port: int, timeout: float) -> str:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        sock.connect((ip, port))
        await loop.sock_sendall(sock, b"lab-probe")
        await asyncio.wait_for(loop.sock_recv(sock, 2048), timeout)
        return "connected"
    except TimeoutError:
        return "timeout"
    except ConnectionRefusedError:
        return "refused"
    except OSError as e:
        return "unreachable" if e.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH) else "error"
    finally:
        sock.close()


async def _all(targets: list[str], timeout: float) -> dict[str, str]:
    async def one(t: str) -> str:
        hostport, proto = t.rsplit("/", 1)
        ip, port = hostport.rsplit(":", 1)
        fn = _udp if proto.upper() == "UDP" else _tcp
        return await fn(ip, int(port), timeout)

    outcomes = await asyncio.gather(*(one(t) for t in targets))
    return dict(zip(targets, outcomes, strict=True))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--timeout", type=float, default=2.0)
    ap.add_argument("targets", nargs="+")
    a = ap.parse_args()
    print(json.dumps(asyncio.run(_all(a.targets, a.timeout))))


if __name__ == "__main__":
    main()

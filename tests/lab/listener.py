"""The lab listener: real TCP and UDP servers on the ports a lab pod declares, run inside the pod's namespace.

Job: accept every TCP connection (and close it) and echo every UDP datagram, so a probe can tell "reachable"
from "blocked". Runs as a plain script (`python listener.py --tcp 80 --udp 53`), started by the node agent via
`ip netns exec`. Must not: import anything from the repository (it runs with any cwd) or bind outside its
network namespace (it binds 0.0.0.0 inside the pod's own namespace only).
"""

from __future__ import annotations

import argparse
import asyncio
import signal


class _Echo(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)  # type: ignore[attr-defined]


async def _serve(tcp: list[int], udp: list[int]) -> None:
    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    loop = asyncio.get_running_loop()
    for port in tcp:
        await asyncio.start_server(on_conn, "0.0.0.0", port, reuse_address=True)
    for port in udp:
        await loop.create_datagram_endpoint(_Echo, local_addr=("0.0.0.0", port))
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"lab-listener: tcp={tcp} udp={udp}", flush=True)
    await stop.wait()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tcp", type=int, action="append", default=[])
    ap.add_argument("--udp", type=int, action="append", default=[])
    a = ap.parse_args()
    asyncio.run(_serve(a.tcp, a.udp))


if __name__ == "__main__":
    main()

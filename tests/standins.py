"""Local stand-ins the unit tests talk to over real sockets: a plain-HTTP server in a thread (an API server that
answers what the test says), a kubeconfig pointing the real ClusterAdapter at it, and free ports.

Each test keeps its own handler (what the stand-in answers is the test's business): subclass JsonHandler,
implement do_GET with `send_json`, and start it with `StandInServer(Handler, attr=value...)`, which gives the
handler class those attributes. This module must not decide what a stand-in answers, nor hold state between
tests. The Slack Web API stand-in is tests/slack_standin.py (it restarts on the same port, which this does not).
"""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A localhost port that nothing listens on (bound then released: nobody else on this machine races for it),
    so a connect to it is refused at once."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kubeconfig(directory: Path, server: str, token: str = "test-token") -> Path:
    """A kubeconfig file in `directory` whose current context points at `server` with a bearer token."""
    path = directory / "kubeconfig"
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {"server": server}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}],
        "users": [{"name": "t", "user": {"token": token}}]}))
    return path


class JsonHandler(BaseHTTPRequestHandler):
    """Base of the stand-in API servers: JSON answers, and no access log on stderr."""

    def send_json(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        """Answers with `body` (bytes as they are, anything else as JSON) and any extra `headers`."""
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


class StandInServer:
    """`handler` (given `attributes` as class attributes) served on a free localhost port in a daemon thread
    until `stop()` (or the end of a `with` block)."""

    def __init__(self, handler: type[BaseHTTPRequestHandler], **attributes: Any) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), type(handler.__name__, (handler,), attributes))
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        # A short poll interval: stop() waits for it, once per test.
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> StandInServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

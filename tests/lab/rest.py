"""A minimal JSON client for the lab's kube-apiserver (bearer token + CA from a lab kubeconfig).

Job: GET/POST/PATCH/DELETE on API paths with plain dicts, for the node agent and the test helpers, without
depending on the generated kubernetes client's model classes. Must not: talk to any server but the one named
in the lab kubeconfig, or be used by the product (monitor/ has its own cluster.py).
"""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml


class ApiError(RuntimeError):
    def __init__(self, status: int, method: str, path: str, body: str) -> None:
        self.status = status
        self.body = body
        try:
            self.reason = json.loads(body).get("reason", "")
            message = json.loads(body).get("message", body)
        except ValueError:
            self.reason, message = "", body
        super().__init__(f"{method} {path}: {status} {message}")


class Rest:
    def __init__(self, kubeconfig: Path | str, timeout: float = 10.0) -> None:
        cfg = yaml.safe_load(Path(kubeconfig).read_text())
        ctx_name = cfg["current-context"]
        ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == ctx_name)
        cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
        self.server = cluster["server"].rstrip("/")
        self.token = user["token"]
        self.timeout = timeout
        ca = base64.b64decode(cluster["certificate-authority-data"])
        with tempfile.NamedTemporaryFile("wb", suffix=".crt") as f:
            f.write(ca)
            f.flush()
            self._ssl = ssl.create_default_context(cafile=f.name)
        self._lock = threading.Lock()

    def request(self, method: str, path: str, body: Any = None, query: dict[str, Any] | None = None,
                content_type: str = "application/json") -> Any:
        raw = self._send(method, path, body, query, content_type, "application/json")
        return json.loads(raw) if raw else None

    def get_text(self, path: str) -> str:
        """A GET whose answer is not JSON (the API server's /metrics, in the Prometheus text format)."""
        return self._send("GET", path, None, None, "", "text/plain").decode()

    def _send(self, method: str, path: str, body: Any, query: dict[str, Any] | None, content_type: str,
              accept: str) -> bytes:
        url = self.server + path + (("?" + urllib.parse.urlencode(query)) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Accept", accept)
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout, context=self._ssl) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            raise ApiError(e.code, method, path, e.read().decode(errors="replace")) from None
        return raw

    def get(self, path: str, **query: Any) -> Any:
        return self.request("GET", path, query=query or None)

    def post(self, path: str, body: Any) -> Any:
        return self.request("POST", path, body)

    def merge_patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, body, content_type="application/merge-patch+json")

    def delete(self, path: str, body: Any = None, missing_ok: bool = True) -> Any:
        try:
            return self.request("DELETE", path, body)
        except ApiError as e:
            if e.status == 404 and missing_ok:
                return None
            raise

    def exists(self, path: str) -> bool:
        try:
            self.get(path)
        except ApiError as e:
            if e.status == 404:
                return False
            raise
        return True

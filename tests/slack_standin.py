"""A local stand-in for the Slack Web API and incoming webhooks: a real HTTP server on 127.0.0.1 (or `host`).

slack_sdk talks to it through `base_url` (Web API) or the webhook URL it hands out. It speaks
auth.test, chat.postMessage (message metadata kept), chat.update, conversations.list, conversations.history
and the webhook; it checks what Slack checks that we can get wrong
(the token, the channel, Block Kit limits: 50 blocks, 3,000 characters per section text, 150 per header,
a plain-text fallback) and answers Slack's way (HTTP 200 with ok=false and an error code). Tests script
failures with `fail_next(...)`: "429" (with Retry-After), "500", "invalid_auth", "channel_not_found",
"hang:SECONDS" (a Slack that takes the connection and does not answer); `stop()` and `start()` on the same port
give connection refused in between; `hold_next(method, seconds)` posts the next message but holds its answer
back (a client killed mid-delivery). `attempts` has the time of every request, failed or not.

`python -m tests.slack_standin --port 0` runs it alone and prints what it receives (make demo uses that).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

TOKEN = "xoxb-standin-0000-secret"
WEBHOOK_PATH = "/services/T000/B000/standinwebhooksecret"
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_HEADER_TEXT = 150
MAX_TEXT = 40000


@dataclass
class Received:
    """One accepted request: the method (chat.postMessage, chat.update, webhook) and its arguments."""

    method: str
    body: dict  # as sent: mrkdwn text with Slack's escapes (&amp; &lt; &gt;)
    ts: str | None = None
    at: float = field(default_factory=time.time)

    @property
    def text(self) -> str:
        """The fallback text as Slack shows it: its three escapes decoded (Slack decodes no other entity)."""
        return shown(str(self.body.get("text", "")))


def shown(mrkdwn: str) -> str:
    return mrkdwn.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def unescaped(mrkdwn: str) -> list[str]:
    """Control sequences Slack would act on (`<!channel>`, `<@U1>`, `<http://x|y>`) or a bare & < >: what a
    name from the cluster must never produce once it is escaped."""
    import re

    return re.findall(r"<[^>]*>|&(?!amp;|lt;|gt;)|[<>]", mrkdwn)


def block_kit_problems(body: dict) -> list[str]:
    """What real Slack would reject (invalid_blocks, msg_too_long) or what loses the fallback."""
    problems = []
    blocks = body.get("blocks")
    if isinstance(blocks, str):
        blocks = json.loads(blocks)
    if not body.get("text"):
        problems.append("no plain-text fallback (text)")
    elif len(body["text"]) > MAX_TEXT:
        problems.append(f"text is {len(body['text'])} characters (max {MAX_TEXT})")
    if blocks is None:
        return problems
    if len(blocks) > MAX_BLOCKS:
        problems.append(f"{len(blocks)} blocks (max {MAX_BLOCKS})")
    for i, b in enumerate(blocks):
        kind = b.get("type")
        if kind == "header":
            text = b.get("text", {})
            if text.get("type") != "plain_text":
                problems.append(f"blocks[{i}]: header text must be plain_text")
            if len(text.get("text", "")) > MAX_HEADER_TEXT:
                problems.append(f"blocks[{i}]: header text is {len(text['text'])} characters (max {MAX_HEADER_TEXT})")
        elif kind == "section":
            text = b.get("text", {}).get("text", "")
            if len(text) > MAX_SECTION_TEXT:
                problems.append(f"blocks[{i}]: section text is {len(text)} characters (max {MAX_SECTION_TEXT})")
            if not text and not b.get("fields"):
                problems.append(f"blocks[{i}]: empty section")
            for j, f in enumerate(b.get("fields") or []):
                if len(f.get("text", "")) > 2000:
                    problems.append(f"blocks[{i}].fields[{j}]: more than 2000 characters")
            if len(b.get("fields") or []) > 10:
                problems.append(f"blocks[{i}]: more than 10 fields")
        elif kind == "context":
            if len(b.get("elements", [])) > 10:
                problems.append(f"blocks[{i}]: more than 10 context elements")
            for j, el in enumerate(b.get("elements", [])):
                if len(el.get("text", "")) > MAX_SECTION_TEXT:
                    problems.append(f"blocks[{i}].elements[{j}]: more than {MAX_SECTION_TEXT} characters")
        elif kind not in ("divider",):
            problems.append(f"blocks[{i}]: unexpected block type {kind!r}")
    return problems


class SlackStandin:
    """Start with `with SlackStandin() as slack:`; `slack.base_url` for WebClient, `slack.webhook_url`."""

    def __init__(self, port: int = 0, token: str = TOKEN, channels: tuple[str, ...] = ("#netpol-alerts",),
                 echo: bool = False, host: str = "127.0.0.1") -> None:
        self.token, self.channels, self.echo = token, set(channels), echo
        self.host = host  # the lab's root end of the node link, for a pod to reach it
        self.port = port
        self.received: list[Received] = []
        self.rejected: list[tuple[str, str]] = []  # (method, why): requests real Slack would refuse
        self.requests = 0  # every request that reached the server, failed or not
        self.attempts: list[tuple[float, str]] = []  # (time.monotonic(), method) of each of them
        self._failures: list[str] = []
        self._holds: dict[str, float] = {}  # method -> seconds the next such answer is held back
        self.held = threading.Event()  # set when a held request has been processed (the answer not yet sent)
        self._lock = threading.Lock()
        self._ts = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.messages: dict[str, dict] = {}  # ts -> current state of a posted message (after updates)

    # ------------------------------------------------------------------------------------- lifecycle
    def start(self) -> SlackStandin:
        self._server = ThreadingHTTPServer((self.host, self.port), self._handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]  # the same port again after stop()/start()
        self._thread = threading.Thread(target=self._server.serve_forever, name="slack-standin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> SlackStandin:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/api/"

    @property
    def webhook_url(self) -> str:
        return f"http://{self.host}:{self.port}{WEBHOOK_PATH}"

    def fail_next(self, *answers: str) -> None:
        """The next requests get these answers, in order: "429", "429:SECONDS" (Retry-After), "500", a Slack
        error code ("invalid_auth", "channel_not_found"...), or "hang:SECONDS" (no answer for that long, then
        a 503; the request is not acted on)."""
        with self._lock:
            self._failures.extend(answers)

    def hold_next(self, method: str, seconds: float) -> None:
        """The next `method` request is processed as Slack would (a message is posted) but its answer is sent
        only `seconds` later: the client is caught mid-delivery (e.g. killed before it learns the ts)."""
        with self._lock:
            self._holds[method] = seconds
            self.held.clear()

    def _take_hold(self, method: str) -> float:
        with self._lock:
            return self._holds.pop(method, 0.0)

    def of(self, method: str) -> list[Received]:
        return [r for r in self.received if r.method == method]

    # ---------------------------------------------------------------------------------------- serving
    def _next_ts(self) -> str:
        self._ts += 1
        return f"{int(time.time())}.{self._ts:06d}"

    def _answer(self, method: str, headers, body: dict, webhook: bool) -> tuple[int, dict, dict | str]:
        with self._lock:
            self.requests += 1
            self.attempts.append((time.monotonic(), method))
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None and failure.startswith("hang"):
            # Slack unreachable the slow way: the request is read, nothing is done with it, no answer in time.
            time.sleep(float(failure.partition(":")[2] or 30))
            return 503, {}, "hung" if webhook else {"ok": False, "error": "service_unavailable"}
        with self._lock:
            if failure is not None:
                if failure.startswith("429"):
                    retry_after = failure.partition(":")[2] or "1"
                    return 429, {"Retry-After": retry_after}, {"ok": False, "error": "ratelimited"}
                if failure == "500":
                    return 500, {}, "internal error" if webhook else {"ok": False, "error": "fatal_error"}
                return (403 if webhook else 200), {}, failure if webhook else {"ok": False, "error": failure}
            if not webhook and headers.get("Authorization") != f"Bearer {self.token}":
                return 200, {}, {"ok": False, "error": "invalid_auth"}
            if method == "auth.test":
                return 200, {}, {"ok": True, "team": "standin", "user": "netpol-drift", "bot_id": "B1"}
            if method in ("chat.postMessage", "chat.update") and body.get("channel") not in self.channels \
                    and body.get("channel") not in {m["channel"] for m in self.messages.values()}:
                return 200, {}, {"ok": False, "error": "channel_not_found"}
            problems = block_kit_problems(body) if method in ("chat.postMessage", "chat.update", "webhook") else []
            if problems:
                self.rejected.append((method, "; ".join(problems)))
                error = "invalid_blocks" if body.get("blocks") else "no_text"
                return (400 if webhook else 200), {}, error if webhook else {"ok": False, "error": error,
                                                                            "errors": problems}
            if method == "chat.update":
                ts = body.get("ts")
                if ts not in self.messages:
                    return 200, {}, {"ok": False, "error": "message_not_found"}
                self.messages[ts] = {**self.messages[ts], **body}
                self.received.append(Received(method, body, ts))
                return 200, {}, {"ok": True, "channel": body["channel"], "ts": ts}
            if method == "chat.postMessage":
                thread = body.get("thread_ts")
                if thread is not None and thread not in self.messages:
                    return 200, {}, {"ok": False, "error": "thread_not_found"}
                ts = self._next_ts()
                self.messages[ts] = dict(body)
                self.received.append(Received(method, body, ts))
                return 200, {}, {"ok": True, "channel": body["channel"], "ts": ts}
            if method == "webhook":
                self.received.append(Received(method, body))
                return 200, {}, "ok"
            if method == "conversations.list":
                return 200, {}, {"ok": True, "channels": [{"id": c, "name": c.lstrip("#")} for c in self.channels],
                                 "response_metadata": {"next_cursor": ""}}
            if method == "conversations.history":
                return 200, {}, self._history(body)
            return 404, {}, {"ok": False, "error": "unknown_method"}

    def _history(self, query: dict) -> dict:
        """conversations.history: the channel's top-level messages since `oldest`, newest first; their
        `metadata` only with include_all_metadata (as Slack does). Needs the id the posts were answered with."""
        channel = query.get("channel")
        if channel not in self.channels:
            return {"ok": False, "error": "channel_not_found"}
        oldest = float(query.get("oldest") or 0)
        with_meta = str(query.get("include_all_metadata", "")).lower() in ("1", "true")
        out = []
        for ts, m in sorted(self.messages.items(), key=lambda kv: float(kv[0]), reverse=True):
            if m.get("channel") != channel or m.get("thread_ts") or float(ts) < oldest:
                continue
            item = {"type": "message", "ts": ts, "text": m.get("text", "")}
            if with_meta and m.get("metadata"):
                item["metadata"] = m["metadata"]
            out.append(item)
        return {"ok": True, "messages": out, "has_more": False, "response_metadata": {"next_cursor": ""}}

    def _handler(self):
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # slack_sdk reads (conversations.*) with GET and a query string
                path, _, query = self.path.partition("?")
                if not path.startswith("/api/"):
                    self._send(404, {}, "no_service")
                    return
                body = {k: v[0] for k, v in urllib.parse.parse_qs(query).items()}
                self._send(*standin._answer(path[len("/api/"):], self.headers, body, False))

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                if self.headers.get("Content-Type", "").startswith("application/json"):
                    body = json.loads(raw) if raw else {}
                else:
                    body = {k: v[0] for k, v in urllib.parse.parse_qs(raw).items()}
                if self.path == WEBHOOK_PATH:
                    method, webhook = "webhook", True
                elif self.path.startswith("/api/"):
                    method, webhook = self.path[len("/api/"):].split("?")[0], False
                else:
                    self._send(404, {}, "no_service")
                    return
                status, headers, answer = standin._answer(method, self.headers, body, webhook)
                hold = standin._take_hold(method) if status == 200 else 0.0
                if hold:
                    standin.held.set()
                    time.sleep(hold)
                if standin.echo and status == 200:
                    standin._print(method, body)
                self._send(status, headers, answer)

            def _send(self, status: int, headers: dict, answer: dict | str) -> None:
                data = (json.dumps(answer) if isinstance(answer, dict) else answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json" if isinstance(answer, dict) else "text/plain")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:  # quiet: tests read `received`, not stderr
                return

        return Handler

    def _print(self, method: str, body: dict) -> None:
        where = body.get("channel", "webhook")
        if method == "auth.test":
            print("[slack] auth.test: token accepted", flush=True)
            return
        if method == "chat.update":
            head = f"[slack] chat.update {where} ts={body.get('ts')}"
        elif body.get("thread_ts"):
            head = f"[slack] thread reply {where} thread_ts={body.get('thread_ts')}"
        else:
            head = f"[slack] {method} {where}"
        print(head, flush=True)
        for line in shown(str(body.get("text", ""))).splitlines():
            print(f"    {line}", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--channel", default="#netpol-alerts")
    args = p.parse_args(argv)
    standin = SlackStandin(args.port, channels=(args.channel,), echo=True).start()
    print(f"[slack] stand-in listening on {standin.base_url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        standin.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

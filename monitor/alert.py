"""Slack alerts: the outbox rows the store wrote with each drift event, turned into one message per incident.

Job: read the pending outbox rows (store), decide which are alerts (a verdict change since known-good, a new
violation, a new enforcement gap; refused <-> timeout only with alert.on_blocked_mode_change; flapping flows
once), group them into incidents (one run and one cause), render them (Block Kit within Slack's limits, with
a plain-text fallback) and deliver them to one target: a bot token (message, details in its thread, chat.update
and a thread reply on resolve), an incoming webhook (one message each), or structured log lines. Each
incident's channel and ts are stored, so that a restarted service updates the right message.
Delivery uses slack_sdk's retry handlers (429 Retry-After, connection errors, 5xx); what still fails stays
queued with backoff; a configuration error (invalid_auth, channel_not_found...) is reported once, loudly, and
everything stays queued until the configuration is fixed.
This is the only module importing slack_sdk. It loads sqlalchemy through monitor.store (`alert_event` reads
the outbox payloads; only serve imports this module, and it has the store open anyway). It must not decide
drift (compare.py), write SQL (the store), read the wall clock (`now` comes in), or ever log a token or
webhook URL.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.webhook import WebhookClient

from monitor.compare import DriftEvent
from monitor.errors import AlertError, InputError, StoreError
from monitor.models import FlowResult, to_jsonable
from monitor.settings import Settings
from monitor.store import Alert, IncidentRecord, Store, alert_event

log = logging.getLogger(__name__)
T = TypeVar("T")

# Slack's limits (Block Kit reference): blocks per message, characters per section text and header text.
MAX_BLOCKS = 50
MAX_SECTION = 3000
MAX_HEADER = 150
MAX_FALLBACK = 3000  # the fallback `text` may be longer (40k) but notifications show only the start
FLOWS_IN_MESSAGE = 10  # the channel message lists this many flows; the thread lists them all (to the limit)
# Slack error codes that no retry can fix: the token or the channel is wrong until someone changes the config.
CONFIG_ERRORS = frozenset({"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired",
                           "no_permission", "missing_scope", "channel_not_found", "not_in_channel",
                           "is_archived", "invalid_token", "no_service", "no_team", "team_disabled",
                           "action_prohibited", "posting_to_general_channel_denied"})
# The note of an outbox row closed because only the way a flow is blocked changed (history, not an alert).
BLOCKED_MODE_NOTE = "refused <-> timeout only (alert.on_blocked_mode_change)"
WORDS = {"allow": "allowed", "deny": "blocked", "unknown": "unknown", "skipped": "skipped"}


# -------------------------------------------------------------------------------------------- records
@dataclass(frozen=True, slots=True)
class FlowLine:
    """One flow of an incident, as a message shows it."""

    key: str
    source: str
    destination: str
    port: str  # "8080/TCP"
    change: str  # "allowed -> blocked (refused)"
    policy: str = ""  # what decides the flow now (the engine's explanation)
    kinds: tuple[str, ...] = ()  # drift, violation, gap
    events: tuple[str, ...] = ()  # drift event ids still open in this flow
    resolution: str | None = None  # set once every event of the flow resolved
    notes: tuple[str, ...] = ()  # each event in words ("drift: connected -> refused since known-good")

    @property
    def text(self) -> str:
        return f"{self.source} -> {self.destination} {self.port}  {self.change}"


@dataclass(frozen=True, slots=True)
class Incident:
    """One message: the flows one run opened with one cause (or one flapping flow)."""

    cluster: str
    run_id: str | None
    cause: str
    opened_at: str
    flows: tuple[FlowLine, ...]
    kind: str = "drift"  # drift | flapping
    resolved_runs: tuple[str, ...] = ()

    @property
    def resolved(self) -> bool:
        return bool(self.flows) and all(f.resolution is not None for f in self.flows)

    def to_json(self) -> str:
        return json.dumps(to_jsonable(self), sort_keys=True, separators=(",", ":"))

    @staticmethod
    def from_json(text: str) -> Incident:
        raw = json.loads(text)
        raw["flows"] = tuple(FlowLine(**{**f, "kinds": tuple(f["kinds"]), "events": tuple(f["events"]),
                                         "notes": tuple(f.get("notes", ()))}) for f in raw["flows"])
        raw["resolved_runs"] = tuple(raw.get("resolved_runs", ()))
        return Incident(**raw)


@dataclass(frozen=True, slots=True)
class StoredIncident:
    """An incident as the store keeps it: where its message went."""

    id: str
    incident: Incident
    channel: str | None = None
    ts: str | None = None

    @staticmethod
    def of(record: IncidentRecord | None) -> StoredIncident | None:
        if record is None:
            return None
        return StoredIncident(record.id, Incident.from_json(record.content), record.channel, record.ts)


@dataclass(frozen=True, slots=True)
class Message:
    # Plain-text fallback (notifications, clients without Block Kit, log lines). Slack parses it as mrkdwn all
    # the same, so the targets that send it escape it there: a case named `<!channel>` must not ping anyone.
    text: str
    blocks: tuple[dict, ...] = ()


@dataclass(frozen=True, slots=True)
class Posted:
    channel: str | None
    ts: str | None


# --------------------------------------------------------------------------------------------- render
def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _link(incident: Incident, external_url: str | None) -> str | None:
    if not external_url or not incident.run_id:
        return None
    return f"{external_url.rstrip('/')}/runs/{incident.run_id}"


def _header(incident: Incident) -> str:
    n = len(incident.flows)
    flows = f"{n} flow{'s' if n != 1 else ''}"
    if incident.kind == "flapping":
        return _cut(f"Flapping on {incident.cluster}: {incident.flows[0].text}", MAX_HEADER)
    if incident.resolved:
        return _cut(f"Resolved: reachability drift on {incident.cluster} ({flows})", MAX_HEADER)
    done = sum(f.resolution is not None for f in incident.flows)
    part = f", {done} resolved" if done else ""
    return _cut(f"Reachability drift on {incident.cluster}: {flows} changed{part}", MAX_HEADER)


def _context(incident: Incident, external_url: str | None, plain: bool = False) -> str:
    bits = [f"cluster {incident.cluster}"]
    if incident.run_id:
        bits.append(f"run {incident.run_id}")
    if incident.resolved_runs:
        bits.append(f"resolved by run {', '.join(incident.resolved_runs)}")
    bits.append(f"opened {_when(incident.opened_at)}")
    link = _link(incident, external_url)
    if link:
        bits.append(link if plain else f"<{link}|open run {incident.run_id}>")
    return " · ".join(bits)


def _flow_item(f: FlowLine, with_policy: bool, plain: bool = False, with_notes: bool = False) -> str:
    mark = "~" if f.resolution is not None and not plain else ""
    line = f"{mark}{f.text}{mark}"
    if f.resolution is not None:
        line += f"  resolved: {f.resolution}" if plain else f"  _resolved: {f.resolution}_"
    if with_notes and f.notes:
        line += f"\n      {_cut('; '.join(f.notes), 400)}"
    # Once resolved, what decided the broken flow is history: the message must not present it as current.
    if with_policy and f.policy and f.resolution is None:
        line += f"\n      now decided by: {_cut(f.policy, 400)}"
    return line


def _list_sections(items: Sequence[str], max_sections: int) -> tuple[list[str], int]:
    """Packs `items` into at most max_sections texts of <= MAX_SECTION characters; returns them and the
    number of items that did not fit."""
    sections: list[str] = []
    current = ""
    for i, item in enumerate(items):
        item = _cut(item, MAX_SECTION - 50)
        candidate = f"{current}\n{item}" if current else item
        if len(candidate) <= MAX_SECTION - 40:  # room for "and N more"
            current = candidate
            continue
        sections.append(current)
        if len(sections) == max_sections:
            return sections, len(items) - i
        current = item
    if current:
        sections.append(current)
    return sections, 0


def _mrkdwn(text: str) -> str:
    # Slack's three control characters; everything else is shown as written.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _when(iso: str) -> str:
    try:
        t = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC") if t.tzinfo else t.strftime("%Y-%m-%d %H:%M:%S")


def render_incident(incident: Incident, external_url: str | None = None, *, details: bool = False) -> Message:
    """The channel message (a few flows) or, with details=True, everything that fits for the thread: every
    flow with its events in words and the policy deciding it now."""
    head = _cut(f"Details: {_header(incident)}", MAX_HEADER) if details else _header(incident)
    flows = list(incident.flows)
    limit = len(flows) if details else FLOWS_IN_MESSAGE
    with_policy = details or len(flows) <= 3
    items = [_mrkdwn(_flow_item(f, with_policy, with_notes=details)) for f in flows[:limit]]
    cause = f"*Cause:* {_mrkdwn(incident.cause)}"
    blocks: list[dict] = [{"type": "header", "text": {"type": "plain_text", "text": head}},
                          {"type": "section", "text": {"type": "mrkdwn", "text": _cut(cause, MAX_SECTION)}}]
    # header, cause, flow sections, "and N more", context: the rest of the 50 blocks hold flow sections.
    sections, unfitted = _list_sections(items, MAX_BLOCKS - 4)
    blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": s}} for s in sections]
    more = unfitted + len(flows) - limit
    if more:
        where = " (all of them in the thread)" if not details else ""
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"…and {more} more{where}"}})
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn",
                                                     "text": _cut(_context(incident, external_url), MAX_SECTION)}]})
    return Message(_fallback(head, incident, external_url, details, with_policy), tuple(blocks))


def _fallback(head: str, incident: Incident, external_url: str | None, details: bool, with_policy: bool) -> str:
    context = _cut(_context(incident, external_url, plain=True), 500)
    lines = [head, _cut(f"Cause: {incident.cause}", 500)]
    room = MAX_FALLBACK - len(context) - sum(len(x) + 1 for x in lines) - 40
    shown = 0
    for f in incident.flows:
        line = "  " + _cut(_flow_item(f, with_policy, plain=True, with_notes=details), 600)
        if len(line) + 1 > room or (not details and shown == FLOWS_IN_MESSAGE):
            break
        lines.append(line)
        room -= len(line) + 1
        shown += 1
    if shown < len(incident.flows):
        lines.append(f"  …and {len(incident.flows) - shown} more")
    lines.append(context)
    return "\n".join(lines)


def _resolved_item(f: FlowLine) -> str:
    return f"{f.source} -> {f.destination} {f.port}  {f.resolution or 'resolved'}"


def render_resolution(incident: Incident, flows: Sequence[FlowLine], run_id: str | None) -> Message:
    """The thread reply (or webhook/log message) when some or all flows of an incident recovered."""
    all_done = incident.resolved
    head = (f"Resolved{f' by run {run_id}' if run_id else ''}: "
            f"{'all flows are back' if all_done else f'{len(flows)} of {len(incident.flows)} flows are back'}"
            f" (cluster {incident.cluster}, opened by run {incident.run_id})")
    items = [_mrkdwn(_resolved_item(f)) for f in flows]
    sections, unfitted = _list_sections(items, MAX_BLOCKS - 3)
    blocks: list[dict] = [{"type": "section", "text": {"type": "mrkdwn", "text": _cut(f"*{_mrkdwn(head)}*",
                                                                                       MAX_SECTION)}}]
    blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": s}} for s in sections]
    if unfitted:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"…and {unfitted} more"}})
    text_lines = [head] + [f"  {_resolved_item(f)}" for f in flows[:10]]
    if len(flows) > 10:
        text_lines.append(f"  …and {len(flows) - 10} more")
    return Message(_cut("\n".join(text_lines), MAX_FALLBACK), tuple(blocks))


# -------------------------------------------------------------------------------- from outbox payloads
@dataclass(frozen=True, slots=True)
class _Row:
    """An outbox row read: the alert id, the change (opened/resolved) and the drift event it carries."""

    alert_id: str
    created_at: str
    change: str
    event: DriftEvent
    attempts: int = 0
    tried: bool = False  # an earlier try was cut off before Slack's answer (a kill): it may have been posted


def _batch_key(r: _Row) -> tuple:
    run = r.event.opened_run if r.change == "opened" else r.event.resolved_run
    return r.change, r.event.cluster, run


def _rows(alerts: Iterable[Alert]) -> tuple[list[_Row], list[tuple[Alert, StoreError]]]:
    """The alerts read back, and those whose payload cannot be read (never sendable, reported)."""
    out, damaged = [], []
    for a in alerts:
        try:
            change, event = alert_event(a)
        except StoreError as e:
            damaged.append((a, e))
            continue
        out.append(_Row(a.id, a.created_at, change, event, a.attempts, (a.last_error or "").startswith(SENDING_NOTE)))
    return out, damaged


def split_key(key: str) -> tuple[str, str, str]:
    """FlowResult.key -> (source, destination, "port/PROTO"); a case name may itself contain '|'."""
    parts = key.rsplit("|", 3)
    if len(parts) != 4:
        return key, "?", "?"
    return parts[1], parts[2], parts[3]


def cause_text(event: DriftEvent) -> str:
    """The cause in a few words: the policy or label change, or the dataplane."""
    cause, kind = event.cause, event.kind
    if kind == "drift" and cause is not None:
        if cause.kind == "dataplane":
            return "dataplane: no policy or label changed"
        if cause.kind == "config":
            joined = "; ".join(cause.changes)
            return f"{joined} (only together)" if cause.combined else joined
        return f"unknown{': ' + cause.note if cause.note else ''}"
    if kind == "gap":
        return "enforcement gap: the network does not do what the policies say"
    if kind == "violation":
        return "expectation newly violated"
    return "drift: cause not known"


def blocked_mode_only(event: DriftEvent, result: FlowResult | None) -> bool:
    """A drift between two ways of being blocked (refused <-> timeout): history, not an alert."""
    after = str(result.verdict) if result is not None else None
    return event.kind == "drift" and event.baseline_verdict is not None and event.baseline_verdict == after


def _change_text(events: Sequence[DriftEvent], result: FlowResult | None) -> str:
    drift = next((e for e in events if e.kind == "drift"), None)
    if result is None:
        return "; ".join(e.detail for e in events)
    now = f"{WORDS.get(str(result.verdict), str(result.verdict))} ({result.outcome})"
    if drift is not None and drift.baseline_verdict:
        before = WORDS.get(drift.baseline_verdict, drift.baseline_verdict)
        if drift.baseline_verdict == str(result.verdict):
            before += f" ({drift.baseline_outcome})"
        return f"{before} -> {now}"
    kinds = {e.kind for e in events}
    if "violation" in kinds:
        return f"expected {WORDS.get(str(result.expected), str(result.expected))}, now {now}"
    if "gap" in kinds:
        return f"policies say {WORDS.get(str(result.intent), str(result.intent))}, now {now}"
    return now


# ------------------------------------------------------------------------------------------- targets
# Slack message metadata (chat.postMessage `metadata`) that tags each alert message with its delivery key.
METADATA_EVENT = "netpol_drift_alert"
SENDING_NOTE = "being sent: no answer from Slack yet"
# Lookup failures that mean "this bot cannot read the channel", not "try again later".
_CANNOT_LOOK = {"missing_scope", "not_in_channel", "channel_not_found", "not_allowed_token_type", "not_authed"}
_LOOKUP_MARGIN = timedelta(minutes=5)  # Slack's clock and the database's may differ a little


def _delivery_key(rows: Sequence[_Row]) -> str:
    """The same outbox rows give the same key in every process: what tags their message in Slack."""
    return hashlib.sha256(",".join(sorted(r.alert_id for r in rows)).encode()).hexdigest()[:20]


class AlertMetrics(Protocol):
    """Where delivery is counted (monitor.metrics implements it; tests may count by hand)."""

    def alert_result(self, channel: str, result: str) -> None: ...

    def alert_queue(self, depth: int, oldest_seconds: float) -> None: ...


class NoMetrics:
    def alert_result(self, channel: str, result: str) -> None:
        return None

    def alert_queue(self, depth: int, oldest_seconds: float) -> None:
        return None


class Target(Protocol):
    name: str  # "slack" | "webhook" | "log": the `channel` label of netpol_drift_alerts_total
    threads: bool  # can update a message and reply in its thread

    def describe(self) -> str: ...

    def check(self) -> str: ...

    def post(self, message: Message, thread: Posted | None = None, key: str | None = None) -> Posted:
        """Posts; `key` tags the message so that `find` can recognise it later."""

    def update(self, where: Posted, message: Message) -> None: ...

    def find(self, key: str, since: datetime) -> Posted | None:
        """The message posted with `key` since `since`, if this target can look (None: not there, or no way to
        tell). Raises AlertError for a transient failure: the caller retries later."""


class _Redact(logging.Filter):
    """Drops secrets from slack_sdk's own log records (the webhook client logs its URL at debug level)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if any(s in text for s in self.secrets):
            for s in self.secrets:
                text = text.replace(s, "<redacted>")
            record.msg, record.args = text, None
        return True


def _sdk_logger(name: str, secrets: Iterable[str]) -> logging.Logger:
    logger = logging.getLogger(f"monitor.alert.{name}")
    logger.filters = [f for f in logger.filters if not isinstance(f, _Redact)]
    logger.addFilter(_Redact(secrets))
    return logger


def _retry_after(headers: Any) -> float:
    """A response's Retry-After in seconds (1 when absent or unreadable, as slack_sdk assumes)."""
    for key, value in dict(headers or {}).items():
        if key.lower() == "retry-after":
            value = value[0] if isinstance(value, list | tuple) else value
            try:
                return max(0.0, float(value))
            except (TypeError, ValueError):
                return 1.0
    return 1.0


class _BoundedRateLimitRetryHandler(RateLimitErrorRetryHandler):
    """slack_sdk's 429 handler (it sleeps Retry-After, then retries), for waits up to `max_wait` only: a longer
    one ends the attempt and the outbox waits it out (next try at Retry-After), instead of a delivery pass
    asleep for minutes while later alerts and the service's other jobs wait behind it."""

    def __init__(self, max_wait: float, max_retry_count: int) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait = max_wait

    def _can_retry(self, *, state, request, response=None, error=None) -> bool:
        return (super()._can_retry(state=state, request=request, response=response, error=error)
                and response is not None and _retry_after(response.headers) <= self.max_wait)


def _retry_handlers(max_wait: float) -> list:
    return [ConnectionErrorRetryHandler(max_retry_count=2), _BoundedRateLimitRetryHandler(max_wait, 2),
            ServerErrorRetryHandler(max_retry_count=2)]


def _raise(method: str, e: Exception, secrets: Iterable[str] = ()) -> None:
    if isinstance(e, SlackApiError):
        code = (e.response.data or {}).get("error") if isinstance(e.response.data, dict) else None
        code = code or f"HTTP {e.response.status_code}"
        error = AlertError(f"Slack {method} failed: {code}")
        if e.response.status_code == 429:
            error.retry_after = _retry_after(e.response.headers)
        raise error from e
    text = str(e)
    for s in secrets:
        if s:
            text = text.replace(s, "<redacted>")
    raise AlertError(f"Slack {method} failed: {text.splitlines()[0] if text else type(e).__name__}") from e


def error_code(e: AlertError) -> str:
    return str(e).rsplit(": ", 1)[-1]


class BotTarget:
    """A bot token and a channel: chat.postMessage, thread replies, chat.update."""

    name = "slack"
    threads = True

    def __init__(self, token: str, channel: str, base_url: str | None = None, timeout: float = 10.0) -> None:
        self.channel = channel
        self._token = token
        self._channel_id: str | None = None  # the channel's id, as Slack answers a post
        self._lookup_warned = False
        kwargs: dict[str, Any] = {"base_url": base_url} if base_url else {}
        self.client = WebClient(token=token, timeout=int(timeout), retry_handlers=_retry_handlers(timeout),
                                logger=_sdk_logger("slack_sdk", [token]), **kwargs)

    def __repr__(self) -> str:  # never the token
        return f"BotTarget(channel={self.channel!r})"

    def describe(self) -> str:
        return f"Slack bot token, channel {self.channel}"

    def check(self) -> str:
        """auth.test at start-up: the bot's name, or AlertError (invalid_auth...)."""
        try:
            return str(self.client.auth_test().get("user", "?"))
        except (SlackApiError, SlackClientError, OSError) as e:
            _raise("auth.test", e, [self._token])
        raise AssertionError("unreachable")

    def post(self, message: Message, thread: Posted | None = None, key: str | None = None) -> Posted:
        metadata = {"event_type": METADATA_EVENT, "event_payload": {"key": key}} if key else None
        try:
            resp = self.client.chat_postMessage(channel=thread.channel if thread else self.channel,
                                                text=_mrkdwn(message.text), blocks=list(message.blocks) or None,
                                                thread_ts=thread.ts if thread else None, unfurl_links=False,
                                                metadata=metadata)
        except (SlackApiError, SlackClientError, OSError) as e:
            _raise("chat.postMessage", e, [self._token])
        if not thread:
            self._channel_id = resp.get("channel") or self._channel_id
        return Posted(resp.get("channel"), resp.get("ts"))

    def find(self, key: str, since: datetime) -> Posted | None:
        """Reads the channel's history since `since` (conversations.history with the messages' metadata) for
        the message tagged `key`. A bot without the scopes to read it (channels:history, channels:read for a
        channel given by name) cannot tell: said once, and the alert is posted (it may then show twice)."""
        try:
            channel = self._channel_id or self._resolve_channel()
            cursor = None
            while True:
                try:
                    resp = self.client.conversations_history(channel=channel, oldest=f"{since.timestamp():.6f}",
                                                             include_all_metadata=True, limit=200, cursor=cursor)
                except (SlackApiError, SlackClientError, OSError) as e:
                    _raise("conversations.history", e, [self._token])
                for m in resp.get("messages") or []:
                    meta = m.get("metadata") or {}
                    if meta.get("event_type") == METADATA_EVENT and (meta.get("event_payload") or {}).get("key") == key:
                        return Posted(channel, m.get("ts"))
                cursor = (resp.get("response_metadata") or {}).get("next_cursor")
                if not cursor:
                    return None
        except AlertError as e:
            if error_code(e) not in _CANNOT_LOOK:
                raise
            if not self._lookup_warned:
                self._lookup_warned = True
                log.warning("cannot check whether an interrupted alert already reached Slack (%s; the bot needs "
                            "channels:history, and channels:read for a channel given by name): it is posted "
                            "again and may show twice", e)
            return None

    def _resolve_channel(self) -> str:
        """The channel's id (conversations.history takes no name): the setting if it is one, else looked up."""
        if re.fullmatch(r"[CGD][A-Z0-9]{6,}", self.channel):
            return self.channel
        name, cursor = self.channel.lstrip("#"), None
        while True:
            try:
                resp = self.client.conversations_list(types="public_channel,private_channel",
                                                      exclude_archived=True, limit=1000, cursor=cursor)
            except (SlackApiError, SlackClientError, OSError) as e:
                _raise("conversations.list", e, [self._token])
            for c in resp.get("channels") or []:
                if c.get("name") == name:
                    self._channel_id = c.get("id")
                    return self._channel_id
            cursor = (resp.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                raise AlertError("Slack conversations.list failed: channel_not_found")

    def update(self, where: Posted, message: Message) -> None:
        try:
            self.client.chat_update(channel=where.channel, ts=where.ts, text=_mrkdwn(message.text),
                                    blocks=list(message.blocks) or None)
        except (SlackApiError, SlackClientError, OSError) as e:
            _raise("chat.update", e, [self._token])


class WebhookTarget:
    """An incoming webhook: no ts comes back, so every alert (open or resolve) is a message of its own."""

    name = "webhook"
    threads = False

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        self._url = url
        self.client = WebhookClient(url, timeout=int(timeout), retry_handlers=_retry_handlers(timeout),
                                    logger=_sdk_logger("webhook", [url]))
        # The client logs its URL (the secret) at debug level whenever its own logger allows debug.
        self.client.logger.setLevel(max(logging.INFO, self.client.logger.getEffectiveLevel()))

    def __repr__(self) -> str:
        return "WebhookTarget(<url hidden>)"

    def describe(self) -> str:
        return "Slack incoming webhook (one message per alert, no threads)"

    def check(self) -> str:
        return "not checked (a webhook has no test call)"

    def post(self, message: Message, thread: Posted | None = None, key: str | None = None) -> Posted:
        try:
            resp = self.client.send(text=_mrkdwn(message.text), blocks=list(message.blocks) or None, unfurl_links=False)
        except (SlackClientError, OSError) as e:
            _raise("webhook", e, [self._url])
        if resp.status_code != 200:
            body = (resp.body or "").strip().splitlines()
            error = AlertError(f"Slack webhook failed: {body[0] if body else f'HTTP {resp.status_code}'}")
            if resp.status_code == 429:
                error.retry_after = _retry_after(resp.headers)
            raise error
        return Posted(None, None)

    def update(self, where: Posted, message: Message) -> None:
        raise AlertError("an incoming webhook cannot update a message")

    def find(self, key: str, since: datetime) -> Posted | None:
        return None  # a webhook cannot read the channel: an interrupted delivery is posted again


class LogTarget:
    """No Slack configured: the same content as one structured (JSON) log line per message."""

    name = "log"
    threads = False

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.logger = logger or log

    def describe(self) -> str:
        return "log lines (no NETPOL_DRIFT_SLACK_TOKEN or NETPOL_DRIFT_SLACK_WEBHOOK_URL set)"

    def check(self) -> str:
        return "ok"

    def post(self, message: Message, thread: Posted | None = None, key: str | None = None) -> Posted:
        self.logger.warning("alert %s", json.dumps({"text": message.text}, ensure_ascii=False))
        return Posted(None, None)

    def update(self, where: Posted, message: Message) -> None:
        raise AlertError("log lines cannot be updated")

    def find(self, key: str, since: datetime) -> Posted | None:
        return None


def make_target(settings: Settings) -> Target:
    """Bot token + channel, else webhook, else log lines. A token without a channel is a config error."""
    s = settings.secrets
    if s.slack_token:
        if not settings.slack.channel:
            raise AlertError("NETPOL_DRIFT_SLACK_TOKEN is set but slack.channel is not: set the channel to post to")
        return BotTarget(s.slack_token, settings.slack.channel, settings.slack.base_url)
    if s.slack_webhook_url:
        return WebhookTarget(s.slack_webhook_url)
    return LogTarget()


# --------------------------------------------------------------------------------------------- sender
class Outbox(Protocol):
    """What the sender needs of the store (monitor.store.Store implements it)."""

    def due_alerts(self, now: str, limit: int = 50) -> list[Alert]: ...

    def close_alerts(self, alert_ids: Sequence[str], now: str, *, incident_id: str | None = None,
                     channel: str | None = None, ts: str | None = None, note: str | None = None) -> None: ...

    def mark_alert_failed(self, alert_id: str, error: str, *, next_attempt_at: str | None = None) -> Alert: ...

    def save_incident(self, cluster: str, content: str, *, now: str, channel: str | None, ts: str | None,
                      flow_key: str | None = None, details_due: bool = False) -> str: ...

    def update_incident(self, incident_id: str, content: str, *, now: str) -> None: ...

    def end_flapping(self, incident_id: str, now: str) -> None: ...

    def details_due(self, limit: int = 20) -> list[IncidentRecord]: ...

    def details_posted(self, incident_id: str, now: str) -> None: ...

    def incident_of_event(self, event_id: str) -> IncidentRecord | None: ...

    def flapping_notice(self, cluster: str, flow_key: str) -> IncidentRecord | None: ...

    def flow_times(self, cluster: str, flow_key: str, limit: int = 200,
                   unless_note: str | None = None) -> list[tuple[str, str | None]]: ...

    def count_runs(self, cluster: str, after: str, until: str) -> int: ...

    def alert_queue(self) -> tuple[int, str | None]: ...

    def get_run(self, run_id: str): ...


@dataclass
class DeliveryReport:
    sent: int = 0  # Slack messages (or log lines) written
    suppressed: int = 0  # outbox rows closed without a message (refused <-> timeout, flapping, quiet)
    failed: int = 0  # outbox rows left queued after this pass
    halted: str | None = None  # a configuration error stops delivery until the config changes
    store_error: str | None = None  # the database failed: this pass stopped, everything stays queued
    notes: list[str] = field(default_factory=list)


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


def _iso(t: datetime) -> str:
    return t.isoformat()


class AlertSender:
    """Delivers the outbox. One per service; `deliver(now)` after each run and on a timer (retries)."""

    def __init__(self, outbox: Outbox | Store, target: Target, settings: Settings,
                 metrics: AlertMetrics | None = None) -> None:
        self.outbox, self.target, self.settings = outbox, target, settings
        self.metrics = metrics or NoMetrics()
        self.halted: str | None = None  # the config error that stopped delivery (reported once)
        self._runs: dict[str, dict[str, FlowResult]] = {}
        self._closed: set[str] = set()
        # Store writes that record a message Slack already accepted, which the database refused: done first
        # on the next pass, before anything is sent, so that a database outage never sends a message twice.
        self._unrecorded: list[Callable[[], object]] = []
        self._store_down: str | None = None  # the database error of the last pass (said once per outage)
        # After-run hook and periodic retry may overlap: one delivery pass at a time, in outbox order.
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------------- api
    def start(self, now: datetime) -> None:
        """The start-up line, and the bot token tried once (auth.test): a wrong token is said at once."""
        try:
            answer = self.target.check()
        except AlertError as e:
            self._failed(e, [], now, DeliveryReport())
            return
        log.info("alerts: %s (check: %s)", self.target.describe(), answer)

    def deliver(self, now: datetime, limit: int = 500) -> DeliveryReport:
        """Sends what is due, in outbox order; stops at the first failure (a resolution must not overtake
        its opening). Raises nothing for Slack trouble: the rows stay queued and the report says why."""
        with self._lock:
            return self._deliver(now, limit)

    def _deliver(self, now: datetime, limit: int) -> DeliveryReport:
        report = DeliveryReport(halted=self.halted)
        try:
            self._record_unrecorded()
            self._send_due(now, limit, report)
            self._record_queue(now)
        except StoreError as e:  # the database is unavailable: nothing more is sent until it is back
            report.store_error = str(e)
            if self._store_down is None:
                log.warning("alert delivery paused: %s; queued alerts go out when the database is back", e)
            self._store_down = str(e)
            return report
        if self._store_down is not None:
            log.info("alert delivery resumed: the database is back")
            self._store_down = None
        return report

    def _record_unrecorded(self) -> None:
        while self._unrecorded:
            self._unrecorded[0]()
            self._unrecorded.pop(0)

    def _recorded(self, write: Callable[[], T]) -> T:
        """Runs the store writes that record a message Slack accepted; if the database fails, they are kept
        for the next pass (and the StoreError ends this one)."""
        try:
            return write()
        except StoreError:
            self._unrecorded.append(write)
            raise

    def _send_due(self, now: datetime, limit: int, report: DeliveryReport) -> None:
        rows: list[_Row] = []
        try:
            while self.halted is None:
                alerts = self.outbox.due_alerts(_iso(now), limit)
                rows, damaged = _rows(alerts)
                for a, e in damaged:  # cannot become a message, ever: said loudly, then out of the queue
                    log.error("alert %s cannot be sent: %s", a.id, e)
                    self.outbox.close_alerts([a.id], _iso(now), note=f"not sent: {e}")
                batches = list(self._batches(rows))
                full = len(alerts) == limit
                if full and len(batches) == 1:
                    limit *= 4  # one run's rows never go out in two pieces: read the whole batch
                    continue
                if full:
                    batches.pop()  # maybe cut by the limit: it comes first in the next read
                for batch in batches:
                    self._deliver_batch(batch, now, report)
                if not full:
                    self._details_left_over(now, report)
                    break
        except AlertError as e:
            self._failed(e, [r for r in rows if not self._done(r)], now, report)
        finally:
            self._runs.clear()

    # ------------------------------------------------------------------------------------- internals
    def _done(self, row: _Row) -> bool:
        return row.alert_id in self._closed

    def _batches(self, rows: list[_Row]) -> Iterable[list[_Row]]:
        """Consecutive rows of one run and one change (opened/resolved), in outbox order."""
        batch: list[_Row] = []
        for r in rows:
            if batch and _batch_key(r) != _batch_key(batch[0]):
                yield batch
                batch = []
            batch.append(r)
        if batch:
            yield batch

    def _deliver_batch(self, batch: list[_Row], now: datetime, report: DeliveryReport) -> None:
        if batch[0].change == "opened":
            self._deliver_opened(batch, now, report)
        else:
            self._deliver_resolved(batch, now, report)

    def _results(self, run_id: str | None) -> dict[str, FlowResult]:
        if not run_id:
            return {}
        if run_id not in self._runs:
            try:
                run = self.outbox.get_run(run_id)
                self._runs[run_id] = {r.key: r for r in run.results}
            except (InputError, StoreError):  # a pruned run: the message falls back to the event's own text
                self._runs[run_id] = {}
        return self._runs[run_id]

    def _close(self, rows: Sequence[_Row], now: datetime, report: DeliveryReport, *, incident_id: str | None = None,
               posted: Posted | None = None, note: str | None = None) -> None:
        where = posted or Posted(None, None)
        self.outbox.close_alerts([r.alert_id for r in rows], _iso(now), incident_id=incident_id,
                                 channel=where.channel, ts=where.ts, note=note)
        self._closed.update(r.alert_id for r in rows)
        if note is not None:
            report.suppressed += len(rows)
            report.notes.append(f"{len(rows)} not sent: {note}")
            self.metrics.alert_result(self.target.name, "suppressed")

    def _deliver_opened(self, batch: list[_Row], now: datetime, report: DeliveryReport) -> None:
        ev0 = batch[0].event
        cluster, run_id = ev0.cluster, ev0.opened_run
        results = self._results(run_id)
        by_flow: dict[str, list[_Row]] = defaultdict(list)
        for r in batch:
            by_flow[r.event.flow_key].append(r)
        groups: dict[str, list[FlowLine]] = defaultdict(list)
        group_rows: dict[str, list[_Row]] = defaultdict(list)
        flapping: list[tuple[FlowLine, list[_Row]]] = []
        for key, rows in by_flow.items():
            events = [r.event for r in rows]
            result = results.get(key)
            if not self.settings.alert.on_blocked_mode_change and all(blocked_mode_only(e, result) for e in events):
                self._close(rows, now, report, note=BLOCKED_MODE_NOTE)
                continue
            drift = next((e for e in events if e.kind == "drift"), None)
            cause = cause_text(drift or sorted(events, key=lambda e: e.kind != "violation")[0])
            src, dst, port = split_key(key)
            line = FlowLine(key, src, dst, port, _change_text(events, result),
                            result.explanation if result is not None else "",
                            tuple(sorted({e.kind for e in events})), tuple(str(e.id) for e in events),
                            notes=tuple(f"{e.kind}: {e.detail}" for e in events))
            flap = self._flapping(cluster, key, ev0.opened_at or _iso(now))
            if flap == "quiet":
                self._close(rows, now, report, note="flapping: quiet until stable")
                continue
            if flap == "start":
                flapping.append((line, rows))
                continue
            groups[cause].append(line)
            group_rows[cause].extend(rows)
        for line, rows in flapping:
            incident = Incident(cluster, run_id, f"opened {self.settings.alert.flap_opens} times within "
                                f"{self.settings.alert.flap_window_seconds // 60} min; quiet until it has not "
                                f"changed for {self.settings.alert.flap_quiet_runs} runs", ev0.opened_at,
                                (line,), kind="flapping")
            posted = self._post_once(render_incident(incident, self.settings.web.external_url), rows, report)

            def record(incident=incident, posted=posted, line=line, rows=rows) -> None:
                iid = self.outbox.save_incident(cluster, incident.to_json(), now=_iso(now), channel=posted.channel,
                                                ts=posted.ts, flow_key=line.key)
                self._close(rows, now, report, incident_id=iid, posted=posted)

            self._recorded(record)
        for cause, lines in groups.items():
            incident = Incident(cluster, run_id, cause, ev0.opened_at, tuple(lines))
            self._post_incident(incident, group_rows[cause], now, report)

    def _post_incident(self, incident: Incident, rows: list[_Row], now: datetime, report: DeliveryReport) -> None:
        external = self.settings.web.external_url
        threads = self.target.threads
        posted = self._post_once(render_incident(incident, external, details=not threads), rows, report)

        # Stored (with its details still due) before the thread reply: a failure after this point must not post
        # the message twice, and the details are posted by a later pass if this one cannot.
        def record() -> str:
            iid = self.outbox.save_incident(incident.cluster, incident.to_json(), now=_iso(now),
                                            channel=posted.channel, ts=posted.ts, details_due=threads)
            self._close(rows, now, report, incident_id=iid, posted=posted)
            return iid

        iid = self._recorded(record)
        if threads:
            self._post_details(StoredIncident(iid, incident, posted.channel, posted.ts), now, report)

    def _post_once(self, message: Message, rows: list[_Row], report: DeliveryReport) -> Posted:
        """Posts the top-level message of these outbox rows once, across crashes: the rows are marked as being
        sent first; rows whose earlier try was cut off by a kill before Slack's answer (the mark is still there)
        are first looked up in the channel by their key, and a message found there is taken as posted."""
        key = _delivery_key(rows)
        if any(r.tried for r in rows):
            since = min(_parse(r.created_at) for r in rows) - _LOOKUP_MARGIN
            found = self.target.find(key, since)
            if found is not None:
                log.info("alert %s was already posted (%s) by a delivery cut off before Slack's answer: not "
                         "posted again", key, found.ts)
                self.metrics.alert_result(self.target.name, "recovered")
                return found
        self.outbox.mark_alerts_sending([r.alert_id for r in rows], f"{SENDING_NOTE} (key {key})")
        posted = self.target.post(message, key=key)
        self.metrics.alert_result(self.target.name, "sent")
        report.sent += 1
        return posted

    def _post_details(self, stored: StoredIncident, now: datetime, report: DeliveryReport) -> bool:
        try:
            self.target.post(render_incident(stored.incident, self.settings.web.external_url, details=True),
                             thread=Posted(stored.channel, stored.ts))
        except AlertError as e:  # the alert itself is out; its details stay due for the next pass
            log.warning("alert %s delivered, its thread details not yet: %s", stored.id, e)
            self.metrics.alert_result(self.target.name, "error")
            return False
        report.sent += 1
        self._recorded(lambda: self.outbox.details_posted(stored.id, _iso(now)))
        return True

    def _details_left_over(self, now: datetime, report: DeliveryReport) -> None:
        """Thread details an earlier pass could not post (only after a pass that failed nowhere)."""
        if not self.target.threads:
            return
        for record in self.outbox.details_due():
            stored = StoredIncident.of(record)
            if stored is None or not self._post_details(stored, now, report):
                return

    def _deliver_resolved(self, batch: list[_Row], now: datetime, report: DeliveryReport) -> None:
        by_incident: dict[str, list[_Row]] = defaultdict(list)
        found: dict[str, StoredIncident] = {}
        for r in batch:
            stored = StoredIncident.of(self.outbox.incident_of_event(str(r.event.id)))
            if stored is None:
                self._close([r], now, report, note="its opening was not alerted")
                continue
            if stored.incident.kind == "flapping" or self._in_flap_quiet(r):
                self._close([r], now, report, note="flapping: quiet until stable")
                continue
            by_incident[stored.id].append(r)
            found[stored.id] = stored
        for iid, rows in by_incident.items():
            stored = found[iid]
            run_id = rows[0].event.resolved_run
            ids = {str(r.event.id) for r in rows}
            resolution = rows[0].event.resolution or "resolved"
            newly: list[FlowLine] = []
            flows = []
            for f in stored.incident.flows:
                left = tuple(e for e in f.events if e not in ids)
                if f.resolution is None and not left and left != f.events:
                    f = replace(f, events=left, resolution=resolution)
                    newly.append(f)
                else:
                    f = replace(f, events=left)
                flows.append(f)
            runs = stored.incident.resolved_runs + ((run_id,) if run_id and newly else ())
            incident = replace(stored.incident, flows=tuple(flows), resolved_runs=runs)
            if newly:
                where = Posted(stored.channel, stored.ts)
                if self.target.threads and stored.ts:
                    self.target.update(where, render_incident(incident, self.settings.web.external_url))
                    self.target.post(render_resolution(incident, newly, run_id), thread=where)
                else:
                    self.target.post(render_resolution(incident, newly, run_id))
                self.metrics.alert_result(self.target.name, "sent")
                report.sent += 1

            def record(iid=iid, incident=incident, rows=rows) -> None:
                self.outbox.update_incident(iid, incident.to_json(), now=_iso(now))
                self._close(rows, now, report, incident_id=iid)

            self._recorded(record)

    # ------------------------------------------------------------------------------------- flapping
    def _flapping(self, cluster: str, flow_key: str, at: str) -> str | None:
        """None: alert normally; "start": this opening makes the flow flapping; "quiet": a notice is in force."""
        cfg = self.settings.alert
        notice = self.outbox.flapping_notice(cluster, flow_key)
        # Openings that were never alerts (refused <-> timeout, frequent where the kernel rate-limits a REJECTing
        # CNI's ICMP errors) are no flapping: counting them would turn the flow's next real drift into one.
        times = self.outbox.flow_times(cluster, flow_key, unless_note=BLOCKED_MODE_NOTE)
        t = _parse(at)
        if notice is not None and notice.ended_at is None:
            earlier = [x for o, r in times for x in (o, r) if x is not None and _parse(x) < t]
            last = max(earlier, key=_parse) if earlier else None
            if last is None or self.outbox.count_runs(cluster, last, at) <= cfg.flap_quiet_runs:
                return "quiet"
            self.outbox.end_flapping(notice.id, at)
            return None
        start = t - timedelta(seconds=cfg.flap_window_seconds)
        if notice is not None and notice.ended_at is not None:
            start = max(start, _parse(notice.ended_at))  # a flow stable again starts counting afresh
        opens = {o for o, _ in times if start <= _parse(o) <= t}
        return "start" if len(opens) >= cfg.flap_opens > 0 else None

    def _in_flap_quiet(self, row: _Row) -> bool:
        notice = self.outbox.flapping_notice(row.event.cluster, row.event.flow_key)
        return notice is not None and notice.ended_at is None

    # --------------------------------------------------------------------------------------- failure
    def _failed(self, e: AlertError, rows: list[_Row], now: datetime, report: DeliveryReport) -> None:
        code = error_code(e)
        ids = [r.alert_id for r in rows]
        if code in CONFIG_ERRORS:
            # Loud once: retrying cannot help until someone fixes the token or channel (and restarts).
            self.halted = report.halted = str(e)
            log.error("ALERTS HALTED: %s; %d alert(s) stay queued until the Slack settings are fixed "
                      "(NETPOL_DRIFT_SLACK_TOKEN / slack.channel / NETPOL_DRIFT_SLACK_WEBHOOK_URL)", e, len(ids))
            self.metrics.alert_result(self.target.name, "config_error")
            self._keep(ids, str(e), now)
            report.failed += len(ids)
            return
        attempts = max((r.attempts for r in rows), default=0)
        delay = min(self.settings.alert.retry_max_seconds, 15 * 2 ** min(attempts, 10))
        retry_at = now + timedelta(seconds=max(delay, e.retry_after))  # never before Slack said it may
        log.warning("alert delivery failed, %d alert(s) stay queued, next try at %s: %s", len(ids),
                    _iso(retry_at), e)
        self.metrics.alert_result(self.target.name, "error")
        self._keep(ids, str(e), retry_at)
        report.failed += len(ids)

    def _keep(self, ids: Sequence[str], error: str, retry_at: datetime) -> None:
        for i in ids:
            self.outbox.mark_alert_failed(i, error, next_attempt_at=_iso(retry_at))

    def _record_queue(self, now: datetime) -> None:
        depth, oldest = self.outbox.alert_queue()
        age = max(0.0, (now - _parse(oldest)).total_seconds()) if oldest else 0.0
        self.metrics.alert_queue(depth, age)


class AlertDelivery:
    """What `serve` plugs in: `deliver(now)` after every run and on a timer. Builds the sender on first use
    (the store is the leader's; followers never get here) and again when slack/alert/web settings change on
    reload. A wrong target setting (a token without a channel) is said once and alerts stay queued."""

    def __init__(self, open_store: Callable[[], Store], settings: Callable[[], Settings],
                 metrics: AlertMetrics | None = None) -> None:
        self._open_store, self._settings, self._metrics = open_store, settings, metrics
        self._sender: AlertSender | None = None
        self._built_for: tuple | None = None
        self._waiting = False  # the database was not there at the last pass (said once)
        self._lock = threading.Lock()

    def deliver(self, now: datetime) -> DeliveryReport | None:
        with self._lock:
            s = self._settings()
            key = (s.slack, s.alert, s.web, s.secrets)
            if key != self._built_for:  # first use, or a reload changed how alerts go out
                self._built_for = key
                try:
                    target = make_target(s)
                except AlertError as e:
                    log.error("ALERTS HALTED: %s; alerts stay queued", e)
                    self._sender = None
                    return None
                try:
                    store = self._open_store()
                except StoreError as e:  # the leader's database is not there yet: the next pass tries again
                    log.log(logging.DEBUG if self._waiting else logging.WARNING,
                            "alert delivery waits for the database: %s", e)
                    self._built_for, self._waiting = None, True
                    return None
                self._waiting = False
                self._sender = AlertSender(store, target, s, self._metrics)
                self._sender.start(now)
            sender = self._sender
        return sender.deliver(now) if sender is not None else None

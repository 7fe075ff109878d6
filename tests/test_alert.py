"""Slack alerts end to end below the service: real store (SQLite and PostgreSQL), real slack_sdk, and a real
local HTTP stand-in of the Slack Web API and webhooks (tests/slack_standin.py).

Runs are judged by compare.judge and saved by the store exactly as `run` does, so the outbox rows under test
are the ones production writes; only the probe outcomes are scripted.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import UTC, datetime, timedelta

import pytest

from monitor.alert import (
    MAX_BLOCKS,
    AlertSender,
    BotTarget,
    FlowLine,
    Incident,
    LogTarget,
    Message,
    WebhookTarget,
    make_target,
    render_incident,
)
from monitor.compare import judge
from monitor.errors import AlertError
from monitor.models import FlowResult, Outcome, Run, Verdict
from monitor.settings import AlertSettings, Secrets, Settings, SlackSettings, WebSettings
from monitor.snapshot import snapshot_digest
from monitor.store import Store
from tests.slack_standin import TOKEN, SlackStandin, block_kit_problems
from tests.test_history import snap

A, D = Verdict.ALLOW, Verdict.DENY
WEB_DB = "web-db|shop/web|shop/db|5432/TCP"
T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


class Counted:
    """The metrics side of the sender, counted by hand (monitor.metrics has the Prometheus one)."""

    def __init__(self) -> None:
        self.results: list[tuple[str, str]] = []
        self.queue: tuple[int, float] | None = None

    def alert_result(self, channel: str, result: str) -> None:
        self.results.append((channel, result))

    def alert_queue(self, depth: int, oldest_seconds: float) -> None:
        self.queue = (depth, oldest_seconds)


def outcome_verdict(o: Outcome) -> Verdict:
    return A if o is Outcome.CONNECTED else D


def results(web_db: Outcome, extra: int = 0) -> tuple[FlowResult, ...]:
    out = [FlowResult("web-db", "shop/web", "shop/db", 5432, "TCP", D, D, web_db, outcome_verdict(web_db), None, 1,
                      "denied: NetworkPolicy shop/deny-db selects shop/db for ingress and no rule allows shop/web"),
           FlowResult("db-web", "shop/db", "shop/web", 80, "TCP", A, A, Outcome.CONNECTED, A, 0.8, 1, "allowed")]
    for i in range(extra):  # more flows that the same edit opens (the 200-flows case)
        o = Outcome.CONNECTED if web_db is Outcome.CONNECTED else Outcome.TIMEOUT
        out.append(FlowResult(f"web-db-{i:03d}", "shop/web", "shop/db", 6000 + i, "TCP", D, D, o,
                              outcome_verdict(o), None, 1, "denied: NetworkPolicy shop/deny-db"))
    return tuple(out)


def record(store: Store, t: datetime, web_db: Outcome, *, deny: bool = True, extra: int = 0) -> str:
    """One run as run.record_run stores it (re-probes agree with the first probe)."""
    s = snap("shop", deny)
    run = Run("prod", t.isoformat(), t.isoformat(), "schedule", snapshot_digest(s), "sha256:suite",
              results(web_db, extra))
    baseline = store.known_good("prod", "sha256:suite")
    old = store.snapshot(baseline.snapshot_digest) if baseline else None
    rounds = [{r.key: r.outcome for r in run.results}]
    j = judge(run, baseline, old_snapshot=old, new_snapshot=s, open_events=store.open_events("prod"),
              rounds=rounds, settings=Settings().drift, now=t.isoformat())
    return store.save_run(run, now=t.isoformat(), snapshot=s, known_good=j.known_good, transitions=j.transitions)


def settings(**alert) -> Settings:
    return dataclasses.replace(Settings(), slack=SlackSettings(channel="#netpol-alerts"),
                               alert=AlertSettings(**alert), web=WebSettings(external_url="https://drift.example"))


@pytest.fixture
def store(db_url: str):
    with Store.open(db_url, migrate=True) as s:
        yield s


@pytest.fixture
def slack():
    with SlackStandin() as standin:
        yield standin


def bot(slack: SlackStandin, token: str = TOKEN, channel: str = "#netpol-alerts") -> BotTarget:
    return BotTarget(token, channel, slack.base_url)


def top_level(slack: SlackStandin):
    return [r for r in slack.of("chat.postMessage") if not r.body.get("thread_ts")]


def replies(slack: SlackStandin, ts: str):
    return [r for r in slack.of("chat.postMessage") if r.body.get("thread_ts") == ts]


# ------------------------------------------------------------------------------------------- bot token
def test_policy_edit_is_one_message_and_its_revert_updates_it_even_after_a_restart(store, slack) -> None:
    record(store, T0, Outcome.TIMEOUT)  # known-good: db blocked by shop/deny-db
    opened_run = record(store, T0 + timedelta(minutes=5), Outcome.CONNECTED, deny=False)  # policy deleted
    metrics = Counted()
    report = AlertSender(store, bot(slack), settings(), metrics).deliver(T0 + timedelta(minutes=5))

    [msg] = top_level(slack)
    assert report.failed == 0 and slack.rejected == []
    text = msg.text
    assert "shop/web -> shop/db 5432/TCP  blocked -> allowed (connected)" in text
    assert "Cause: NetworkPolicy shop/deny-db removed" in text
    assert f"run {opened_run}" in text and "cluster prod" in text
    blocks = json.dumps(msg.body["blocks"])
    assert f"https://drift.example/runs/{opened_run}" in blocks
    # The drift, the violation and the enforcement-gap-free flow: one flow line, not one per event.
    assert text.count("shop/web -> shop/db") == 1
    [details] = replies(slack, msg.ts)
    assert "now decided by:" in details.text
    assert ("slack", "sent") in metrics.results and metrics.queue == (0, 0.0)
    assert store.pending_alerts() == []

    # A restarted service (new sender, same database) sees the revert and updates the same message.
    record(store, T0 + timedelta(minutes=10), Outcome.TIMEOUT, deny=True)
    AlertSender(store, bot(slack), settings()).deliver(T0 + timedelta(minutes=10))
    [update] = slack.of("chat.update")
    assert update.ts == msg.ts and update.text.startswith("Resolved: reachability drift on prod")
    [reply] = [r for r in replies(slack, msg.ts) if r is not details]
    assert "all flows are back" in reply.text and "shop/web -> shop/db 5432/TCP" in reply.text
    assert len(top_level(slack)) == 1  # nothing new in the channel
    assert store.pending_alerts() == []


def test_a_service_starting_with_drift_open_does_not_alert_it_again(store, slack) -> None:
    record(store, T0, Outcome.TIMEOUT)
    record(store, T0 + timedelta(minutes=5), Outcome.CONNECTED, deny=False)
    AlertSender(store, bot(slack), settings()).deliver(T0 + timedelta(minutes=5))
    # Restart: a new sender; the drift is still there on the next runs.
    sender = AlertSender(store, bot(slack), settings())
    for m in (10, 15):
        record(store, T0 + timedelta(minutes=m), Outcome.CONNECTED, deny=False)
        report = sender.deliver(T0 + timedelta(minutes=m))
        assert report.sent == 0
    assert len(top_level(slack)) == 1 and slack.of("chat.update") == []


def test_refused_timeout_flips_alone_are_history_not_alerts(store, slack) -> None:
    record(store, T0, Outcome.TIMEOUT)
    record(store, T0 + timedelta(minutes=5), Outcome.REFUSED)  # still blocked, now rejected
    report = AlertSender(store, bot(slack), settings()).deliver(T0 + timedelta(minutes=5))
    assert [e.detail for e in store.open_events("prod")] == ["timeout -> refused since known-good"]
    assert slack.received == [] and report.suppressed == 1 and store.pending_alerts() == []
    record(store, T0 + timedelta(minutes=10), Outcome.TIMEOUT)  # and back: its resolution is quiet too
    AlertSender(store, bot(slack), settings()).deliver(T0 + timedelta(minutes=10))
    assert slack.received == []


def test_refused_then_timeout_then_reachable_alerts_the_reachability_drift_with_its_cause(store, slack) -> None:
    """Issue 15 item 5: the blocked-mode change is taken into the baseline quietly; the flow then connecting is
    a drift from that baseline (blocked -> allowed, its cause), not just "expectation newly violated"."""
    record(store, T0, Outcome.REFUSED)
    record(store, T0 + timedelta(minutes=5), Outcome.TIMEOUT)
    sender = AlertSender(store, bot(slack), settings())
    sender.deliver(T0 + timedelta(minutes=5))
    assert slack.received == []
    record(store, T0 + timedelta(minutes=10), Outcome.CONNECTED)
    report = sender.deliver(T0 + timedelta(minutes=10))
    [msg] = top_level(slack)
    text = msg.text
    assert "shop/web -> shop/db 5432/TCP  blocked -> allowed (connected)" in text, text
    assert "Cause: dataplane: no policy or label changed" in text and "newly violated" not in text
    # The refused -> timeout event closed as accepted, quietly (its opening was never alerted).
    assert report.suppressed == 1 and store.pending_alerts() == []
    assert sorted(e.kind for e in store.open_events("prod")) == ["drift", "gap", "violation"]


def test_blocked_mode_changes_alert_when_asked(store, slack) -> None:
    record(store, T0, Outcome.TIMEOUT)
    record(store, T0 + timedelta(minutes=5), Outcome.REFUSED)
    AlertSender(store, bot(slack), settings(on_blocked_mode_change=True)).deliver(T0 + timedelta(minutes=5))
    [msg] = top_level(slack)
    assert "blocked (timeout) -> blocked (refused)" in msg.text
    assert "dataplane: no policy or label changed" in msg.text


def test_two_hundred_flows_of_one_edit_are_one_message_within_slack_limits(store, slack) -> None:
    record(store, T0, Outcome.TIMEOUT, extra=200)
    record(store, T0 + timedelta(minutes=5), Outcome.CONNECTED, deny=False, extra=200)
    AlertSender(store, bot(slack), settings()).deliver(T0 + timedelta(minutes=5))
    assert slack.rejected == []
    [msg] = top_level(slack)
    assert "201 flows changed" in msg.body["blocks"][0]["text"]["text"]
    assert "…and 191 more" in msg.text
    [details] = replies(slack, msg.ts)
    assert len(details.body["blocks"]) <= MAX_BLOCKS
    shown = details.text.count("->") + sum(b["text"]["text"].count(" -> ")
                                                  for b in details.body["blocks"] if b["type"] == "section")
    assert shown > 0 and block_kit_problems(details.body) == []


def test_render_cuts_to_slack_limits_with_and_n_more() -> None:
    flows = tuple(FlowLine(f"c|ns-{i}/a-very-long-workload-name-{'x' * 40}|ns/b|80/TCP", f"ns-{i}/a{'x' * 60}",
                           "ns/b", "80/TCP", "blocked -> allowed (connected)", "p" * 500, ("drift",), (str(i),))
                  for i in range(2000))
    incident = Incident("prod-" + "c" * 200, "7", "NetworkPolicy shop/x removed " * 200, "2026-11-30T08:00:00", flows)
    for details in (False, True):
        msg = render_incident(incident, "https://drift.example", details=details)
        body = {"text": msg.text, "blocks": list(msg.blocks)}
        assert block_kit_problems(body) == []
        assert "more" in msg.blocks[-2]["text"]["text"] and len(msg.text) <= 3000


# ------------------------------------------------------------------------------------ webhook and logs
def test_webhook_posts_one_message_per_alert(store, slack) -> None:
    record(store, T0, Outcome.TIMEOUT)
    record(store, T0 + timedelta(minutes=5), Outcome.CONNECTED, deny=False)
    sender = AlertSender(store, WebhookTarget(slack.webhook_url), settings())
    sender.deliver(T0 + timedelta(minutes=5))
    record(store, T0 + timedelta(minutes=10), Outcome.TIMEOUT)
    sender.deliver(T0 + timedelta(minutes=10))
    opened, resolved = slack.of("webhook")
    assert "blocked -> allowed (connected)" in opened.text and "now decided by:" in opened.text
    assert resolved.text.startswith("Resolved by run")
    assert slack.rejected == []


def test_without_slack_the_same_content_goes_to_structured_log_lines(store, caplog) -> None:
    record(store, T0, Outcome.TIMEOUT)
    record(store, T0 + timedelta(minutes=5), Outcome.CONNECTED, deny=False)
    target = make_target(Settings())
    assert isinstance(target, LogTarget)
    with caplog.at_level(logging.WARNING, logger="monitor.alert"):
        AlertSender(store, target, settings()).deliver(T0 + timedelta(minutes=5))
    [line] = [r.getMessage() for r in caplog.records if r.getMessage().startswith("alert ")]
    body = json.loads(line[len("alert "):])
    assert "shop/web -> shop/db 5432/TCP  blocked -> allowed (connected)" in body["text"]
    assert store.pending_alerts() == []


def test_a_wrong_token_is_said_once_at_start_up_and_nothing_is_tried(store, slack, caplog) -> None:
    record(store, T0, Outcome.TIMEOUT)
    record(store, T0 + timedelta(minutes=5), Outcome.CONNECTED, deny=False)
    sender = AlertSender(store, bot(slack, token="xoxb-revoked"), settings())
    with caplog.at_level(logging.INFO, logger="monitor.alert"):
        sender.start(T0)
        report = sender.deliver(T0 + timedelta(minutes=5))
    assert [r.method for r in slack.received] == [] and slack.requests == 1  # auth.test only
    assert report.halted == "Slack auth.test failed: invalid_auth" and len(store.pending_alerts()) == 3
    ok = AlertSender(store, bot(slack), settings())
    with caplog.at_level(logging.INFO, logger="monitor.alert"):
        ok.start(T0)
    assert "alerts: Slack bot token, channel #netpol-alerts (check: netpol-drift)" in caplog.text


def test_the_standin_rejects_what_slack_rejects(slack) -> None:
    """The stand-in must be able to fail a test: oversized blocks and a missing fallback come back as errors."""
    target = bot(slack)
    too_many = tuple({"type": "section", "text": {"type": "mrkdwn", "text": "x"}} for _ in range(51))
    for message, problem in [
        (Message("t", too_many), "51 blocks (max 50)"),
        (Message("t", ({"type": "header", "text": {"type": "plain_text", "text": "h" * 151}},)), "max 150"),
        (Message("t", ({"type": "section", "text": {"type": "mrkdwn", "text": "s" * 3001}},)), "max 3000"),
    ]:
        with pytest.raises(AlertError) as e:
            target.post(message)
        assert str(e.value) == "Slack chat.postMessage failed: invalid_blocks"
        assert problem in slack.rejected[-1][1]
    assert slack.received == []
    # (slack_sdk itself warns before sending a message without `text`; the stand-in checks it for webhooks)
    assert block_kit_problems({"text": "", "blocks": []}) == ["no plain-text fallback (text)"]


def test_a_token_without_a_channel_is_a_config_error() -> None:
    s = dataclasses.replace(Settings(), secrets=Secrets(slack_token="xoxb-1"))
    with pytest.raises(AlertError) as e:
        make_target(s)
    assert str(e.value) == "NETPOL_DRIFT_SLACK_TOKEN is set but slack.channel is not: set the channel to post to"


# -------------------------------------------------------------------------------------------- delivery
def test_429_and_500_are_retried_by_slack_sdk_and_delivered_once(store, slack) -> None:
    record(store, T0, Outcome.TIMEOUT)
    record(store, T0 + timedelta(minutes=5), Outcome.CONNECTED, deny=False)
    slack.fail_next("429:1", "500")
    report = AlertSender(store, bot(slack), settings()).deliver(T0 + timedelta(minutes=5))
    assert report.failed == 0 and len(top_level(slack)) == 1 and slack.requests == 4  # 2 failures, post, details


def test_down_then_429_then_500_arrives_once_after_recovery_also_across_a_restart(store, slack) -> None:
    record(store, T0, Outcome.TIMEOUT)
    record(store, T0 + timedelta(minutes=5), Outcome.CONNECTED, deny=False)
    queued = len(store.pending_alerts())  # drift, violation and gap of the one flow
    slack.stop()  # connection refused
    metrics = Counted()
    report = AlertSender(store, bot(slack), settings(), metrics).deliver(T0 + timedelta(minutes=5))
    assert report.failed == queued == 3 and ("slack", "error") in metrics.results
    a = store.pending_alerts()[0]
    assert a.attempts == 1 and "Slack chat.postMessage failed" in a.last_error
    assert metrics.queue == (3, 0.0)
    # Backoff: nothing is due a second later.
    assert store.due_alerts((T0 + timedelta(minutes=5, seconds=1)).isoformat()) == []
    slack.start()
    slack.fail_next("429:1", "429:1", "429:1", "500", "500", "500")  # more than slack_sdk retries at once
    later = T0 + timedelta(minutes=6)
    sender = AlertSender(store, bot(slack), settings())
    sender.deliver(later)  # three 429s: slack_sdk's retries run out
    sender.deliver(later + timedelta(minutes=10))  # three 500s
    assert top_level(slack) == [] and len(store.pending_alerts()) == queued
    assert store.pending_alerts()[0].attempts == 3 and slack.requests == 6
    # A restarted service, Slack healthy again: exactly one message.
    AlertSender(store, bot(slack), settings()).deliver(later + timedelta(minutes=20))
    assert len(top_level(slack)) == 1 and store.pending_alerts() == []
    AlertSender(store, bot(slack), settings()).deliver(later + timedelta(minutes=30))
    assert len(top_level(slack)) == 1


def test_retry_after_is_waited_out_before_the_retry(store, slack) -> None:
    record(store, T0, Outcome.TIMEOUT)
    record(store, T0 + timedelta(minutes=5), Outcome.CONNECTED, deny=False)
    slack.fail_next("429:2")
    report = AlertSender(store, bot(slack), settings()).deliver(T0 + timedelta(minutes=5))
    assert report.failed == 0 and len(top_level(slack)) == 1
    (limited, _), (retried, _) = slack.attempts[:2]
    assert retried - limited >= 2.0  # Slack said 2 s: not one request sooner


def test_a_long_retry_after_is_left_to_the_outbox_not_slept_in_the_pass(store, slack) -> None:
    """Retry-After 600: slack_sdk would sleep ten minutes inside the delivery pass (holding every later alert);
    the pass ends at once instead and the alerts are next due when Slack said, then go out once."""
    import time

    record(store, T0, Outcome.TIMEOUT)
    record(store, T0 + timedelta(minutes=5), Outcome.CONNECTED, deny=False)
    slack.fail_next("429:600")
    now = T0 + timedelta(minutes=5)
    began = time.monotonic()
    report = AlertSender(store, bot(slack), settings(retry_max_seconds=60)).deliver(now)
    assert time.monotonic() - began < 60  # a hang guard: the pass did not sleep the 600 s
    assert report.failed == 3 and slack.requests == 1 and top_level(slack) == []
    assert store.due_alerts((now + timedelta(seconds=599)).isoformat()) == []  # not before Slack said
    assert len(store.due_alerts((now + timedelta(seconds=601)).isoformat())) == 3
    AlertSender(store, bot(slack), settings()).deliver(now + timedelta(seconds=601))
    assert len(top_level(slack)) == 1 and store.pending_alerts() == []


def test_slack_that_takes_the_request_and_never_answers_keeps_the_alerts_queued(store, slack) -> None:
    record(store, T0, Outcome.TIMEOUT)
    record(store, T0 + timedelta(minutes=5), Outcome.CONNECTED, deny=False)
    slack.fail_next("hang:3", "hang:3", "hang:3")
    metrics = Counted()
    report = AlertSender(store, BotTarget(TOKEN, "#netpol-alerts", slack.base_url, timeout=1), settings(),
                         metrics).deliver(T0 + timedelta(minutes=5))
    assert report.failed == 3 and top_level(slack) == [] and ("slack", "error") in metrics.results
    assert "Slack chat.postMessage failed" in store.pending_alerts()[0].last_error
    AlertSender(store, bot(slack), settings()).deliver(T0 + timedelta(hours=1))
    assert len(top_level(slack)) == 1 and store.pending_alerts() == []
    AlertSender(store, bot(slack), settings()).deliver(T0 + timedelta(hours=2))
    assert len(top_level(slack)) == 1


@pytest.mark.parametrize("error", ["invalid_auth", "channel_not_found"])
def test_config_errors_are_not_retried_reported_once_and_kept_queued(store, slack, caplog, error) -> None:
    record(store, T0, Outcome.TIMEOUT)
    record(store, T0 + timedelta(minutes=5), Outcome.CONNECTED, deny=False)
    target = bot(slack, token="xoxb-wrong") if error == "invalid_auth" else bot(slack, channel="#gone")
    metrics = Counted()
    sender = AlertSender(store, target, settings(), metrics)
    with caplog.at_level(logging.WARNING):
        first = sender.deliver(T0 + timedelta(minutes=5))
        sender.deliver(T0 + timedelta(minutes=30))
        sender.deliver(T0 + timedelta(minutes=60))
    assert slack.requests == 1  # not retried: neither by slack_sdk nor by the next passes
    assert first.halted == f"Slack chat.postMessage failed: {error}"
    loud = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(loud) == 1 and "ALERTS HALTED" in loud[0].getMessage()
    assert metrics.results.count(("slack", "config_error")) == 1
    assert len(store.pending_alerts()) == 3  # kept for the fixed configuration
    AlertSender(store, bot(slack), settings()).deliver(T0 + timedelta(minutes=61))
    assert len(top_level(slack)) == 1 and store.pending_alerts() == []


def test_tokens_and_webhook_urls_never_reach_the_logs(store, slack, caplog) -> None:
    secret = "xoxb-9999-never-log-me"
    slack.token = secret
    record(store, T0, Outcome.TIMEOUT)
    record(store, T0 + timedelta(minutes=5), Outcome.CONNECTED, deny=False)
    with caplog.at_level(logging.DEBUG):
        slack.fail_next("500", "500", "500")
        AlertSender(store, BotTarget(secret, "#netpol-alerts", slack.base_url), settings()).deliver(T0)
        AlertSender(store, BotTarget(secret, "#netpol-alerts", slack.base_url), settings()).deliver(
            T0 + timedelta(hours=1))
        slack.stop()
        AlertSender(store, WebhookTarget(slack.webhook_url), settings()).deliver(T0 + timedelta(hours=2))
        record(store, T0 + timedelta(hours=2), Outcome.TIMEOUT)
        slack.start()
        AlertSender(store, WebhookTarget(slack.webhook_url), settings()).deliver(T0 + timedelta(hours=3))
    assert len(slack.received) >= 3 and any(r.method == "webhook" for r in slack.received)
    text = "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records)
    assert "Sending a request" in text or "Received the following response" in text  # debug logs were on
    assert secret not in text and "standinwebhooksecret" not in text
    for target in (BotTarget(secret, "#c"), WebhookTarget(slack.webhook_url)):
        assert secret not in repr(target) and "standinwebhooksecret" not in repr(target)


# -------------------------------------------------------------------------------------------- flapping
def test_a_flapping_flow_gets_one_message_then_quiet_until_stable(store, slack) -> None:
    record(store, T0, Outcome.TIMEOUT)
    sender = AlertSender(store, bot(slack), settings(flap_quiet_runs=3))
    t = T0
    for _ in range(5):  # open, resolve, five times within an hour
        t += timedelta(minutes=5)
        record(store, t, Outcome.CONNECTED)
        sender.deliver(t)
        t += timedelta(minutes=5)
        record(store, t, Outcome.TIMEOUT)
        sender.deliver(t)
    heads = [m.body["blocks"][0]["text"]["text"] for m in top_level(slack)]
    assert len(heads) == 3 and heads[2].startswith("Flapping on prod: shop/web -> shop/db 5432/TCP")
    assert len(slack.of("chat.update")) == 2  # the first two incidents resolved normally
    for _ in range(3):  # stable for flap_quiet_runs runs
        t += timedelta(minutes=5)
        record(store, t, Outcome.TIMEOUT)
        sender.deliver(t)
    t += timedelta(minutes=5)
    record(store, t, Outcome.CONNECTED)
    sender.deliver(t)
    assert len(top_level(slack)) == 4 and "Reachability drift" in top_level(slack)[3].text
    assert store.pending_alerts() == []


def test_refused_timeout_flips_do_not_count_toward_flapping(store, slack) -> None:
    """Issue 15 item 5: under ICMP rate limiting a blocked flow flips refused <-> timeout often (history, no
    alert). Those quiet openings must not make the flow's next real drift a "Flapping" message."""
    t = T0
    record(store, t, Outcome.REFUSED)
    sender = AlertSender(store, bot(slack), settings())
    for outcome in (Outcome.TIMEOUT, Outcome.REFUSED, Outcome.TIMEOUT, Outcome.REFUSED):
        t += timedelta(minutes=5)
        record(store, t, outcome)
        sender.deliver(t)
    assert slack.received == []
    t += timedelta(minutes=5)
    record(store, t, Outcome.CONNECTED)
    sender.deliver(t)
    [msg] = top_level(slack)
    assert msg.text.startswith("Reachability drift on prod"), msg.text


def test_delivery_for_serve_builds_the_sender_once_and_again_after_a_settings_change(store, slack, caplog) -> None:
    from monitor.alert import AlertDelivery

    record(store, T0, Outcome.TIMEOUT)
    record(store, T0 + timedelta(minutes=5), Outcome.CONNECTED, deny=False)
    current = {"s": dataclasses.replace(Settings(), secrets=Secrets(slack_token=TOKEN))}  # no channel yet
    opened = []

    def open_store() -> Store:
        opened.append(1)
        return store

    delivery = AlertDelivery(open_store, lambda: current["s"])
    with caplog.at_level(logging.ERROR, logger="monitor.alert"):
        assert delivery.deliver(T0) is None and delivery.deliver(T0) is None
    assert caplog.text.count("ALERTS HALTED") == 1 and slack.received == []
    slack_settings = SlackSettings(channel="#netpol-alerts", base_url=slack.base_url)
    current["s"] = dataclasses.replace(settings(), slack=slack_settings, secrets=Secrets(slack_token=TOKEN))
    report = delivery.deliver(T0 + timedelta(minutes=5))
    assert report.sent == 2 and len(top_level(slack)) == 1 and opened == [1]
    assert delivery.deliver(T0 + timedelta(minutes=6)).sent == 0 and opened == [1]


def test_thread_details_that_fail_are_posted_by_a_later_pass_once(store, slack) -> None:
    record(store, T0, Outcome.TIMEOUT)
    record(store, T0 + timedelta(minutes=5), Outcome.CONNECTED, deny=False)
    sender = AlertSender(store, bot(slack), settings())
    # The message goes out, then Slack fails three times: slack_sdk gives up on the thread reply.
    original = sender.target.post

    def post_then_fail(message, thread=None, key=None):
        if thread is not None and not slack.of("chat.postMessage")[1:]:
            slack.fail_next("500", "500", "500")
        return original(message, thread, key)

    sender.target.post = post_then_fail
    report = sender.deliver(T0 + timedelta(minutes=5))
    [msg] = top_level(slack)
    assert replies(slack, msg.ts) == [] and report.sent == 1 and store.pending_alerts() == []
    assert [r.id for r in store.details_due()] != []
    AlertSender(store, bot(slack), settings()).deliver(T0 + timedelta(minutes=6))  # a restart, too
    [details] = replies(slack, msg.ts)
    assert details.text.startswith("Details: Reachability drift on prod")
    AlertSender(store, bot(slack), settings()).deliver(T0 + timedelta(minutes=7))
    assert len(replies(slack, msg.ts)) == 1 and store.details_due() == []


def test_a_delivery_killed_before_slacks_answer_is_found_in_the_channel_not_posted_twice(store, slack) -> None:
    record(store, T0, Outcome.TIMEOUT)
    record(store, T0 + timedelta(minutes=5), Outcome.CONNECTED, deny=False)

    class Killed(BotTarget):
        """Slack gets the message, the process dies before the answer (SIGKILL mid-delivery)."""

        def post(self, message, thread=None, key=None):
            super().post(message, thread, key)
            raise SystemExit("killed")

    with pytest.raises(SystemExit):
        AlertSender(store, Killed(TOKEN, "#netpol-alerts", slack.base_url), settings()).deliver(
            T0 + timedelta(minutes=5))
    [msg] = top_level(slack)
    assert msg.body["metadata"]["event_type"] == "netpol_drift_alert"
    assert all(a.attempts == 0 and a.last_error.startswith("being sent") for a in store.pending_alerts())
    # The restarted service finds the message by its key in the channel's history: no second one; it threads
    # the details under the message that is there and closes the alerts.
    metrics = Counted()
    report = AlertSender(store, bot(slack), settings(), metrics).deliver(T0 + timedelta(minutes=6))
    assert len(top_level(slack)) == 1 and report.failed == 0
    assert ("slack", "recovered") in metrics.results and ("slack", "sent") not in metrics.results
    [details] = replies(slack, msg.ts)
    assert "now decided by:" in details.body["text"]
    assert store.pending_alerts() == [] and slack.rejected == []
    # A resolution later updates that same message.
    record(store, T0 + timedelta(minutes=10), Outcome.TIMEOUT, deny=True)
    AlertSender(store, bot(slack), settings()).deliver(T0 + timedelta(minutes=10))
    [update] = slack.of("chat.update")
    assert update.ts == msg.ts


def test_an_interrupted_delivery_that_never_reached_slack_is_posted_once(store, slack) -> None:
    record(store, T0, Outcome.TIMEOUT)
    record(store, T0 + timedelta(minutes=5), Outcome.CONNECTED, deny=False)

    class KilledBefore(BotTarget):
        def post(self, message, thread=None, key=None):
            raise SystemExit("killed before the request left")

    with pytest.raises(SystemExit):
        AlertSender(store, KilledBefore(TOKEN, "#netpol-alerts", slack.base_url), settings()).deliver(
            T0 + timedelta(minutes=5))
    metrics = Counted()
    AlertSender(store, bot(slack), settings(), metrics).deliver(T0 + timedelta(minutes=6))
    assert len(top_level(slack)) == 1 and ("slack", "sent") in metrics.results
    assert [r.method for r in slack.received].count("chat.postMessage") == 2  # the message and its details
    assert store.pending_alerts() == []


def test_a_bot_that_cannot_read_the_channel_posts_an_interrupted_alert_and_says_so(store, slack, caplog) -> None:
    record(store, T0, Outcome.TIMEOUT)
    record(store, T0 + timedelta(minutes=5), Outcome.CONNECTED, deny=False)
    ids = [a.id for a in store.pending_alerts()]
    store.mark_alerts_sending(ids, "being sent: no answer from Slack yet")
    slack.fail_next("missing_scope")  # conversations.list without channels:read
    with caplog.at_level(logging.WARNING):
        AlertSender(store, bot(slack), settings()).deliver(T0 + timedelta(minutes=6))
    assert len(top_level(slack)) == 1 and store.pending_alerts() == []
    assert caplog.text.count("cannot check whether an interrupted alert already reached Slack") == 1

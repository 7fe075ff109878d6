"""Hostile input (issue 15 item 7, what tests/test_fuzz_inputs.py does not cover): YAML alias bombs and names
and labels that carry markup.

- A "billion laughs" document (and an alias that contains itself) in a config, a suite or a manifest is one
  line and exit 2, within a hard memory and time limit (a subprocess under RLIMIT_AS and a timeout; before
  the loader measured aliases, the config case took minutes and gigabytes).
- Names and labels with unicode, quotes, HTML, Slack control sequences and 253-character values go through the
  real store (SQLite and PostgreSQL), the real slack_sdk to the Slack stand-in and the dashboard on a real
  socket and in headless Chromium, and come out intact where they are data and escaped where they are markup.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from monitor.alert import AlertSender, BotTarget
from monitor.compare import judge
from monitor.models import (
    FlowResult,
    LabelSelector,
    Namespace,
    NetworkPolicy,
    Outcome,
    Pod,
    Run,
    Snapshot,
    Verdict,
    labels_of,
)
from monitor.settings import Settings
from monitor.snapshot import snapshot_digest
from monitor.store import Store
from tests.dashboard_seed import launch, serving
from tests.slack_standin import TOKEN, SlackStandin, shown, unescaped
from tests.test_alert import settings as alert_settings

REPO = Path(__file__).resolve().parents[1]
SHOP = REPO / "config" / "examples" / "shop"
MEMORY_LIMIT = 1 << 30  # bytes of address space for the CLI under test: a bomb expanded would need far more
TIME_LIMIT = 60  # seconds: a hang guard, not a speed target


# ------------------------------------------------------------------------------------------- alias bombs
def bomb(indent: int, leaf: str = "lol", levels: int = 9) -> str:
    """Nine anchors, each a list of nine aliases of the one before: 9^9 leaves once expanded."""
    lines = [f"- &a0 [{', '.join([leaf] * 9)}]"]
    lines += [f"- &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(" " * indent + line for line in lines)


def cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    def limits() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))

    return subprocess.run([sys.executable, "-m", "monitor", *argv], cwd=cwd, capture_output=True, text=True,
                          timeout=TIME_LIMIT, preexec_fn=limits, check=False)


BOMB_MESSAGE = "not valid YAML: its aliases expand to more than 100,000 nodes (an alias bomb?)"


def test_an_alias_bomb_in_a_config_is_one_line_within_memory_and_time(tmp_path: Path) -> None:
    # The shape that hung: a list the settings validator walks item by item (pod CIDRs, here 9^9 of them).
    config = tmp_path / "netpol-drift.yaml"
    config.write_text(f"cluster:\n  name: c\n  pod_cidrs:\n{bomb(4, '10.0.0.0/8')}\n")
    proc = cli("serve", "--config", str(config), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    [line] = proc.stderr.splitlines()
    assert line.startswith(f"netpol-drift: error: {config}: {BOMB_MESSAGE} (line ")


def test_an_alias_bomb_in_a_suite_or_a_manifest_is_one_line_within_memory_and_time(tmp_path: Path) -> None:
    manifests = tmp_path / "m"
    manifests.mkdir()
    for part in SHOP.glob("*.yaml"):
        if part.name != "suite.yaml":
            (manifests / part.name).write_text(part.read_text())
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"name: s\ncases:\n- name: c\n  from: {{namespace: shop}}\n  to: {{namespace: shop}}\n"
                     f"  ports:\n{bomb(4, '80')}\n  expect: allow\n")
    proc = cli("check", "--manifests", str(manifests), "--suite", str(suite), cwd=tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr[-2000:]
    assert proc.stderr.startswith(f"netpol-drift: error: {suite}: {BOMB_MESSAGE} (line ")

    (manifests / "bomb.yaml").write_text("apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: shop\n"
                                         f"  annotations:\n    x:\n{bomb(6)}\nspec:\n  containers: [{{name: c}}]\n")
    proc = cli("matrix", "--manifests", str(manifests), "--port", "80/TCP", cwd=tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr[-2000:]
    assert proc.stderr.startswith(f"netpol-drift: error: {manifests / 'bomb.yaml'}: {BOMB_MESSAGE} (line ")


@pytest.mark.parametrize("where", ["config", "suite", "manifest"])
def test_an_alias_that_contains_itself_is_one_line(tmp_path: Path, where: str) -> None:
    loop = "&loop [1, *loop]"
    manifests = tmp_path / "m"
    manifests.mkdir()
    suite = tmp_path / "suite.yaml"
    suite.write_text("name: s\ncases: []\n")
    if where == "config":
        path = tmp_path / "c.yaml"
        path.write_text(f"cluster:\n  pod_cidrs: {loop}\n")
        argv = ["serve", "--config", str(path)]
    elif where == "suite":
        path = suite
        path.write_text(f"name: s\ncases: {loop}\n")
        argv = ["check", "--manifests", str(manifests), "--suite", str(suite)]
    else:
        path = manifests / "loop.yaml"
        path.write_text(f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: a, labels: {loop}}}\n")
        argv = ["matrix", "--manifests", str(manifests), "--port", "80/TCP"]
    proc = cli(*argv, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    [line] = proc.stderr.splitlines()
    assert line.startswith(f"netpol-drift: error: {path}: not valid YAML: an alias refers to a node that contains it")


def test_anchors_used_the_ordinary_way_still_load(tmp_path: Path) -> None:
    """A suite that shares a selector through an anchor (what people do with anchors) loads as before."""
    from monitor.suite import load_suite

    path = tmp_path / "suite.yaml"
    path.write_text("name: s\ncases:\n- name: a\n  from: &web {namespace: shop, workload: web}\n"
                    "  to: {namespace: shop, workload: db}\n  port: 5432\n  expect: deny\n"
                    "- name: b\n  from: *web\n  to: {namespace: shop, workload: api}\n  port: 80\n  expect: allow\n")
    suite = load_suite(path)
    assert [c.name for c in suite.cases] == ["a", "b"]
    assert yaml.safe_load(path.read_text())["cases"][1]["from"] == {"namespace": "shop", "workload": "web"}


# -------------------------------------------------------------------------------------- hostile names
SCRIPT = "<script>alert(1)</script>"
CASE = f"web→db \"quoted\" 'single' {SCRIPT} & <!channel> <@U123> ünïcødé 日本"
LONG_POD = ("p" * 61 + ".") * 4 + "x" * 5  # 253 characters: the longest Kubernetes object name
POLICY = f"deny-\"db\"-'x'-{SCRIPT}"
LABEL = f"é<b>bold</b> & {SCRIPT}"
T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


def hostile_snapshot(deny: bool) -> Snapshot:
    policies = [NetworkPolicy("shop", POLICY, LabelSelector(labels_of({"app": "db"})))] if deny else []
    return Snapshot.build(
        namespaces=[Namespace("shop", labels_of({"team": LABEL}))],
        pods=[Pod("shop", LONG_POD, labels_of({"app": "web", **({} if deny else {"note": LABEL})}), "10.0.0.1",
                  workload="Deployment/web"),
              Pod("shop", "db-0", labels_of({"app": "db"}), "10.0.0.2", workload="StatefulSet/db")],
        policies=policies)


def hostile_results(connected: bool) -> tuple[FlowResult, ...]:
    a, d = Verdict.ALLOW, Verdict.DENY
    return (FlowResult(CASE, f"shop/{LONG_POD}", "shop/db-0", 5432, "TCP", d, a if connected else d,
                       Outcome.CONNECTED if connected else Outcome.TIMEOUT, a if connected else d,
                       1.5 if connected else None, 1,
                       explanation=f"policy shop/{POLICY} selects the destination; label note={LABEL}"),)


def save_hostile(store: Store, t: datetime, deny: bool) -> str:
    snap = hostile_snapshot(deny)
    run = Run("prod", t.isoformat(), t.isoformat(), "schedule", snapshot_digest(snap), "sha256:suite",
              hostile_results(not deny))
    baseline = store.known_good("prod", "sha256:suite")
    old = store.snapshot(baseline.snapshot_digest) if baseline else None
    j = judge(run, baseline, old_snapshot=old, new_snapshot=snap, open_events=store.open_events("prod"),
              rounds=[{r.key: r.outcome for r in run.results}], settings=Settings().drift, now=t.isoformat())
    return store.save_run(run, now=t.isoformat(), snapshot=snap, suite_text=f"# {CASE}\n",
                          known_good=j.known_good, transitions=j.transitions)


def test_hostile_names_go_through_store_slack_and_dashboard_intact_and_escaped(db_url: str) -> None:
    with Store.open(db_url, migrate=True) as store, SlackStandin() as slack:
        good = save_hostile(store, T0, deny=True)
        drift = save_hostile(store, T0 + timedelta(minutes=5), deny=False)

        # The store: every value back exactly as it went in (unicode, quotes, markup, 253 characters).
        [result] = store.get_run(drift).results
        assert (result.case, result.source) == (CASE, f"shop/{LONG_POD}") and LABEL in result.explanation
        assert store.snapshot(store.get_run(good).snapshot_digest) == hostile_snapshot(True)
        assert store.suite_text("sha256:suite") == f"# {CASE}\n"
        events = {e.kind: e for e in store.open_events("prod")}  # drift, violation and gap of the one flow
        assert all(e.flow_key.startswith(CASE) for e in events.values())
        assert f"NetworkPolicy shop/{POLICY} removed" in events["drift"].cause.changes

        # Slack: what Slack would render as markup or a mention arrives escaped; shown, it reads as written.
        report = AlertSender(store, BotTarget(TOKEN, "#netpol-alerts", slack.base_url), alert_settings()).deliver(
            T0 + timedelta(minutes=5))
        assert report.sent >= 1 and report.failed == 0 and slack.rejected == []
        for message in slack.of("chat.postMessage"):
            texts = [message.body["text"]] + [b["text"]["text"] for b in message.body["blocks"]
                                              if b["type"] == "section"]
            for text in texts:
                assert SCRIPT not in text and "<!channel>" not in text and "<@U123>" not in text
                assert [u for u in unescaped(text) if not u.startswith("<https://drift.example/")] == []
            assert LONG_POD in message.text and f"label note={LABEL}" in message.text
            assert any(LONG_POD in shown(t) for t in texts[1:])  # the blocks say it as well
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in slack.of("chat.postMessage")[0].body["text"]
        assert f"Cause: NetworkPolicy shop/{POLICY} removed" in slack.of("chat.postMessage")[0].text

        # The dashboard: the HTML holds the names as text (escaped), the JSON API holds them as they are.
        with serving(store) as base:
            with urllib.request.urlopen(f"{base}/runs/{drift}", timeout=10) as r:
                html = r.read().decode()
            assert SCRIPT not in html and "<!channel>" not in html
            assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and LONG_POD in html and "ünïcødé 日本" in html
            with urllib.request.urlopen(f"{base}/api/runs/{drift}", timeout=10) as r:
                api = r.read().decode()
            assert any(CASE in text for text in strings(json.loads(api))) and LONG_POD in api
            with urllib.request.urlopen(f"{base}/snapshots/diff?a={good}&b={drift}", timeout=10) as r:
                diff = r.read().decode()
            assert SCRIPT not in diff and "é&lt;b&gt;bold&lt;/b&gt; &amp; " in diff
            in_browser(base, drift)


def strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        value = [*value.keys(), *value.values()]
    return [s for v in value for s in strings(v)] if isinstance(value, list | tuple) else []


def in_browser(base: str, run_id: str) -> None:
    """Headless Chromium: the case name is text on the page, nothing it holds became an element or ran."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page()
            problems: list[str] = []
            page.on("dialog", lambda d: (problems.append(d.message), d.dismiss()))
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.goto(f"{base}/runs/{run_id}")
            table = page.locator("#flow-table").inner_text()
            assert CASE in table and LONG_POD in table
            assert page.locator("main script, main b").count() == 0
            assert problems == []
        finally:
            browser.close()

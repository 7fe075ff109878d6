"""Settings: defaults, the documented example file, environment overrides, and each bad config's message."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
from pathlib import Path

import pytest

from monitor.errors import InputError
from monitor.settings import NOT_SETTINGS_ENV, Settings, load_settings

EXAMPLE = Path(__file__).resolve().parents[1] / "config" / "netpol-drift.yaml"


def test_documented_example_equals_the_defaults():
    assert load_settings(EXAMPLE, env={}) == Settings()


def test_environment_overrides_the_file_and_secrets_come_only_from_it(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("store: {url: 'sqlite:///a.db'}\nprobe: {per_node: false}\n")
    s = load_settings(cfg, env={"NETPOL_DRIFT_STORE_URL": "sqlite:///b.db", "NETPOL_DRIFT_PROBE_PER_NODE": "true",
                                "NETPOL_DRIFT_SLACK_TOKEN": "xoxb-secret", "PATH": "/bin"})
    assert s.store.url == "sqlite:///b.db"
    assert s.probe.per_node is True
    assert s.secrets.slack_token == "xoxb-secret"
    # Secrets never reach logs: neither repr nor the start-up description shows them.
    assert "xoxb-secret" not in repr(s)
    assert "xoxb-secret" not in "\n".join(s.describe())
    assert "secrets.slack_token = <set>" in s.describe()


def test_settings_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Settings().store.url = "x"  # type: ignore[misc]


BAD = [
    ("unknown section", "colour: red\n", "{f}: colour: unknown key (known: alert, cluster, drift, leader, "
                                         "log_level, probe, report, schedule, slack, store, suite, web)"),
    ("unknown key", "probe: {timeout: 3}\n", "{f}: probe.timeout: unknown key (known: concurrency, image, "
                                            "lease_seconds, namespace, per_node, refused_means, "
                                            "run_deadline_seconds, settle_seconds, tcp_reset_means, "
                                            "timeout_seconds, udp_refused_means)"),
    ("wrong type", "probe: {concurrency: many}\n", "{f}: probe.concurrency: must be an integer, got 'many'"),
    ("bad choice", "probe: {refused_means: maybe}\n",
     "{f}: probe.refused_means: must be one of allow, deny, unknown, got 'maybe'"),
    ("bad UDP choice", "probe: {udp_refused_means: closed}\n",
     "{f}: probe.udp_refused_means: must be one of allow, deny, unknown, got 'closed'"),
    ("bad TCP reset choice", "probe: {tcp_reset_means: unknown}\n",
     "{f}: probe.tcp_reset_means: must be one of skipped, deny, allow, got 'unknown'"),
    ("negative", "schedule: {interval_seconds: -5}\n", "{f}: schedule.interval_seconds: must not be negative, got -5"),
    ("negative outage hold", "drift: {hold_after_api_outage_seconds: -1}\n",
     "{f}: drift.hold_after_api_outage_seconds: must not be negative, got -1.0"),
    ("outage hold not a number", "drift: {hold_after_api_outage_seconds: soon}\n",
     "{f}: drift.hold_after_api_outage_seconds: must be a number, got 'soon'"),
    ("alert flag not a bool", "alert: {on_blocked_mode_change: sometimes}\n",
     "{f}: alert.on_blocked_mode_change: must be true or false, got 'sometimes'"),
    ("alert unknown key", "alert: {flap_runs: 3}\n", "{f}: alert.flap_runs: unknown key (known: flap_opens, "
                                                      "flap_quiet_runs, flap_window_seconds, on_blocked_mode_change, "
                                                      "retry_max_seconds)"),
    ("secret in file", "secrets: {slack_token: x}\n",
     "{f}: secrets: secrets are read only from the environment (NETPOL_DRIFT_*)"),
    ("section not a mapping", "store: sqlite\n", "{f}: store: must be a mapping"),
    ("unknown schedule key", "schedule: {interval: 60}\n",
     "{f}: schedule.interval: unknown key (known: debounce_max_seconds, debounce_seconds, interval_seconds, "
     "jitter_seconds, reload_check_seconds, shutdown_grace_seconds, watch_timeout_seconds)"),
    ("zero interval", "schedule: {interval_seconds: 0}\n",
     "{f}: schedule.interval_seconds: must be more than 0, got 0"),
    ("listen without port", "web: {listen: localhost}\n",
     "{f}: web.listen: must be HOST:PORT with a port from 1 to 65535, got 'localhost'"),
    ("listen port out of range", "web: {listen: ':70000'}\n",
     "{f}: web.listen: must be HOST:PORT with a port from 1 to 65535, got ':70000'"),
    ("renew deadline not below lease", "leader: {lease_seconds: 10, renew_deadline_seconds: 10}\n",
     "{f}: leader.renew_deadline_seconds: must be less than leader.lease_seconds (10) and more than "
     "leader.retry_seconds (2), got 10"),
    ("debounce cap below debounce", "schedule: {debounce_seconds: 5, debounce_max_seconds: 2}\n",
     "{f}: schedule.debounce_max_seconds: must not be less than schedule.debounce_seconds (5), got 2"),
    ("leader flag not a bool", "leader: {enabled: sometimes}\n",
     "{f}: leader.enabled: must be true or false, got 'sometimes'"),
    ("external URL not absolute", "web: {external_url: netpol.example.com}\n",
     "{f}: web.external_url: must be an http:// or https:// URL without query or fragment, "
     "got 'netpol.example.com'"),
    ("external URL with a query", "web: {external_url: 'https://n.example.com/?x=1'}\n",
     "{f}: web.external_url: must be an http:// or https:// URL without query or fragment, "
     "got 'https://n.example.com/?x=1'"),
    ("proxy header not a header name", "web: {trusted_proxy_header: 'X User'}\n",
     "{f}: web.trusted_proxy_header: must be an HTTP header name (letters, digits, '-'), got 'X User'"),
    ("dashboard flag not a bool", "web: {dashboard: maybe}\n",
     "{f}: web.dashboard: must be true or false, got 'maybe'"),
    ("web token in file", "web: {auth_token: abc}\n",
     "{f}: web.auth_token: secrets are read only from the environment (NETPOL_DRIFT_WEB_TOKEN)"),
    ("unknown web key", "web: {port: 80}\n",
     "{f}: web.port: unknown key (known: dashboard, external_url, listen, trusted_proxy_header)"),
    ("not YAML", "store: [\n",
     "{f}: not valid YAML: expected the node content, but found '<stream end>' (line 2, column 1)"),
]


@pytest.mark.parametrize(("what", "text", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_config_is_one_clear_line(tmp_path, what, text, message):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(InputError) as e:
        load_settings(cfg, env={})
    assert str(e.value) == message.format(f=cfg)


def test_unknown_key_in_a_known_section_of_the_environment_is_an_error():
    with pytest.raises(InputError) as e:
        load_settings(None, env={"NETPOL_DRIFT_STORE_URI": "x"})
    assert str(e.value) == ("environment: NETPOL_DRIFT_STORE_URI: unknown setting (known: "
                            "NETPOL_DRIFT_STORE_RETENTION_DAYS, NETPOL_DRIFT_STORE_URL)")
    with pytest.raises(InputError) as e:
        load_settings(None, env={"NETPOL_DRIFT_SLACK_CHANEL": "#x"})
    assert str(e.value) == ("environment: NETPOL_DRIFT_SLACK_CHANEL: unknown setting (known: "
                            "NETPOL_DRIFT_SLACK_BASE_URL, NETPOL_DRIFT_SLACK_CHANNEL, NETPOL_DRIFT_SLACK_TOKEN, "
                            "NETPOL_DRIFT_SLACK_WEBHOOK_URL)")


def test_near_miss_of_a_section_name_is_an_error():
    with pytest.raises(InputError) as e:
        load_settings(None, env={"NETPOL_DRIFT_STOR_URL": "sqlite:///x.db"})
    assert str(e.value) == ("environment: NETPOL_DRIFT_STOR_URL: unknown setting (did you mean one of "
                            "NETPOL_DRIFT_STORE_RETENTION_DAYS, NETPOL_DRIFT_STORE_URL?)")


def test_variable_of_no_section_of_ours_is_ignored_and_named_in_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="monitor.settings"):
        s = load_settings(None, env={"NETPOL_DRIFT_NCA_HOME": "/x", "NETPOL_DRIFT_STORE_URL": "sqlite:///b.db"})
    assert s.store.url == "sqlite:///b.db"
    assert dataclasses.replace(s, store=Settings().store) == Settings()
    assert caplog.messages == ["ignoring environment variable NETPOL_DRIFT_NCA_HOME: not a netpol-drift setting "
                               "(no section 'nca')"]


def test_probe_agent_variables_are_not_settings():
    assert load_settings(None, env={"NETPOL_DRIFT_PROBE_TARGETS": "T10.0.0.1:80",
                                    "NETPOL_DRIFT_RESULT_FILE": "/dev/termination-log"}) == Settings()


def test_a_foreign_netpol_drift_variable_does_not_break_commands(tmp_path, monkeypatch, capsys):
    from monitor.cli import main
    from monitor.store import head_revision

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NETPOL_DRIFT_NCA_HOME", "/x")
    assert main(["db", "upgrade"]) == 0
    assert main(["history"]) == 0
    assert capsys.readouterr().out == (f"sqlite:///netpol-drift.db: schema at revision {head_revision()}\n"
                                       "no runs stored\n")


# Every NETPOL_DRIFT_* name in these places must be the product's: a setting, a secret, a probe-agent variable,
# or a deliberate misspelling of one that a test expects to be refused. A name the loader would ignore as not
# ours is a test-only switch wearing the product's prefix. NETPOL_DRIFT_LAB is the lab marker's old name, still
# recognized by tests/lab/procs.py so that `down` stops a lab an older checkout started; nothing sets it.
RETIRED = {"NETPOL_DRIFT_LAB"}
SCANNED = ("tests", "bench", "Makefile", "config/examples", "deploy")


def test_test_only_variables_do_not_use_the_product_prefix(caplog):
    repo = EXAMPLE.parents[1]
    files = [f for p in SCANNED for f in ([repo / p] if (repo / p).is_file() else (repo / p).rglob("*"))
             if f.is_file() and f.suffix in ("", ".py", ".sh", ".yaml", ".yml", ".md", ".toml")
             and f.name != "test_settings.py"]
    found = {(m.group(0), f.relative_to(repo).as_posix()) for f in files
             for m in re.finditer(r"NETPOL_DRIFT_[A-Z0-9_]*[A-Z0-9]", f.read_text(errors="replace"))}
    assert found, "the scan finds the product's own variables (e.g. NETPOL_DRIFT_STORE_URL in tests)"
    not_settings = []
    for name, where in sorted(found):
        if name in RETIRED or name in NOT_SETTINGS_ENV:
            continue
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="monitor.settings"), contextlib.suppress(InputError):
            load_settings(None, env={name: "1"})  # refused (a bad value, or a misspelling tested as such): ours
        if caplog.messages:  # ignored: not a name of ours
            not_settings.append(f"{where}: {name}")
    assert not_settings == []


def test_dashboard_token_only_from_the_environment_and_never_shown():
    s = load_settings(None, env={"NETPOL_DRIFT_WEB_TOKEN": "t0p-secret",
                                 "NETPOL_DRIFT_WEB_TRUSTED_PROXY_HEADER": "X-Forwarded-User",
                                 "NETPOL_DRIFT_WEB_EXTERNAL_URL": "https://netpol.example.com/drift"})
    assert s.secrets.web_token == "t0p-secret"
    assert s.web.trusted_proxy_header == "X-Forwarded-User"
    assert s.web.external_url == "https://netpol.example.com/drift"
    assert "t0p-secret" not in repr(s) and "t0p-secret" not in "\n".join(s.describe())
    assert "secrets.web_token = <set>" in s.describe()
    with pytest.raises(InputError) as e:
        load_settings(None, env={"NETPOL_DRIFT_WEB_EXTERNAL_URL": "ftp://x"})
    assert str(e.value) == ("environment: web.external_url: must be an http:// or https:// URL without query or "
                            "fragment, got 'ftp://x'")

"""Settings: defaults, the documented example file, environment overrides, and each bad config's message."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from monitor.errors import InputError
from monitor.settings import Settings, load_settings

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
    ("unknown section", "colour: red\n", "{f}: colour: unknown key (known: cluster, drift, log_level, probe, "
                                         "schedule, slack, store, suite, web)"),
    ("unknown key", "probe: {timeout: 3}\n", "{f}: probe.timeout: unknown key (known: concurrency, image, "
                                            "namespace, per_node, refused_means, "
                                            "run_deadline_seconds, timeout_seconds)"),
    ("wrong type", "probe: {concurrency: many}\n", "{f}: probe.concurrency: must be an integer, got 'many'"),
    ("bad choice", "probe: {refused_means: maybe}\n",
     "{f}: probe.refused_means: must be one of allow, deny, unknown, got 'maybe'"),
    ("negative", "schedule: {interval_seconds: -5}\n", "{f}: schedule.interval_seconds: must not be negative, got -5"),
    ("secret in file", "secrets: {slack_token: x}\n",
     "{f}: secrets: secrets are read only from the environment (NETPOL_DRIFT_*)"),
    ("section not a mapping", "store: sqlite\n", "{f}: store: must be a mapping"),
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


def test_unknown_environment_setting_is_an_error():
    with pytest.raises(InputError) as e:
        load_settings(None, env={"NETPOL_DRIFT_STORE_URI": "x"})
    assert str(e.value) == "environment: NETPOL_DRIFT_STORE_URI: unknown setting"

"""The database password and the Slack token never reach the logs, the store, the dashboard or an exported
bundle (issue 15 item 9). `serve` runs as a subprocess at DEBUG level against a real PostgreSQL server that
demands the password (scram-sha-256) and the Slack stand-in that demands the token; both are recognisable
strings. It migrates the database, tries its runs (the cluster in this config does not exist: they fail, and
say so in the log, the worst case for what a log line may carry), delivers the drift alerts a previous run
left in the outbox, serves every page; `export` writes a bundle. Then everything produced is searched: the
log, every dashboard page and API answer, /metrics and /readyz, every column of every table (compressed
columns decompressed), the bundle, and what reached Slack. (No probing here: the secrets' paths, the store, the
alert sender and the HTTP side, are the same with or without a cluster.)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
import yaml

from monitor.models import Outcome
from monitor.store import Store
from tests.postgres import PORT, PostgresServer, private_postgres
from tests.slack_standin import SlackStandin
from tests.test_alert import T0, record
from tests.test_service import free_port, write_config

pytestmark = pytest.mark.postgres
PASSWORD = "pg-PW-7f3e1c9a-never-shown"
TOKEN = "xoxb-4242-secret-8d1b6e0f-never-shown"
SECRETS = (PASSWORD, TOKEN)


@pytest.fixture
def postgres() -> Iterator[PostgresServer]:
    with private_postgres(password=PASSWORD) as server:
        yield server


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("NETPOL_DRIFT_") and k != "KUBECONFIG"}
    return base | {"NETPOL_DRIFT_DATABASE_PASSWORD": PASSWORD, "NETPOL_DRIFT_SLACK_TOKEN": TOKEN} | extra


def fetch(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.read().decode()
    except urllib.error.HTTPError as e:
        return e.read().decode()


def database_text(server: PostgresServer, database: str) -> str:
    """Every value of every table of the database, compressed columns decompressed, as one text."""
    parts = []
    with psycopg.connect(host=str(server.socket_dir), port=PORT, user=server.user, dbname=database,
                         password=PASSWORD) as conn:
        tables = [r[0] for r in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
        assert {"runs", "alert_outbox", "snapshots", "suites"} <= set(tables)
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):  # names from the catalog
                for value in row:
                    if isinstance(value, bytes | memoryview):
                        value = bytes(value)
                        with contextlib.suppress(zlib.error):
                            value = zlib.decompress(value)
                        value = value.decode("utf-8", "replace")
                    parts.append(str(value))
    return "\n".join(parts)


def test_secrets_never_reach_logs_store_dashboard_or_bundles(tmp_path: Path, postgres: PostgresServer) -> None:
    url = postgres.create_database()
    database = url.split("@/")[1].split("?")[0]
    with pytest.raises(Exception, match="password"):  # the server really demands it
        psycopg.connect(host=str(postgres.socket_dir), port=PORT, user=postgres.user, dbname=database).close()
    with Store.open(url, password=PASSWORD, migrate=True) as store:  # a drift left by an earlier run
        record(store, T0, Outcome.TIMEOUT)
        record(store, T0 + timedelta(minutes=5), Outcome.CONNECTED, deny=False)
        assert len(store.pending_alerts()) == 3

    with SlackStandin(token=TOKEN) as slack:
        config = write_config(tmp_path)
        data = yaml.safe_load(config.read_text())
        port = free_port()
        data |= {"store": {"url": url}, "log_level": "DEBUG", "web": {"listen": f"127.0.0.1:{port}"},
                 "slack": {"channel": "#netpol-alerts", "base_url": slack.base_url}}
        config.write_text(yaml.safe_dump(data))
        log_path = tmp_path / "serve.log"
        with log_path.open("w") as log:
            proc = subprocess.Popen([sys.executable, "-m", "monitor", "serve", "--config", str(config)],
                                    env=env(), stdout=log, stderr=subprocess.STDOUT)
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 90
            while len([r for r in slack.of("chat.postMessage") if not r.body.get("thread_ts")]) < 1:
                assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()[-3000:]
                time.sleep(0.3)
            pages = [fetch(base + p) for p in ("/", "/clusters/prod", "/runs/1", "/runs/2", "/api/clusters",
                                               "/api/clusters/prod", "/api/runs/2", "/compare/runs?a=1&b=2",
                                               "/snapshots/diff?a=1&b=2", "/api", "/metrics", "/readyz",
                                               "/healthz")]
            assert "Reachability drift" not in pages[0] and "shop/web" in pages[3]  # the pages are real pages
            assert json.loads(pages[11])["checks"]["store"]["ok"] is True  # readiness used the password
            exported = subprocess.run([sys.executable, "-m", "monitor", "--config", str(config), "export",
                                       "--cluster", "prod"], env=env(), capture_output=True, text=True,
                                      timeout=60)
            assert exported.returncode == 0, exported.stderr
            assert len(json.loads(exported.stdout)["runs"]) == 2
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
        log_text = log_path.read_text()
        assert "DEBUG" in log_text and "run" in log_text and "failed" in log_text  # it logged, a lot
        produced = {"serve log": log_text, "dashboard": "\n".join(pages), "bundle": exported.stdout,
                    "export stderr": exported.stderr, "database": database_text(postgres, database),
                    "slack": json.dumps([r.body for r in slack.received])}
        assert slack.received  # the token was used, and worked
    for where, text in produced.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret[:8]}... found in the {where}"


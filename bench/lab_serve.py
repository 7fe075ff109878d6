"""`serve` against the three-tier app in the lab, for the benchmarks that time what it does after a policy edit.

`lab_missing(name)` says why a lab benchmark cannot run here (not root, lab not up). `serve_three_tier(...)`
deploys frontend/api/db in a fresh namespace, writes a suite of three cases with no violation (so the first run
becomes the known-good baseline) and a config, starts `serve` as a subprocess with the monitor's
ServiceAccount, and yields a ServedLab: `break_db()`/`restore_db()` swap the db policy (api -> db cut, or
allowed), `wait(...)` polls until something is true while serve keeps running, `stored_run(...)` finds a stored
run (`run_span` gives its start and end). On the way out serve is stopped and the namespace deleted, also on
failure.
This module must not time or judge anything: each benchmark owns its rounds, numbers and targets.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")
# No violation in the suite: the first run becomes the known-good baseline drift is measured from.
CASES = ("frontend-to-api", "api-to-db", "frontend-to-db-denied")


def lab_missing(name: str) -> str | None:
    """The one line to print when the lab benchmark `name` cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return f"{name}: needs root and the lab (python -m tests.lab up)"
    from tests.lab import control

    if not control.apiserver_ready():
        return f"{name}: the lab is not up (python -m tests.lab up)"
    return None


def _db_policy(allowed_app: str) -> dict:
    from tests.test_live_lab import netpol

    return netpol("db-from-api", {"podSelector": {"matchLabels": {"app": "db"}}, "policyTypes": ["Ingress"],
                                  "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": allowed_app}}}],
                                               "ports": [{"port": 5432}]}]})


@dataclass
class ServedLab:
    lab: Any  # tests.lab.fixtures.Lab
    namespace: str
    work: Path
    db: str  # the store's URL
    proc: subprocess.Popen

    def log_tail(self) -> str:
        return (self.work / "serve.log").read_text()[-2000:]

    def break_db(self) -> None:
        """api -> db cut: the drift every round measures."""
        self.lab.apply([_db_policy("nobody")], namespace=self.namespace)

    def restore_db(self) -> None:
        self.lab.apply([_db_policy("api")], namespace=self.namespace)

    def wait(self, found: Callable[[], T], what: str, timeout: float = 90.0) -> tuple[T, float]:
        """Polls `found` every 0.1 s until it returns something true; that and the wall time it was seen."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"serve exited: {self.log_tail()}")
            value = found()
            if value:
                return value, time.time()
            time.sleep(0.1)
        raise RuntimeError(f"no {what} within {timeout}s: {self.log_tail()}")

    def runs(self) -> list:
        """The stored runs of the cluster, newest first ([] until serve has created the database)."""
        from monitor.errors import StoreError
        from monitor.store import Store

        try:
            with Store.open(self.db) as store:
                return store.history("lab")
        except StoreError:
            return []

    def stored_run(self, pred: Callable[[Any], bool], what: str) -> tuple[Any, float]:
        """The first stored run (newest first) that `pred` accepts, and when it was seen."""
        [run], seen = self.wait(lambda: [r for r in self.runs() if pred(r)][:1], what)
        return run, seen


def run_span(run: Any) -> tuple[float, float]:
    """A stored run's start and end as unix seconds (the store keeps ISO 8601 with an offset or Z)."""
    return datetime.fromisoformat(run.started_at).timestamp(), datetime.fromisoformat(run.finished_at).timestamp()


@contextmanager
def serve_three_tier(prefix: str, port: int, config: dict | None = None,
                     env: dict[str, str] | None = None) -> Iterator[ServedLab]:
    """serve on the three-tier app in namespace `<prefix>-<random>`, web on 127.0.0.1:`port`; `config` is merged
    over the base settings (top-level keys), `env` over serve's environment."""
    from tests.lab.fixtures import Lab
    from tests.test_live_lab import REPO, _env, deploy_three_tier, three_tier_suite

    lab = Lab()
    ns = f"{prefix}-{secrets.token_hex(3)}"
    lab.create_namespace(ns)
    work = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))
    db = f"sqlite:///{work / 'history.db'}"
    proc = None
    try:
        deploy_three_tier(lab, ns)
        suite = three_tier_suite(ns)
        suite["cases"] = [c for c in suite["cases"] if c["name"] in CASES]
        (work / "suite.yaml").write_text(yaml.safe_dump(suite))
        (work / "config.yaml").write_text(yaml.safe_dump({
            "cluster": {"name": "lab", "kubeconfig": str(lab.monitor_kubeconfig)},
            "probe": {"namespace": "netpol-drift", "timeout_seconds": 1.0, "run_deadline_seconds": 60},
            "store": {"url": db}, "suite": str(work / "suite.yaml"),
            "schedule": {"interval_seconds": 3600, "jitter_seconds": 0}, "web": {"listen": f"127.0.0.1:{port}"},
            **(config or {})}))
        with (work / "serve.log").open("w") as log:
            proc = subprocess.Popen([sys.executable, "-m", "monitor", "serve", "--config", str(work / "config.yaml")],
                                    cwd=REPO, env=_env() | (env or {}), stdout=log, stderr=subprocess.STDOUT)
        yield ServedLab(lab, ns, work, db, proc)
    finally:
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)
        lab.delete_namespace(ns, timeout=120)

"""Progress on a terminal (issue 14): `suite generate` and `run --once` show where they are on stderr when it is
a real pseudo-terminal, and nothing extra when piped; stdout (YAML, `--format json`) is the same bytes either
way. The `run --once` half needs the lab."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.ttyrun import run_on_tty

REPO = Path(__file__).resolve().parents[1]
ESC = b"\x1b["


def _manifests(d: Path, n: int) -> Path:
    d.mkdir()
    docs = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"namespace": "shop", "name": f"app-{i}",
                                                             "labels": {"app": f"app-{i}"}},
             "spec": {"containers": [{"name": "c", "ports": [{"name": "http", "containerPort": 8080}]}]},
             "status": {"podIP": f"10.0.0.{i + 1}"}} for i in range(n)]
    docs.append({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                 "metadata": {"namespace": "shop", "name": "deny"}, "spec": {"podSelector": {}}})
    (d / "all.yaml").write_text(yaml.safe_dump_all(docs))
    return d


def test_suite_generate_shows_progress_on_a_terminal_and_nothing_when_piped(tmp_path: Path) -> None:
    m = _manifests(tmp_path / "m", 30)
    cmd = [sys.executable, "-m", "monitor", "suite", "generate", "--manifests", str(m)]
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    code, out, tty = run_on_tty(cmd, REPO, env, timeout=60)
    assert code == 0, tty.decode(errors="replace")
    assert b"reading manifests in" in tty and b"generating cases" in tty and ESC in tty
    piped = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, timeout=60)
    assert piped.returncode == 0
    assert piped.stderr == b""  # nothing extra when piped
    assert out == piped.stdout and out.startswith(b"# netpol-drift connectivity suite")  # the same YAML bytes
    assert len(yaml.safe_load(out)["cases"]) == 30 * 29


# Fields that differ between any two runs (ids, clocks, latencies, and the node a probe pod landed on: the lab
# has two), masked before comparing two runs' JSON.
_VOLATILE = {"run", "started_at", "finished_at", "latency_ms", "stored_run", "baseline_run", "attempts", "node"}


def _masked(value):
    if isinstance(value, dict):
        return {k: "*" if k in _VOLATILE else _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value


@pytest.mark.lab
def test_run_once_shows_probe_progress_on_a_terminal_and_json_stays_byte_stable(lab, lab_namespace,
                                                                                tmp_path: Path) -> None:
    from tests.test_live_lab import _env, deploy_three_tier, monitor_command, three_tier_suite, write_config

    ns = lab_namespace
    deploy_three_tier(lab, ns)
    suite_path = tmp_path / "suite.yaml"
    suite_path.write_text(yaml.safe_dump(three_tier_suite(ns)))
    tty_dir, pipe_dir = tmp_path / "tty", tmp_path / "pipe"
    tty_dir.mkdir()
    pipe_dir.mkdir()
    code, out, tty = run_on_tty(monitor_command(write_config(lab, tty_dir), suite_path), REPO, _env(), 180)
    assert code in (0, 1), tty.decode(errors="replace")[-3000:]
    text = tty.decode(errors="replace")
    # The probe round as it went: pods created and finished, flows observed (the suite's 5 probe pods).
    assert "probing" in text and "reading the cluster (snapshot)" in text, text[-3000:]
    assert "created," in text and "finished; flows" in text and "observed" in text, text[-3000:]
    report = json.loads(out)
    pods = report["probe_pods"]
    assert f"probe pods {pods}/{pods} created, {pods} finished" in text, text[-3000:]
    # stdout is exactly the JSON document: no progress, no colour, the same layout as always.
    assert ESC not in out and out == (json.dumps(report, indent=2) + "\n").encode()

    piped = subprocess.run(monitor_command(write_config(lab, pipe_dir), suite_path), cwd=REPO, env=_env(),
                           capture_output=True, timeout=180)
    assert piped.returncode == code, piped.stderr[-3000:]
    assert ESC not in piped.stderr and b"probe pods" not in piped.stderr  # nothing extra when piped
    again = json.loads(piped.stdout)
    assert piped.stdout == (json.dumps(again, indent=2) + "\n").encode()
    # Two runs differ in ids, clocks and latencies only: the rest is the same, key for key, in the same order.
    assert json.dumps(_masked(report), indent=2) == json.dumps(_masked(again), indent=2)

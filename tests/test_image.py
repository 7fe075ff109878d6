"""The image and the wheel, outside a container: the Dockerfile passes hadolint and keeps its promises, and
its two stages replayed on this host (wheels of the build context it COPYs, installed into a fresh venv with
no index) give a netpol-drift that finds its migrations, serves with the image's default command and runs the
probe agent as probe pods do, writing nothing into its installation (the read-only root filesystem).

No Docker engine here, so the container itself is never built; the lab test of the chart runs the image's
command (`netpol-drift serve`) in a real Deployment pod (tests/test_helm_lab.py).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import venv
from pathlib import Path

import pytest
import yaml

from monitor.probe.wire import decode_result
from tests.test_service import free_port, get, write_config

REPO = Path(__file__).resolve().parents[1]
DOCKERFILE = REPO / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"


def instructions() -> list[tuple[str, str, int]]:
    """(INSTRUCTION, arguments, stage index) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    out, stage = [], -1
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if word.upper() == "FROM":
            stage += 1
        out.append((word.upper(), rest.strip(), stage))
    return out


def test_hadolint_finds_nothing():
    result = subprocess.run([str(HADOLINT), "--failure-threshold", "info", str(DOCKERFILE)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_final_stage_is_slim_non_root_and_runs_serve():
    ins = instructions()
    stages = [rest for word, rest, _ in ins if word == "FROM"]
    assert len(stages) == 2, stages
    final = [(w, r) for w, r, s in ins if s == 1]
    base = next(r for w, r, s in ins if w == "ARG" and r.startswith("PYTHON_IMAGE="))
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.\d+-slim-\w+", base), base
    assert stages[1] == "${PYTHON_IMAGE}"  # the same slim base, not the build stage
    user = [r for w, r in final if w == "USER"]
    assert user and re.fullmatch(r"[1-9]\d*:[1-9]\d*", user[-1]), user  # numeric: runAsNonRoot can check it
    # No compiler, no wheel or package cache left behind: the final stage only pip-installs from a bind mount.
    runs = " ".join(r for w, r in final if w == "RUN")
    assert "--mount=type=bind,from=build" in runs and not re.search(r"apt-get|gcc|build-essential", runs)
    assert not [r for w, r in final if w == "COPY"]
    entry = json.loads(next(r for w, r in final if w == "ENTRYPOINT"))
    cmd = json.loads(next(r for w, r in final if w == "CMD"))
    assert entry == ["netpol-drift"] and cmd[0] == "serve"
    import tomllib

    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    assert f"VERSION={version}" in [r for w, r, _ in ins if w == "ARG"]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The Dockerfile's stages on this host: its build stage's COPYs into a context, `pip wheel` of it, a
    fresh venv (no repository on its path) that installs only those wheels, as the final stage does."""
    root = tmp_path_factory.mktemp("image")
    context = root / "src"
    for word, rest, stage in instructions():
        if word == "COPY" and stage == 0:
            *sources, _dest = shlex.split(rest)
            for src in sources:
                target = context / src
                target.parent.mkdir(parents=True, exist_ok=True)
                if (REPO / src).is_dir():
                    shutil.copytree(REPO / src, target, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(REPO / src, target)
    wheels = root / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheels), ".[postgres]"],
                   cwd=context, check=True)
    env_dir = root / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    subprocess.run([str(env_dir / "bin" / "pip"), "install", "--quiet", "--no-index", "--find-links", str(wheels),
                    "netpol-drift[postgres]"], check=True, cwd=root)  # as the final stage's RUN
    return env_dir


def _tree(path: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in path.rglob("*")}


def _run(env_dir: Path, *args: str, cwd: Path, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    base = {"PATH": f"{env_dir / 'bin'}:/usr/bin:/bin", "HOME": str(cwd), "TMPDIR": str(cwd),
            "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([str(env_dir / "bin" / "netpol-drift"), *args], cwd=cwd, env={**base, **(env or {})},
                          capture_output=True, text=True, timeout=120, **kw)


@pytest.mark.slow
def test_wheel_finds_its_migrations_without_the_repository(installed, tmp_path):
    site = next((installed / "lib").glob("python3*/site-packages"))
    shipped = sorted(p.name for p in (site / "monitor" / "store" / "migrations" / "versions").glob("*.py"))
    assert shipped == sorted(p.name for p in (REPO / "alembic" / "versions").glob("*.py"))
    assert not (site / "alembic" / "env.py").exists()  # the migrations never shadow the alembic library
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    before = _tree(installed)
    up = _run(installed, "db", "upgrade", cwd=tmp_path, env={"NETPOL_DRIFT_STORE_URL": url})
    assert up.returncode == 0, up.stderr
    current = _run(installed, "db", "current", cwd=tmp_path, env={"NETPOL_DRIFT_STORE_URL": url})
    from monitor.store.migrate import SCHEMA_REVISION
    assert current.returncode == 0 and SCHEMA_REVISION in current.stdout, current.stdout + current.stderr
    assert _tree(installed) == before  # nothing written into the installation: a read-only root is enough
    # A database an older release made (here at 0002, by the repository's Alembic) keeps upgrading: the move
    # to alembic/ kept every revision id.
    older = f"sqlite:///{tmp_path / 'older.db'}"
    made = subprocess.run([str(Path(sys.executable).parent / "alembic"), "upgrade", "0002"], cwd=REPO,
                          env={**os.environ, "NETPOL_DRIFT_STORE_URL": older}, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    up = _run(installed, "db", "upgrade", cwd=tmp_path, env={"NETPOL_DRIFT_STORE_URL": older})
    assert up.returncode == 0, up.stderr
    current = _run(installed, "db", "current", cwd=tmp_path, env={"NETPOL_DRIFT_STORE_URL": older})
    assert SCHEMA_REVISION in current.stdout, current.stdout + current.stderr


@pytest.mark.slow
def test_image_default_command_serves_and_stops_on_sigterm(installed, tmp_path):
    """ENTRYPOINT + CMD exactly as the Dockerfile has them (the config path rewritten to a temporary one):
    serve starts, answers /healthz and /metrics (its runs fail: the cluster here is a closed port), and a
    SIGTERM ends it with 0."""
    final = [(w, r) for w, r, s in instructions() if s == 1]
    argv = json.loads(next(r for w, r in final if w == "ENTRYPOINT")) + json.loads(
        next(r for w, r in final if w == "CMD"))
    port = free_port()
    cfg = write_config(tmp_path)
    data = yaml.safe_load(cfg.read_text())
    data["web"] = {"listen": f"127.0.0.1:{port}"}
    cfg.write_text(yaml.safe_dump(data))
    argv = [str(cfg) if a == "/etc/netpol-drift/netpol-drift.yaml" else a for a in argv]
    assert str(cfg) in argv
    before = _tree(installed)
    env = {"PATH": f"{installed / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "TMPDIR": str(tmp_path),
           "PYTHONDONTWRITEBYTECODE": "1"}
    proc = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        status = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                status, _, _ = get(f"http://127.0.0.1:{port}/healthz")
                break
            except OSError:
                time.sleep(0.2)
        assert status == 200, proc.stdout.read() if proc.poll() is not None else "no answer"
        status, _, body = get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and "netpol_drift_runs_total" in body
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert _tree(installed) == before


@pytest.mark.slow
def test_image_runs_the_probe_agent_as_probe_pods_do(installed, tmp_path):
    """The probe pod's command (monitor/probe/runner.py) against a real listener and a closed port."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    closed = free_port()
    targets = f"T127.0.0.1:{listener.getsockname()[1]},T127.0.0.1:{closed}"
    term = tmp_path / "termination-log"
    try:
        result = _run(installed, "probe-agent", "--timeout", "2", "--targets", targets, "--result-file", str(term),
                      cwd=tmp_path)
    finally:
        listener.close()
    assert result.returncode == 0, result.stderr
    count, outcomes = decode_result(result.stdout)
    assert count == 2 and [o.outcome for o in outcomes] == ["connected", "refused"]
    assert term.read_text().strip() == result.stdout.strip()  # the termination message the runner reads


def test_repository_alembic_upgrade_head_uses_the_top_level_migrations(tmp_path):
    """The standard command from a checkout (alembic.ini at the root) builds the schema netpol-drift expects."""
    from monitor.store.migrate import MIGRATIONS, SCHEMA_REVISION, schema_differences

    assert MIGRATIONS == REPO / "alembic"  # a checkout (editable install) uses the one copy in git
    url = f"sqlite:///{tmp_path / 'repo.db'}"
    alembic = Path(sys.executable).parent / "alembic"
    env = {**os.environ, "NETPOL_DRIFT_STORE_URL": url}
    up = subprocess.run([str(alembic), "upgrade", "head"], cwd=REPO, env=env, capture_output=True, text=True)
    assert up.returncode == 0, up.stderr
    current = subprocess.run([str(alembic), "current"], cwd=REPO, env=env, capture_output=True, text=True)
    assert f"{SCHEMA_REVISION} (head)" in current.stdout, current.stdout + current.stderr
    assert schema_differences(url) == []

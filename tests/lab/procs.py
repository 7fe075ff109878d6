"""Starting, finding and stopping the lab's own processes.

Job: start a lab process in its own session with its output in the lab's log dir and a marker in its
environment (NPD_TEST_LAB=<state dir>), find the lab's processes again by that marker, and stop them.
Must not: signal any process that does not carry the marker (no name-based killing).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from . import config as C

# Not NETPOL_DRIFT_*: that prefix belongs to the product's settings, and pods of the lab run netpol-drift.
MARKER = "NPD_TEST_LAB"
# The marker's name before that rename: a lab started by an older checkout is still found and stopped.
_OLD_MARKER = "NETPOL_DRIFT_LAB"


def marker_value(paths: C.Paths = C.PATHS) -> str:
    return str(paths.root)


def start(name: str, argv: Sequence[str], env: Mapping[str, str] | None = None, paths: C.Paths = C.PATHS,
          cwd: Path | None = None) -> int:
    paths.logs.mkdir(parents=True, exist_ok=True)
    paths.pids.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    full_env.update(env or {})
    full_env[MARKER] = marker_value(paths)
    full_env["LAB_PROC"] = name
    pidfile = paths.pidfile(name)
    pidfile.unlink(missing_ok=True)
    # Detached (setsid -f): the lab outlives the command or test session that started it and is never that
    # process's child (no zombies, no "subprocess still running" warnings). The shell writes its own pid and
    # then execs the program, so the pid file names the program itself.
    with open(paths.log(name), "ab") as log:
        subprocess.run(["setsid", "-f", "sh", "-c", 'echo $$ > "$0.tmp" && mv "$0.tmp" "$0" && exec "$@"',
                        str(pidfile), *argv], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                       env=full_env, cwd=cwd, check=True)
    deadline = time.monotonic() + 10
    while not pidfile.exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name} did not start (no pid file {pidfile})")
        time.sleep(0.01)
    return int(pidfile.read_text())


def _environ(pid: int) -> dict[str, str]:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return {}
    out = {}
    for item in raw.split(b"\0"):
        k, sep, v = item.partition(b"=")
        if sep:
            out[k.decode(errors="replace")] = v.decode(errors="replace")
    return out


def lab_processes(paths: C.Paths = C.PATHS) -> dict[int, str]:
    """pid -> LAB_PROC name (or 'pod:<uid>') of every live process that carries this lab's marker."""
    want = marker_value(paths)
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        env = _environ(int(entry))
        if want in (env.get(MARKER), env.get(_OLD_MARKER)):
            found[int(entry)] = env.get("LAB_PROC", "?")
    return found


def pid_of(name: str, paths: C.Paths = C.PATHS) -> int | None:
    """The pid of the named lab process if it is alive and really ours."""
    try:
        pid = int(paths.pidfile(name).read_text())
    except (OSError, ValueError):
        return None
    env = _environ(pid)
    if marker_value(paths) in (env.get(MARKER), env.get(_OLD_MARKER)) and env.get("LAB_PROC") == name \
            and _alive(pid):
        return pid
    return None


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def live_groups() -> set[int]:
    """Process group ids that have at least one member that is not a zombie (zombies wait for a reaper that
    may be slow, e.g. a container's pid 1, and must not count as running)."""
    groups = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z":
            groups.add(int(fields[2]))
    return groups


def stop(pids: Sequence[int], grace: float = 3.0) -> None:
    """SIGTERM the given pids (and their process groups), SIGKILL whatever is left after grace seconds."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            if not _alive(pid):
                continue
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + (grace if sig == signal.SIGTERM else 2.0)
        while time.monotonic() < deadline and any(_alive(p) for p in pids):
            time.sleep(0.1)
        if not any(_alive(p) for p in pids):
            return

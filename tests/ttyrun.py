"""Running a command with its stderr on a real pseudo-terminal (and its stdout on a pipe), for the progress
tests: what a person at a terminal sees, byte for byte, beside what a script reads."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import termios
import threading
from pathlib import Path


def run_on_tty(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> tuple[int, bytes, bytes]:
    """(exit code, stdout bytes from a pipe, stderr bytes as the terminal got them). 120 x 40 terminal."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    try:
        proc = subprocess.Popen(cmd, cwd=cwd, env={**env, "TERM": "xterm-256color"}, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=slave)
    finally:
        os.close(slave)
    got = bytearray()

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                return
            if not chunk:
                return
            got.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        reader.join(timeout=5)
        os.close(master)
    return proc.returncode, out, bytes(got)

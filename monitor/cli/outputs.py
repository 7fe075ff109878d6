"""The CLI side of the shared output formats (monitor/report/): the `--junit FILE` flag and file writing.

Only flags and writing live here; what goes into each format is decided in monitor/report/.
"""

from __future__ import annotations

import argparse
import socket
from datetime import datetime
from pathlib import Path

from monitor.errors import InputError
from monitor.report import CaseReport
from monitor.report.junit import junit_xml


def add_junit_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--junit", metavar="FILE", help="also write the results as JUnit XML to FILE (for CI test "
                                                   "reports; the normal output is unchanged)")


def write_text(path: str, text: str, flag: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot write: {e.strerror}", file=path, field=flag) from e


def write_junit(path: str | None, suite: str, cases: list[CaseReport], *, started_at: datetime,
                finished_at: datetime, hostname: str | None, properties: dict[str, str]) -> None:
    if not path:
        return
    text = junit_xml(suite, cases, timestamp=started_at.isoformat(),
                     seconds=max(0.0, (finished_at - started_at).total_seconds()),
                     hostname=hostname or socket.gethostname(), properties=properties)
    write_text(path, text, "--junit")

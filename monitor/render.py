"""Text rendering for people: aligned, optionally coloured tables. JSON output does not come through here.

Colour follows the usual conventions: on when writing to a terminal, off with NO_COLOR, forced with
FORCE_COLOR. On a terminal, tables are Rich tables (the only module importing rich): numbers right-aligned,
long cells folded to the terminal's width instead of wrapping the whole line; piped, they stay plain
two-space-separated columns that scripts and tests can rely on byte for byte.
Long commands show their progress on stderr with Rich when stderr is a terminal, and nothing otherwise.
This module must not decide what to show, only how.
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, TextIO

_CODES = {"red": "31", "green": "32", "yellow": "33", "blue": "34", "magenta": "35", "cyan": "36",
          "grey": "90", "bold": "1"}
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def use_colour(stream: TextIO) -> bool:
    if os.environ.get("NO_COLOR"):
        return False
    if os.environ.get("FORCE_COLOR"):
        return True
    return hasattr(stream, "isatty") and stream.isatty()


class Painter:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __call__(self, text: str, colour: str | None) -> str:
        if not self.enabled or not colour:
            return text
        return f"\x1b[{_CODES[colour]}m{text}\x1b[0m"


def visible_len(text: str) -> int:
    return len(_ANSI.sub("", text))


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], paint: Painter) -> str:
    """Left-aligned columns separated by two spaces; header in bold. Cells may already be painted.
    With colour on (a terminal), a Rich table fitted to the terminal's width."""
    rows = [[str(c) for c in r] for r in rows]
    if paint.enabled:
        return _rich_table(headers, rows)
    widths = [len(h) for h in headers]
    for r in rows:
        for i, cell in enumerate(r):
            widths[i] = max(widths[i], visible_len(cell))
    def line(cells: Sequence[str]) -> str:
        out = [c + " " * (widths[i] - visible_len(c)) for i, c in enumerate(cells)]
        return "  ".join(out).rstrip()
    head = line([paint(h, "bold") for h in headers])
    return "\n".join([head, *(line(r) for r in rows)])


def stdout_painter() -> Painter:
    return Painter(use_colour(sys.stdout))


_NUMBER = re.compile(r"-?\d+(\.\d+)?( ms| s)?")


def _rich_table(headers: Sequence[str], rows: list[list[str]]) -> str:
    import io
    import shutil

    from rich import box
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    width = shutil.get_terminal_size((120, 24)).columns
    console = Console(file=io.StringIO(), force_terminal=True, color_system="standard", width=width,
                      highlight=False, emoji=False, markup=False)
    t = Table(box=box.SIMPLE_HEAD, header_style="bold", pad_edge=False, show_edge=False)
    for i, h in enumerate(headers):
        numeric = bool(rows) and all(_NUMBER.fullmatch(_ANSI.sub("", r[i])) or not r[i] for r in rows)
        t.add_column(h, justify="right" if numeric else "left", overflow="fold")
    for r in rows:
        t.add_row(*(Text.from_ansi(c) for c in r))
    console.print(t)
    return console.file.getvalue().rstrip("\n")


class _Quiet:
    """Progress for a pipe or a file: nothing at all, so that what scripts read stays byte for byte the same."""

    def stage(self, text: str) -> None:
        pass

    def probes(self, progress: Any) -> None:
        pass

    def steps(self, done: int, total: int) -> None:
        pass


class _Live:
    """A Rich progress line on a terminal: the stage, a bar, probe pods created/finished, flows observed."""

    def __init__(self, progress: Any) -> None:
        self.progress = progress
        self.task = progress.add_task("starting", total=None, detail="")

    def stage(self, text: str) -> None:
        # Drawn at once (stages are few): a quick stage would otherwise never show between two refreshes.
        self.progress.update(self.task, description=text, total=None, completed=0, detail="", refresh=True)

    def probes(self, p: Any) -> None:
        """p: a monitor.probe.runner.ProbeProgress (pods, created, finished, flows, observed)."""
        self.progress.update(self.task, total=max(1, p.flows), completed=p.observed,
                             detail=f"probe pods {p.created}/{p.pods} created, {p.finished} finished; "
                                    f"flows {p.observed}/{p.flows} observed", refresh=p.finished == p.pods)

    def steps(self, done: int, total: int) -> None:
        self.progress.update(self.task, total=max(1, total), completed=done, detail=f"{done}/{total}")


@contextlib.contextmanager
def progress_on_terminal(stream: TextIO | None = None) -> Iterator[Any]:
    """Progress of a long command (`run --once`, `suite generate`) on stderr when it is a terminal, else
    nothing. Transient: the line goes away when the command prints its result. Log lines written meanwhile go
    above it (the root logger's stderr handlers are pointed at Rich's proxy while it shows)."""
    stream = sys.stderr if stream is None else stream
    if not (hasattr(stream, "isatty") and stream.isatty()) or os.environ.get("TERM") == "dumb":
        yield _Quiet()
        return
    import logging

    from rich.console import Console
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    console = Console(file=stream, highlight=False, emoji=False, markup=False)
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(bar_width=20),
                        TextColumn("{task.fields[detail]}"), TimeElapsedColumn(), console=console,
                        transient=True, redirect_stdout=False, redirect_stderr=False)
    handlers = [h for h in logging.getLogger().handlers
                if isinstance(h, logging.StreamHandler) and getattr(h, "stream", None) is stream]
    with progress:
        proxy = _LogProxy(console)
        for h in handlers:
            h.setStream(proxy)
        try:
            yield _Live(progress)
        finally:
            for h in handlers:
                h.setStream(stream)


class _LogProxy:
    """A stream for log handlers while the progress line shows: each line printed above it."""

    def __init__(self, console: Any) -> None:
        self.console, self.buffer = console, ""

    def write(self, text: str) -> int:
        self.buffer += text
        *lines, self.buffer = self.buffer.split("\n")
        for line in lines:
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)
        return len(text)

    def flush(self) -> None:
        pass

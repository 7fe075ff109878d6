"""Text rendering for people: aligned, optionally coloured tables. JSON output does not come through here.

Colour follows the usual conventions: on when writing to a terminal, off with NO_COLOR, forced with
FORCE_COLOR. On a terminal, tables are Rich tables (the only module importing rich): numbers right-aligned,
long cells folded to the terminal's width instead of wrapping the whole line; piped, they stay plain
two-space-separated columns that scripts and tests can rely on byte for byte.
This module must not decide what to show, only how.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterable, Sequence
from typing import TextIO

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

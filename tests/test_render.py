"""Terminal tables: plain columns when piped (byte-stable), Rich tables fitted to a narrow terminal when
coloured; --format json never changes with the terminal."""

from __future__ import annotations

from pathlib import Path

from monitor.cli import main
from monitor.render import _ANSI, Painter, table, visible_len

SHOP = Path(__file__).resolve().parents[1] / "config" / "examples" / "shop"
ROWS = [["prod", "12", "a-very-long-flow-key|shop/web|shop/db-primary-replica-set-member|5432/TCP"],
        ["staging", "3", "short"]]


def test_piped_table_is_plain_two_space_columns():
    assert table(["CLUSTER", "RUNS", "FLOW"], ROWS, Painter(False)).splitlines() == [
        "CLUSTER  RUNS  FLOW",
        "prod     12    a-very-long-flow-key|shop/web|shop/db-primary-replica-set-member|5432/TCP",
        "staging  3     short"]


def test_terminal_table_fits_a_narrow_terminal_and_aligns_numbers(monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    paint = Painter(True)
    out = table(["CLUSTER", "RUNS", "FLOW"], [[paint(ROWS[0][0], "red"), *ROWS[0][1:]], ROWS[1]], paint)
    lines = out.splitlines()
    assert max(visible_len(ln) for ln in lines) <= 40
    assert "\x1b[1m" in lines[0] and "\x1b[31mprod" in out  # bold header, the cell's own colour kept
    text = "".join(ln.strip() for ln in lines)
    assert "5432/TCP" in text and "shop/db-primary" in text.replace(" ", "")  # folded, not cut
    plain = [_ANSI.sub("", ln) for ln in lines]
    staging, prod = next(ln for ln in plain if "staging" in ln), next(ln for ln in plain if "prod" in ln)
    assert staging.index(" 3 ") + 1 == prod.index("12") + 1  # right-aligned: the units line up


def test_json_is_byte_stable_on_a_terminal(monkeypatch, capsys):
    assert main(["matrix", "--manifests", str(SHOP), "--format", "json"]) == 0
    plain = capsys.readouterr().out
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "30")
    assert main(["matrix", "--manifests", str(SHOP), "--format", "json"]) == 0
    assert capsys.readouterr().out == plain
    assert main(["matrix", "--manifests", str(SHOP)]) == 0
    assert "\x1b[" in capsys.readouterr().out  # the table itself did change

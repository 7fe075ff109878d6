"""docs/RELIABILITY.md stays true (issue 15 "Checked by"): each row's `test` cell names tests that exist and run.

A `test` cell names one or more tests as `tests/test_x.py::test_name` (a parametrized id `test_name[sqlite]`
and a class `tests/test_x.py::TestY::test_z` allowed), with or without backticks; "same test" means the tests of
the row above in the same section. Each must be a function in
that file, not skipped unconditionally (`@pytest.mark.skip`, `skipif(True)`, a module `pytestmark` that skips,
or a `pytest.skip()` the function always reaches). A test that only runs when asked (a `soak` marker, or a
`skipif` on an environment variable) is opt-in: its row must say "opt-in" and give its last measured result.
Every row has a measured result. Sections still empty are tolerated by those checks (other developers fill
their sections in parallel); `test_every_section_has_rows` is the separate check that fails while one is empty.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "RELIABILITY.md"
SECTIONS = range(1, 10)  # issue 15 items 1-9, one section each
TEST_REF = re.compile(r"(tests/[\w/]+\.py)::((?:\w+::)?\w+)(\[[^\]\s`]*\])?")
OPT_IN_MARKERS = {"soak"}


@dataclass(frozen=True)
class Row:
    section: int
    line: int
    cells: dict[str, str]

    @property
    def where(self) -> str:
        return f"docs/RELIABILITY.md line {self.line} (section {self.section})"


def split_row(line: str) -> list[str]:
    inner = line.strip()[1:-1] if line.strip().endswith("|") else line.strip()[1:]
    return [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", inner)]


def parse(text: str) -> dict[int, list[Row]]:
    """Section number -> its table rows (header names as keys). Raises AssertionError on a malformed table."""
    sections: dict[int, list[Row]] = {}
    section: int | None = None
    header: list[str] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        heading = re.match(r"##\s+(\d+)\.", line)
        if heading:
            section, header = int(heading.group(1)), None
            sections.setdefault(section, [])
            continue
        if section is None or not line.lstrip().startswith("|"):
            if not line.strip():
                continue
            header = None if not line.lstrip().startswith("|") else header
            continue
        cells = split_row(line)
        if header is None:
            header = [c.lower() for c in cells]
            assert len(header) == 5 and header[-1] == "test", f"line {number}: table header {header}"
            continue
        if all(set(c) <= set("-: ") for c in cells):
            continue  # the |---| line
        assert len(cells) == len(header), f"line {number}: {len(cells)} cells, the header has {len(header)}"
        sections[section].append(Row(section, number, dict(zip(header, cells, strict=True))))
    return sections


@cache
def rows_by_section() -> dict[int, list[Row]]:
    return parse(DOC.read_text(encoding="utf-8"))


def all_rows() -> list[Row]:
    return [r for rows in rows_by_section().values() for r in rows]


# ------------------------------------------------------------------------------------------- test lookup
@cache
def module_tree(path: str) -> ast.Module:
    return ast.parse((REPO / path).read_text(encoding="utf-8"), path)


def _is_pytest_attr(node: ast.AST, *names: str) -> bool:
    """pytest.mark.<name> or pytest.<name> (possibly called)."""
    node = node.func if isinstance(node, ast.Call) else node
    return isinstance(node, ast.Attribute) and node.attr in names and "pytest" in ast.unparse(node)


def _unconditional_skip(decorator: ast.AST) -> bool:
    if _is_pytest_attr(decorator, "skip"):
        return True
    if isinstance(decorator, ast.Call) and _is_pytest_attr(decorator, "skipif"):
        return bool(decorator.args) and isinstance(decorator.args[0], ast.Constant) and bool(decorator.args[0].value)
    return False


def _opt_in(decorator: ast.AST) -> bool:
    node = decorator.func if isinstance(decorator, ast.Call) else decorator
    if isinstance(node, ast.Attribute) and node.attr in OPT_IN_MARKERS:
        return True
    if isinstance(decorator, ast.Call) and _is_pytest_attr(decorator, "skipif") and decorator.args:
        condition = ast.unparse(decorator.args[0])
        return "environ" in condition or "getenv" in condition
    return False


def _module_marks(tree: ast.Module) -> list[ast.AST]:
    marks: list[ast.AST] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "pytestmark"
                                                 for t in node.targets):
            value = node.value
            marks += value.elts if isinstance(value, ast.List | ast.Tuple) else [value]
    return marks


def find_test(path: str, name: str) -> tuple[ast.FunctionDef, list[ast.AST]]:
    """The test function and every mark that applies to it (module, class, function)."""
    tree = module_tree(path)
    marks = _module_marks(tree)
    scope: list[ast.stmt] = tree.body
    *classes, function = name.split("::")
    for cls in classes:
        found = next((n for n in scope if isinstance(n, ast.ClassDef) and n.name == cls), None)
        assert found is not None, f"{path} has no class {cls}"
        marks += found.decorator_list
        scope = found.body
    fn = next((n for n in scope if isinstance(n, ast.FunctionDef) and n.name == function), None)
    assert fn is not None, f"{path} has no test function {name}"
    assert function.startswith("test"), f"{path}::{name} is not a test (pytest collects test* functions)"
    return fn, marks + fn.decorator_list


def always_skips(fn: ast.FunctionDef) -> bool:
    """A pytest.skip() in the function's own body (not under an if/try/with): every run ends there."""
    return any(isinstance(s, ast.Expr) and isinstance(s.value, ast.Call) and _is_pytest_attr(s.value, "skip")
               for s in fn.body)


def refs(row: Row) -> list[tuple[str, str, str]]:
    return [(m.group(1), m.group(2), m.group(3) or "") for m in TEST_REF.finditer(row.cells["test"])]


# --------------------------------------------------------------------------------------------- checks
def test_the_doc_has_a_section_and_table_per_issue_item() -> None:
    found = rows_by_section()
    assert sorted(found) == list(SECTIONS)
    text = DOC.read_text(encoding="utf-8")
    assert text.count("| test |") == len(SECTIONS)


DITTO = re.compile(r"^(same test|as above|ditto|same)\b", re.I)  # "same test, opt-in" too


def test_each_row_names_tests_that_exist_and_are_not_skipped_unconditionally() -> None:
    rows = all_rows()
    previous: Row | None = None
    for row in rows:
        named = refs(row)
        if not named and DITTO.match(row.cells["test"].strip("` ")) and previous and previous.section == row.section:
            named = refs(previous)  # "same test": the row above's test checks this fault too
        else:
            previous = row
        assert named, f"{row.where}: the test cell names no test (tests/test_x.py::test_name): {row.cells['test']!r}"
        assert row.cells["measured"], f"{row.where}: no measured result"
        opt_in = False
        for path, name, _param in named:
            assert (REPO / path).is_file(), f"{row.where}: no file {path}"
            fn, marks = find_test(path, name)
            assert not any(_unconditional_skip(m) for m in marks), f"{row.where}: {path}::{name} is always skipped"
            assert not always_skips(fn), f"{row.where}: {path}::{name} calls pytest.skip() unconditionally"
            opt_in = opt_in or any(_opt_in(m) for m in marks)
        if opt_in:
            assert "opt-in" in " ".join(row.cells.values()).lower(), (
                f"{row.where}: an opt-in test (soak marker or an environment switch) must say 'opt-in' in its row")


def test_every_section_has_rows() -> None:
    """Fails while a section of docs/RELIABILITY.md is still empty: the issue is done only when none is."""
    empty = [n for n, rows in rows_by_section().items() if not rows]
    assert empty == [], f"docs/RELIABILITY.md sections without a row: {empty}"


# ------------------------------------------------------------------------------- the checker itself
BAD = """## 1. A
| fault | injected by | the test asserts | measured | test |
|---|---|---|---|---|
| a | b | c | 1 s | `tests/test_reliability_doc.py::test_nothing_here` |
## 2. B
| fault | injected by | the test asserts | measured | test |
|---|---|---|---|---|
"""


def test_the_checker_catches_a_missing_test_an_unconditional_skip_and_an_unmarked_opt_in(tmp_path) -> None:
    sections = parse(BAD)
    assert [len(sections[1]), len(sections[2])] == [1, 0]
    with pytest.raises(AssertionError, match="has no test function test_nothing_here"):
        find_test(*refs(sections[1][0])[0][:2])
    source = tmp_path / "t.py"
    source.write_text("import os\nimport pytest\n@pytest.mark.skip(reason='x')\ndef test_a(): pass\n"
                      "def test_b():\n    pytest.skip('never')\n"
                      "@pytest.mark.skipif(not os.environ.get('SOAK'), reason='opt-in')\ndef test_c(): pass\n"
                      "@pytest.mark.skipif(os.geteuid() != 0, reason='root')\ndef test_d(): pass\n")
    tree = ast.parse(source.read_text())
    fns = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    assert _unconditional_skip(fns["test_a"].decorator_list[0]) and always_skips(fns["test_b"])
    assert _opt_in(fns["test_c"].decorator_list[0]) and not _unconditional_skip(fns["test_c"].decorator_list[0])
    assert not _opt_in(fns["test_d"].decorator_list[0]) and not _unconditional_skip(fns["test_d"].decorator_list[0])
    assert split_row(r"| a \| b | `c` |") == ["a | b", "`c`"]
    assert refs(Row(1, 1, {"test": "`tests/test_x.py::test_y[sqlite]`, tests/test_z.py::TestA::test_b"})) == [
        ("tests/test_x.py", "test_y", "[sqlite]"), ("tests/test_z.py", "TestA::test_b", "")]

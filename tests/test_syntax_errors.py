"""Syntax errors in a user's file read the same everywhere (errors.syntax_error): manifests, suite, config,
bundles and snapshots each say `FILE: not valid YAML|JSON: <problem> (line L, column C)`, on one line."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from monitor.errors import InputError
from monitor.manifests import load_manifests
from monitor.settings import load_settings
from monitor.snapshot import snapshot_from_json
from monitor.suite import load_suite

READERS = {
    "manifests": lambda p: load_manifests(p.parent),
    "suite": load_suite,
    "config": lambda p: load_settings(p, env={}),
}


@pytest.mark.parametrize("reader", READERS)
@pytest.mark.parametrize(("text", "where"), [
    ("a: [1, 2\nb: 3\n", " (line 2, column 2)"),
    ("a: b\n c: d\n", " (line 2, column 3)"),
    # PyYAML's reader error has no position mark and a two-line str(): still one line.
    ("a: \x07\n", ""),
])
def test_yaml_syntax_errors_read_the_same_in_every_file(tmp_path: Path, reader: str, text: str, where: str) -> None:
    path = tmp_path / "in.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as e:
        READERS[reader](path)
    # The problem's wording is the parser's (libyaml for manifests, which are large; PyYAML elsewhere).
    assert re.fullmatch(rf"{re.escape(str(path))}: not valid YAML: [^\n]+{re.escape(where)}", str(e.value)), e.value
    if not where:
        assert "character #x0007" in str(e.value) and "position" not in str(e.value)


def test_json_syntax_errors_say_where(tmp_path: Path) -> None:
    path = tmp_path / "in.json"
    path.write_text('{"kind": "Pod",\n "metadata": }\n')
    with pytest.raises(InputError) as e:
        load_manifests(tmp_path)
    assert str(e.value) == f"{path}: not valid JSON: Expecting value (line 2, column 14)"
    with pytest.raises(InputError) as e:
        snapshot_from_json('{"pods": [}')
    assert str(e.value) == "snapshot: not valid JSON: Expecting value (line 1, column 11)"
    with pytest.raises(json.JSONDecodeError):
        json.loads('{"pods": [}')  # (the stdlib's own wording differs: ours is the same for YAML and JSON)

"""A plain clone (no ../shared beside it) tests itself: the oracle-backed conformance tests are left out with a
line in pytest's summary saying so and why; with CI=true a missing oracle fails; where the oracle is, they run.

Each case runs pytest on tests/test_conformance.py in a subprocess with NPD_TEST_ORACLE pointing at an empty
directory (what a plain clone sees), so the session's own oracle setting does not matter.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.oracle import oracle_dir

REPO = Path(__file__).resolve().parents[1]


def run_conformance(oracle: Path, ci: str | None, *select: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PYTEST_ADDOPTS")}
    env["NPD_TEST_ORACLE"] = str(oracle)
    if ci is not None:
        env["CI"] = ci
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                           *(select or ["tests/test_conformance.py"])],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)


def test_without_the_oracle_conformance_is_deselected_and_the_summary_says_why(tmp_path):
    r = run_conformance(tmp_path / "nowhere", ci=None)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "skipped" not in out
    assert " deselected" in out
    line = next(line for line in out.splitlines() if line.startswith("shared-oracle conformance did not run"))
    assert line == (f"shared-oracle conformance did not run ({_deselected(out)} tests deselected): conformance "
                    f"oracle not found at {tmp_path / 'nowhere'} (clone shared/ next to the repository or set "
                    "NPD_TEST_ORACLE); with CI=true this fails")
    # What needs no oracle still runs.
    assert "1 passed" in out


def test_with_ci_true_a_missing_oracle_fails(tmp_path):
    r = run_conformance(tmp_path / "nowhere", ci="true")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "did not run" not in r.stdout
    assert f"conformance oracle not found at {tmp_path / 'nowhere'}" in r.stdout
    assert re.search(r"\b\d+ failed, 1 passed", r.stdout), r.stdout


@pytest.mark.oracle
def test_where_the_oracle_is_the_conformance_runs():
    oracle = oracle_dir()
    assert oracle is not None, "this checkout has ../shared/oracle (or NPD_TEST_ORACLE) beside it"
    r = run_conformance(oracle, None, "tests/test_conformance.py::test_cyclonus_port_82_is_not_judged_there")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "deselected" not in r.stdout and "did not run" not in r.stdout
    assert "skipped" not in r.stdout
    assert "1 passed" in r.stdout


def _deselected(out: str) -> int:
    summary = out.strip().splitlines()[-1]
    return int(summary.split(" deselected")[0].rsplit(" ", 1)[-1])

"""Where the shared conformance data (the oracle) is, and whether this test session must have it.

The oracle is read in place: ../shared/oracle next to the repository (CI clones the repo with shared/ beside
it), or $NPD_TEST_ORACLE (not NETPOL_DRIFT_*: that prefix is the product's settings). A plain clone has no
oracle: its conformance tests are deselected and the session summary says so; with CI=true a missing oracle is
a failure. This module must not read the oracle's content (tests/test_conformance.py does).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ENV = "NPD_TEST_ORACLE"
REPO = Path(__file__).resolve().parents[1]
MARKER = "oracle"
_NOT_RUN = pytest.StashKey[str]()


def oracle_path() -> Path:
    return Path(os.environ.get(ENV) or REPO.parent / "shared" / "oracle")


def oracle_dir() -> Path | None:
    """The oracle's directory, or None when it is not there."""
    path = oracle_path()
    return path if (path / "README.md").is_file() else None


def required() -> bool:
    """CI must prove conformance: there a missing oracle fails the tests instead of leaving them out."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def missing_message() -> str:
    return f"conformance oracle not found at {oracle_path()} (clone shared/ next to the repository or set {ENV})"


# --------------------------------------------------------------------------- pytest hooks (see conftest.py)
def deselect_without_oracle(config: pytest.Config, items: list[pytest.Item]) -> None:
    if oracle_dir() is not None or required():
        return
    gone = [i for i in items if i.get_closest_marker(MARKER)]
    if not gone:
        return
    items[:] = [i for i in items if not i.get_closest_marker(MARKER)]
    config.hook.pytest_deselected(items=gone)
    config.stash[_NOT_RUN] = (f"shared-oracle conformance did not run ({len(gone)} tests deselected): "
                              f"{missing_message()}; with CI=true this fails")


def summary_line(config: pytest.Config) -> str | None:
    return config.stash.get(_NOT_RUN, None)

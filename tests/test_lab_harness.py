"""The lab harness's own promises that need no running lab: lab tests fail without root, never skip.

Job: keep the "needs root" behaviour honest. Must not: start the lab.
"""

from __future__ import annotations

import os

import pytest

from tests.lab import fixtures


def test_lab_tests_fail_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(pytest.fail.Exception, match="lab tests need root"):
        fixtures.require_root()


def test_root_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    fixtures.require_root()

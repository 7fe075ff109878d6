"""Shared pytest configuration and fixtures (each block says whose fixtures it holds)."""

# --- lab fixtures (tests/lab/fixtures.py): `lab` (session), `lab_namespace` (per test); see tests/lab/README.md
from tests.lab.fixtures import Lab, lab, lab_namespace, make_namespace, pod_manifest  # noqa: F401

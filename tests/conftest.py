"""Shared pytest configuration and fixtures (each block says whose fixtures it holds)."""

# --- lab fixtures (tests/lab/fixtures.py): `lab` (session), `lab_namespace` (per test); see tests/lab/README.md
from tests.lab.fixtures import Lab, lab, lab_namespace, make_namespace, pod_manifest  # noqa: F401

# --- store fixtures (tests/postgres.py): `postgres_server` (session, a real throwaway PostgreSQL),
# `db_url` (per test, parametrized: an empty SQLite file and an empty PostgreSQL database)
from tests.postgres import db_url, postgres_server  # noqa: F401

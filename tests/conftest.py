"""Shared pytest configuration and fixtures (each block says whose fixtures it holds)."""

# --- lab fixtures (tests/lab/fixtures.py): `lab` (session), `lab_namespace` (per test); see tests/lab/README.md
from tests.lab.fixtures import Lab, lab, lab_namespace, make_namespace, pod_manifest  # noqa: F401

# --- conformance oracle (tests/oracle.py): without ../shared/oracle (and without CI=true) the `oracle` tests
# are deselected and the summary says why, in a line of its own.
from tests.oracle import deselect_without_oracle, summary_line

# --- store fixtures (tests/postgres.py): `postgres_server` (session, a real throwaway PostgreSQL),
# `db_url` (per test, parametrized: an empty SQLite file and an empty PostgreSQL database)
from tests.postgres import db_url, postgres_server  # noqa: F401


def pytest_collection_modifyitems(config, items):
    deselect_without_oracle(config, items)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    line = summary_line(config)
    if line:
        terminalreporter.write_sep("=", "conformance", yellow=True)
        terminalreporter.write_line(line, yellow=True)

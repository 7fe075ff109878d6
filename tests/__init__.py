"""Test suite of netpol-drift (unit, conformance, PostgreSQL and lab tests)."""

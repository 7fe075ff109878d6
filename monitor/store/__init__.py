"""The store: every run, snapshot, suite version, drift event and queued alert, in SQLite or PostgreSQL.

This package is the only place that imports sqlalchemy and alembic. Its API takes and returns models.py
dataclasses (Run, FlowResult, Snapshot) and small frozen dataclasses of its own (RunSummary, Alert,
PruneReport, ImportReport); an ORM row never leaves it. Every write is one transaction: a run, its result
set, its drift events and their alerts land together or not at all. A run whose results equal an earlier
run's only costs its own row (see schema.py for how).
This file only assembles `Store` from its parts and opens it; each part owns one concern:
database.py (URLs, engine, SQLite pragmas, transactions), migrate.py (schema revisions), encoding.py (times,
ids, digests, latencies), runs.py (runs, baselines, drift events), history.py (read queries), bundles.py
(export/import), retention.py (prune), outbox.py (alerts waiting to be sent), schema.py (the tables).
It must not decide anything about drift (compare.py does) nor read the clock (`now` comes in).
"""

from __future__ import annotations

from monitor.errors import StoreError
from monitor.store.bundles import BUNDLE_FORMAT, BUNDLE_SCHEMA, Bundles, ImportReport, parse_bundle
from monitor.store.database import _check_reachable, is_new_sqlite, make_engine, require_existing, safe_url
from monitor.store.history import History
from monitor.store.migrate import (
    MIGRATIONS,
    SCHEMA_REVISION,
    _current,
    alembic_head,
    current_revision,
    downgrade,
    head_revision,
    schema_differences,
    upgrade,
)
from monitor.store.outbox import Alert, IncidentRecord, Outbox, alert_event
from monitor.store.retention import PruneReport, Retention
from monitor.store.runs import RunSummary


class Store(History, Bundles, Retention, Outbox):
    """One database. Open with Store.open(url); every method is its own transaction."""

    @classmethod
    def open(cls, url: str, *, password: str | None = None, migrate: bool = False) -> Store:
        """Connects and checks the schema is current (or brings it there with migrate=True)."""
        if not migrate:
            require_existing(url)
        if migrate:
            upgrade(url, password=password)
        engine = make_engine(url, password)
        _check_reachable(engine, url)
        have, want = _current(engine), head_revision()
        if have != want:
            engine.dispose()
            state = f"is at schema revision {have}" if have else "has no netpol-drift schema"
            raise StoreError(f"database {safe_url(url)} {state}, this netpol-drift needs {want}: "
                             "run `netpol-drift db upgrade`")
        return cls(engine, url)


__all__ = [
    "BUNDLE_FORMAT", "BUNDLE_SCHEMA", "MIGRATIONS", "SCHEMA_REVISION", "Alert", "ImportReport", "IncidentRecord",
    "PruneReport",
    "RunSummary", "Store", "StoreError", "alembic_head", "alert_event", "current_revision", "downgrade",
    "head_revision", "is_new_sqlite", "make_engine", "parse_bundle", "safe_url", "schema_differences", "upgrade",
]

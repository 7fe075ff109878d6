"""Alembic environment: runs migrations on the store's engine (or on the URL alembic.ini names).

`netpol-drift db upgrade` passes its engine in config.attributes["engine"], so migrations see the same SQLite
pragmas and URL handling as the store. Run from the repository, `alembic upgrade head` uses alembic.ini's
sqlalchemy.url (or NETPOL_DRIFT_STORE_URL). SQLite gets batch mode so that ALTERs work there too.
This file must not hold schema: that is monitor/store/schema.py, which migrations must match.
"""

from __future__ import annotations

import os

from alembic import context

from monitor.store import make_engine
from monitor.store.schema import metadata

config = context.config


def _engine():
    engine = config.attributes.get("engine")
    if engine is not None:
        return engine, False
    url = os.environ.get("NETPOL_DRIFT_STORE_URL") or config.get_main_option("sqlalchemy.url")
    return make_engine(url, os.environ.get("NETPOL_DRIFT_DATABASE_PASSWORD")), True


def run_migrations_online() -> None:
    engine, owned = _engine()
    try:
        with engine.connect() as connection:
            context.configure(connection=connection, target_metadata=metadata,
                              render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
            with context.begin_transaction():
                context.run_migrations()
    finally:
        if owned:
            engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported: run against a database")
run_migrations_online()

"""Alembic environment: runs migrations on the store's engine (or on the URL alembic.ini names).

`netpol-drift db upgrade` passes its engine in config.attributes["engine"], so migrations see the same SQLite
pragmas and URL handling as the store. Run from the repository, `alembic upgrade head` reads the store URL and
password through monitor.settings like every command does (NETPOL_DRIFT_STORE_URL, the database password from
the environment, `-x config=FILE` for a settings file). SQLite gets batch mode so that ALTERs work there too.
This file must not hold schema: that is monitor/store/schema.py, which migrations must match.
"""

from __future__ import annotations

from alembic import context

from monitor.settings import load_settings
from monitor.store import make_engine
from monitor.store.schema import metadata

config = context.config


def _engine():
    engine = config.attributes.get("engine")
    if engine is not None:
        return engine, False
    settings = load_settings(context.get_x_argument(as_dictionary=True).get("config"))
    return make_engine(settings.store.url, settings.secrets.database_password), True


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

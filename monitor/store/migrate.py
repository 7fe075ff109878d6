"""The schema's version: Alembic upgrades and downgrades, the current and head revisions, drift from schema.py.

It owns running the migrations (the repository's alembic/, shipped as store/migrations/ in a wheel) on our
engine (so SQLite gets its pragmas there too) and knowing the newest revision without importing Alembic
(opening the store must stay fast).
It must not hold schema (schema.py, which migrations must match) nor read or write the store's rows.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import Engine, inspect
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from monitor.errors import InputError, StoreError, StoreUnavailableError
from monitor.store.database import _check_reachable, _reason, _sqlite_path, make_engine, require_existing, safe_url
from monitor.store.schema import metadata


def _migrations_dir() -> Path:
    # A wheel (and the image) carries the migrations in the package (setup.py copies them there); a checkout
    # or an editable install has them only in the repository's top-level alembic/, Alembic's usual place.
    packaged = Path(__file__).resolve().parent / "migrations"
    return packaged if (packaged / "env.py").is_file() else Path(__file__).resolve().parents[2] / "alembic"


MIGRATIONS = _migrations_dir()


def _alembic_config(engine: Engine):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # Shared with env.py so that migrations run on our engine (and on SQLite, in its pragmas).
    cfg.attributes["engine"] = engine
    return cfg


# The newest migration. Kept here so that opening the store (every CLI command) does not import Alembic
# (~150 ms); a test checks it equals Alembic's own head, so a new migration cannot forget to bump it.
SCHEMA_REVISION = "0006"


def head_revision() -> str:
    return SCHEMA_REVISION


def alembic_head() -> str:
    from alembic.script import ScriptDirectory

    return ScriptDirectory(str(MIGRATIONS)).get_current_head()


def upgrade(url: str, revision: str = "head", password: str | None = None) -> str | None:
    """Brings the schema to `revision` (creating the SQLite file if needed); returns the new revision."""
    return _migrate(url, password, "upgrade", revision)


def downgrade(url: str, revision: str, password: str | None = None) -> str | None:
    return _migrate(url, password, "downgrade", revision)


def current_revision(url: str, password: str | None = None) -> str | None:
    """The schema revision of an existing database; never creates one (SQLite would make an empty file)."""
    require_existing(url)
    engine = make_engine(url, password)
    try:
        _check_reachable(engine, url)
        return _current(engine)
    finally:
        engine.dispose()


def _current(engine: Engine) -> str | None:
    # Alembic's own bookkeeping table, read directly (see SCHEMA_REVISION for why not through Alembic).
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        versions = list(conn.exec_driver_sql("SELECT version_num FROM alembic_version").scalars())
    if len(versions) > 1:
        raise StoreError(f"the database has several schema heads ({', '.join(sorted(versions))})")
    return versions[0] if versions else None


def _migrate(url: str, password: str | None, direction: str, revision: str) -> str | None:
    from alembic import command
    from alembic.util.exc import CommandError

    path = _sqlite_path(url)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(url, password)
    try:
        _check_reachable(engine, url)
        try:
            getattr(command, direction)(_alembic_config(engine), revision)
        except CommandError as e:
            raise InputError(f"cannot {direction} to {revision!r}: {e}") from e
        except SQLAlchemyError as e:
            error = StoreUnavailableError if isinstance(e, OperationalError) else StoreError
            raise error(f"{direction} of {safe_url(url)} failed: {_reason(e)}") from e
        return _current(engine)
    finally:
        engine.dispose()


def schema_differences(url: str, password: str | None = None) -> list:
    """Alembic's autogenerate comparison of the database with schema.py: [] when they agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(url, password)
    try:
        with engine.connect() as conn:
            return compare_metadata(MigrationContext.configure(conn), metadata)
    finally:
        engine.dispose()

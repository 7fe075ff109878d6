"""The database connection: URLs, the engine with its SQLite pragmas, transactions, and database errors.

It owns turning a URL (and an optional password) into a SQLAlchemy engine, the SQLite settings every
connection gets (WAL, foreign keys, BEGIN IMMEDIATE for writers), reachability checks, and the one-line
StoreError a database failure becomes. `StoreBase` is what every part of the Store shares: the engine, one
session per call, the write option, and the cache of decoded result sets (runs.py fills it, retention.py
empties it).
It must not know the tables' meaning (runs.py, history.py...) nor migrate the schema (migrate.py).
"""

from __future__ import annotations

import contextlib
import os
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any, Self

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from monitor.errors import StoreError, StoreUnavailableError
from monitor.models import FlowResult

_WRITE_OPTION = "netpol_drift_write"


def _sqlalchemy_url(url: str, password: str | None = None) -> URL:
    try:
        u = make_url(url)
    except ArgumentError as e:
        raise StoreError(f"not a database URL: {url!r}") from e
    # psycopg (3) is the driver we ship; plain postgresql:// would mean psycopg2 to SQLAlchemy.
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    if password and u.password is None and not u.drivername.startswith("sqlite"):
        u = u.set(password=password)
    return u


def safe_url(url: str | URL) -> str:
    """The URL as people may see it: never the password."""
    try:
        u = make_url(url) if isinstance(url, str) else url
    except ArgumentError:
        return "<invalid URL>"
    return u._replace(password=None).render_as_string(hide_password=False)


def _reason(e: BaseException) -> str:
    orig = getattr(e, "orig", None) or e
    lines = [ln.strip() for ln in str(orig).strip().splitlines() if ln.strip()]
    return lines[0] if lines else type(orig).__name__


def make_engine(url: str, password: str | None = None) -> Engine:
    u = _sqlalchemy_url(url, password)
    kwargs: dict[str, Any] = {}
    if u.drivername.startswith("sqlite"):
        # How long a writer waits for another writer's lock before the call fails ("database is locked"):
        # 30 s, or the URL's own `?timeout=SECONDS`.
        try:
            kwargs["connect_args"] = {"timeout": float(u.query.get("timeout", 30))}
        except (TypeError, ValueError) as e:
            raise StoreError(f"database URL {safe_url(u)}: timeout must be a number of seconds") from e
    elif u.drivername.startswith("postgresql"):
        kwargs["connect_args"] = {"connect_timeout": 5}
        kwargs["pool_pre_ping"] = True
    try:
        engine = create_engine(u, **kwargs)
    except (ArgumentError, NoSuchModuleError) as e:
        raise StoreError(f"unsupported database URL {safe_url(u)}: {_reason(e)}") from e
    if u.drivername.startswith("sqlite"):
        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no branch
            cur = dbapi_conn.cursor()
            # WAL: readers (dashboard, CLI) never block the writer; NORMAL is durable across crashes of the
            # process and costs no fsync per run; foreign keys are off in SQLite unless asked for.
            # A fresh connection does not know the file is already WAL and asks to switch, which takes the write
            # lock; under load a serve run's store open once failed that way in 0.5 s ("database is locked")
            # despite the busy timeout. A database is switched once, when created; later connections only read.
            if cur.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
            # pysqlite's own transaction handling does not BEGIN before a SAVEPOINT, so releasing one would
            # commit everything before it: take transactions over (SQLAlchemy's documented recipe).
            dbapi_conn.isolation_level = None

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            # Writers take the write lock up front: a deferred transaction that read first could not upgrade
            # to writing once another process (service vs `accept`) committed, and would fail at once.
            immediate = conn.get_execution_options().get(_WRITE_OPTION)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
    return engine


def _check_reachable(engine: Engine, url: str) -> None:
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except (DBAPIError, SQLAlchemyError, OSError) as e:
        engine.dispose()
        raise StoreUnavailableError(f"cannot reach database {safe_url(url)}: {_reason(e)}") from e


def _sqlite_path(url: str) -> str | None:
    try:
        u = make_url(url)
    except ArgumentError as e:
        raise StoreError(f"not a database URL: {url!r}") from e
    if u.drivername.startswith("sqlite") and u.database and u.database != ":memory:":
        return u.database
    return None


def require_existing(url: str) -> None:
    """Refuses an SQLite URL whose file does not exist: opening it would create an empty database."""
    path = _sqlite_path(url)
    if path and not os.path.exists(path):
        raise StoreError(f"no database at {path} (create it with `netpol-drift db upgrade`)")


def is_new_sqlite(url: str) -> bool:
    """An SQLite URL whose file does not exist yet (a first run may create it; anything else must exist)."""
    path = _sqlite_path(url)
    return bool(path) and not os.path.exists(path)


class StoreBase:
    """What every part of the Store shares: one engine, a session per call, database errors as StoreError."""

    def __init__(self, engine: Engine, url: str) -> None:
        self.engine = engine
        self.url = url
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        # Result sets never change once written: decoding one is the expensive part of `show`/`compare`.
        self._sets: OrderedDict[int, tuple[FlowResult, ...]] = OrderedDict()

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _tx(self, write: bool = False) -> Iterator[Session]:
        with self._sessions() as s, s.begin():
            if write:
                s.connection(execution_options={_WRITE_OPTION: True})
            yield s

    def _guard(self, what: str):
        return _Guard(self.url, what)


class _Guard:
    """Turns database failures inside a store call into one StoreError line (our own errors pass through)."""

    def __init__(self, url: str, what: str) -> None:
        self.url, self.what = url, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is not None and isinstance(exc, SQLAlchemyError):
            if (isinstance(exc, DBAPIError) and exc.connection_invalidated) or "connect" in _reason(exc).lower():
                raise StoreUnavailableError(f"cannot reach database {safe_url(self.url)}: {_reason(exc)}") from exc
            # OperationalError: the server went away mid-call, a lock held too long, a full disk: not our data.
            error = StoreUnavailableError if isinstance(exc, OperationalError) else StoreError
            raise error(f"{self.what} failed on {safe_url(self.url)}: {_reason(exc)}") from exc
        return False

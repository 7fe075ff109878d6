"""The store: every run, snapshot, suite version, drift event and queued alert, in SQLite or PostgreSQL.

This package is the only place that imports sqlalchemy and alembic. Its API takes and returns models.py
dataclasses (Run, FlowResult, Snapshot) and the small frozen dataclasses below; an ORM row never leaves it.
Every write is one transaction: a run, its result set, its drift events and their alerts land together or
not at all. A run whose results equal an earlier run's only costs its own row (see schema.py for how).
It must not decide anything about drift (compare.py does) nor read the clock (`now` comes in).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, delete, event, func, inspect, select, update
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, NoSuchModuleError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from monitor.compare import Cause, DriftEvent, Transitions
from monitor.errors import InputError, StoreError
from monitor.models import FlowResult, Outcome, Run, Snapshot, Verdict, to_jsonable
from monitor.snapshot import from_jsonable, snapshot_digest, snapshot_from_json, snapshot_to_json
from monitor.store.schema import (
    AlertRow,
    ClusterRow,
    DriftEventRow,
    FlowResultRow,
    ResultSetRow,
    RunRow,
    SnapshotRow,
    SuiteRow,
    metadata,
)

BUNDLE_FORMAT = "netpol-drift-bundle"
BUNDLE_SCHEMA = 1
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_WRITE_OPTION = "netpol_drift_write"


# ---------------------------------------------------------------------------------------- public records
@dataclass(frozen=True, slots=True)
class RunSummary:
    """A run without its results: what `history` lists."""

    id: str
    cluster: str
    started_at: str
    finished_at: str | None
    trigger: str
    status: str
    known_good: bool
    accepted_by: str | None
    snapshot_digest: str
    suite_digest: str
    results: int
    violations: int
    gaps: int
    skipped: int
    result_set: str  # digest: equal digests, equal results


@dataclass(frozen=True, slots=True)
class Alert:
    id: str
    created_at: str
    payload: str  # JSON
    attempts: int = 0
    last_error: str | None = None
    sent_at: str | None = None


@dataclass(frozen=True, slots=True)
class PruneReport:
    runs: int = 0
    snapshots: int = 0
    suites: int = 0
    result_sets: int = 0
    flow_results: int = 0
    events: int = 0
    alerts: int = 0


@dataclass(frozen=True, slots=True)
class ImportReport:
    imported: tuple[str, ...] = ()  # new run ids
    skipped: int = 0  # runs already present (same cluster, start time and trigger)


# ------------------------------------------------------------------------------------------ URL handling
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
        kwargs["connect_args"] = {"timeout": 30}
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
        raise StoreError(f"cannot reach database {safe_url(url)}: {_reason(e)}") from e


def _sqlite_path(url: str) -> str | None:
    try:
        u = make_url(url)
    except ArgumentError as e:
        raise StoreError(f"not a database URL: {url!r}") from e
    if u.drivername.startswith("sqlite") and u.database and u.database != ":memory:":
        return u.database
    return None


def is_new_sqlite(url: str) -> bool:
    """An SQLite URL whose file does not exist yet (a first run may create it; anything else must exist)."""
    path = _sqlite_path(url)
    return bool(path) and not os.path.exists(path)


# ------------------------------------------------------------------------------------------- migrations
def _alembic_config(engine: Engine):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # Shared with env.py so that migrations run on our engine (and on SQLite, in its pragmas).
    cfg.attributes["engine"] = engine
    return cfg


# The newest migration. Kept here so that opening the store (every CLI command) does not import Alembic
# (~150 ms); a test checks it equals Alembic's own head, so a new migration cannot forget to bump it.
SCHEMA_REVISION = "0001"


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
            raise StoreError(f"{direction} of {safe_url(url)} failed: {_reason(e)}") from e
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


# ------------------------------------------------------------------------------------------- encodings
def _dt(iso: str | None) -> datetime | None:
    """ISO 8601 in, naive UTC out (the storage convention)."""
    if iso is None:
        return None
    try:
        value = datetime.fromisoformat(iso)
    except ValueError as e:
        raise InputError(f"not an ISO 8601 time: {iso!r}") from e
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    text = value.replace(tzinfo=None).isoformat(timespec="microseconds" if value.microsecond else "seconds")
    return text + "Z"


def _stable(r: FlowResult) -> tuple:
    return (r.case, r.source, r.destination, r.port, r.protocol, str(r.expected), str(r.intent),
            str(r.outcome), str(r.verdict), r.explanation, r.reason, r.node)


def _stable_text(r: FlowResult) -> str:
    # repr of a tuple of str/int/None is unambiguous and several times faster than JSON: this runs 500
    # times per stored run.
    return repr(_stable(r))


def _result_digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _set_digest(texts: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(texts).encode()).hexdigest()


def _encode_ids(ids: Sequence[int]) -> bytes:
    out = bytearray()
    prev = 0
    for i in ids:
        d = i - prev
        prev = i
        z = (d << 1) ^ (d >> 63)  # zigzag: small negative deltas stay small
        while True:
            b = z & 0x7F
            z >>= 7
            if z:
                out.append(b | 0x80)
            else:
                out.append(b)
                break
    return zlib.compress(bytes(out), 9)


def _decode_ids(blob: bytes) -> list[int]:
    data = zlib.decompress(blob)
    ids, prev, z, shift = [], 0, 0, 0
    for b in data:
        z |= (b & 0x7F) << shift
        if b & 0x80:
            shift += 7
            continue
        prev += (z >> 1) ^ -(z & 1)
        ids.append(prev)
        z, shift = 0, 0
    return ids


# Latency in one byte: log scale, ~4% resolution from 0.05 ms to ~40 s; 0 means "none".
_LAT_SCALE = 24.0


def _lat_byte(ms: float | None) -> int:
    if ms is None or ms < 0 or math.isnan(ms):
        return 0
    return 1 + min(254, round(math.log1p(ms) * _LAT_SCALE))


def _lat_value(b: int) -> float | None:
    return None if b == 0 else round(math.expm1((b - 1) / _LAT_SCALE), 2)


def _encode_volatile(results: Sequence[FlowResult]) -> bytes | None:
    raw = bytes(_lat_byte(r.latency_ms) for r in results) + bytes(min(255, r.attempts) for r in results)
    return zlib.compress(raw, 9) if any(raw) else None


_LAT_VALUES = [_lat_value(b) for b in range(256)]


def _apply_volatile(fields: Sequence[tuple], blob: bytes | None) -> list[FlowResult]:
    """Results from their stable fields (9 before latency/attempts, 3 after) and the run's volatile bytes."""
    if not blob:
        return [FlowResult(*f[:9], None, 0, *f[9:]) for f in fields]
    raw = zlib.decompress(blob)
    n = len(fields)
    if len(raw) != 2 * n:
        raise StoreError(f"run data is damaged: {len(raw)} volatile bytes for {n} results")
    lat = _LAT_VALUES
    return [FlowResult(*f[:9], lat[raw[i]], raw[n + i], *f[9:]) for i, f in enumerate(fields)]


# Plain columns rather than ORM entities: `show` and `compare` read 500 of them per run.
_RESULT_COLUMNS = (FlowResultRow.id, FlowResultRow.case, FlowResultRow.source, FlowResultRow.destination,
                   FlowResultRow.port, FlowResultRow.protocol, FlowResultRow.expected, FlowResultRow.intent,
                   FlowResultRow.outcome, FlowResultRow.verdict, FlowResultRow.explanation, FlowResultRow.reason,
                   FlowResultRow.node)


def _fields_from_row(row: Any) -> tuple:
    return (row.case, row.source, row.destination, row.port, row.protocol, Verdict(row.expected),
            Verdict(row.intent), Outcome(row.outcome), Verdict(row.verdict), row.explanation, row.reason, row.node)


# ------------------------------------------------------------------------------------------------ store
class Store:
    """One database. Open with Store.open(url); every method is its own transaction."""

    def __init__(self, engine: Engine, url: str) -> None:
        self.engine = engine
        self.url = url
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        # Result sets never change once written: decoding one is the expensive part of `show`/`compare`.
        self._sets: OrderedDict[int, tuple[FlowResult, ...]] = OrderedDict()

    @classmethod
    def open(cls, url: str, *, password: str | None = None, migrate: bool = False) -> Store:
        """Connects and checks the schema is current (or brings it there with migrate=True)."""
        path = _sqlite_path(url)
        if path and not migrate and not os.path.exists(path):
            raise StoreError(f"no database at {path} (create it with `netpol-drift db upgrade`)")
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

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
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

    # ----------------------------------------------------------------------------------------- writes
    def save_run(self, run: Run, *, now: str, snapshot: Snapshot | None = None, suite_text: str | None = None,
                 known_good: bool = False, transitions: Transitions | None = None) -> str:
        """Stores the run (and its snapshot, events and alerts) in one transaction; returns the run id."""
        with self._guard("save run"), self._tx(write=True) as s:
            return str(self._save(s, run, now=_dt(now), snapshot=snapshot, suite_text=suite_text,
                                  known_good=known_good, transitions=transitions or Transitions()))

    def _save(self, s: Session, run: Run, *, now: datetime, snapshot: Snapshot | None, suite_text: str | None,
              known_good: bool, transitions: Transitions, accepted_by: str | None = None) -> int:
        cluster_id = self._cluster_id(s, run.cluster, now)
        suite_id = self._get_or_create(s, SuiteRow, run.suite_digest, lambda: {
            "created_at": now, "data": zlib.compress(suite_text.encode(), 9) if suite_text else None})
        if snapshot is not None:
            text = snapshot_to_json(snapshot)
            digest = snapshot_digest(snapshot)
            if digest != run.snapshot_digest:
                raise InputError(f"run {run.id or ''} says snapshot {run.snapshot_digest} but was given "
                                 f"{digest}".replace("run  ", "run "))
            snapshot_id = self._get_or_create(s, SnapshotRow, digest, lambda: {
                "created_at": now, "size": len(text.encode()), "data": zlib.compress(text.encode(), 9)})
        else:
            snapshot_id = s.scalar(select(SnapshotRow.id).where(SnapshotRow.digest == run.snapshot_digest))
            if snapshot_id is None:
                raise InputError(f"snapshot {run.snapshot_digest} is not stored; pass it with the run")
        set_id = self._result_set_id(s, run.results, now)
        row = RunRow(cluster_id=cluster_id, suite_id=suite_id, snapshot_id=snapshot_id, result_set_id=set_id,
                     trigger=run.trigger, status=run.status, error=run.error, started_at=_dt(run.started_at),
                     finished_at=_dt(run.finished_at), known_good=known_good, accepted_by=accepted_by,
                     accepted_at=now if accepted_by else None, n_results=len(run.results),
                     n_violations=sum(r.violation for r in run.results),
                     n_gaps=sum(r.enforcement_gap for r in run.results),
                     n_skipped=sum(r.outcome == Outcome.SKIPPED for r in run.results),
                     volatile=_encode_volatile(run.results))
        s.add(row)
        s.flush()
        self._apply_transitions(s, cluster_id, run.cluster, row.id, transitions, now)
        return row.id

    def _cluster_id(self, s: Session, name: str, now: datetime) -> int:
        found = s.scalar(select(ClusterRow.id).where(ClusterRow.name == name))
        if found is not None:
            return found
        try:
            with s.begin_nested():
                row = ClusterRow(name=name, created_at=now)
                s.add(row)
            return row.id
        except IntegrityError:  # another writer created it between our select and insert
            return s.scalar(select(ClusterRow.id).where(ClusterRow.name == name))

    def _get_or_create(self, s: Session, model: type, digest: str, values) -> int:
        found = s.scalar(select(model.id).where(model.digest == digest))
        if found is not None:
            return found
        try:
            with s.begin_nested():
                row = model(digest=digest, **values())
                s.add(row)
            return row.id
        except IntegrityError:
            return s.scalar(select(model.id).where(model.digest == digest))

    def _result_set_id(self, s: Session, results: Sequence[FlowResult], now: datetime) -> int:
        texts = [_stable_text(r) for r in results]
        set_digest = _set_digest(texts)
        found = s.scalar(select(ResultSetRow.id).where(ResultSetRow.digest == set_digest))
        if found is not None:
            return found  # the common case: nothing changed since some earlier run
        digests = [_result_digest(t) for t in texts]
        ids: dict[str, int] = {}
        unique = sorted(set(digests))
        for i in range(0, len(unique), 500):
            chunk = unique[i:i + 500]
            ids.update(s.execute(select(FlowResultRow.digest, FlowResultRow.id)
                                 .where(FlowResultRow.digest.in_(chunk))).all())
        by_digest = dict(zip(digests, results, strict=True))
        missing = [d for d in unique if d not in ids]
        for d in missing:
            r = by_digest[d]
            try:
                with s.begin_nested():
                    row = FlowResultRow(digest=d, flow_key=r.key, case=r.case, source=r.source,
                                        destination=r.destination, port=r.port, protocol=r.protocol,
                                        expected=str(r.expected), intent=str(r.intent), outcome=str(r.outcome),
                                        verdict=str(r.verdict), explanation=r.explanation, reason=r.reason,
                                        node=r.node)
                    s.add(row)
                ids[d] = row.id
            except IntegrityError:
                ids[d] = s.scalar(select(FlowResultRow.id).where(FlowResultRow.digest == d))
        return self._get_or_create(s, ResultSetRow, set_digest, lambda: {
            "created_at": now, "size": len(digests), "members": _encode_ids([ids[d] for d in digests])})

    def _apply_transitions(self, s: Session, cluster_id: int, cluster: str, run_id: int, t: Transitions,
                           now: datetime) -> None:
        for e in t.opened:
            row = DriftEventRow(cluster_id=cluster_id, flow_key=e.flow_key, kind=e.kind, detail=e.detail,
                                cause=json.dumps(to_jsonable(e.cause), sort_keys=True) if e.cause else None,
                                opened_at=_dt(e.opened_at), opened_run_id=run_id)
            s.add(row)
            s.flush()
            opened = replace(e, id=str(row.id), opened_run=str(run_id))
            s.add(AlertRow(created_at=now, payload=_alert_payload("opened", opened), attempts=0))
        for r in t.resolved:
            row = s.get(DriftEventRow, _int_id(r.event_id, "drift event"))
            if row is None or row.cluster_id != cluster_id:
                raise InputError(f"unknown drift event {r.event_id} of cluster {cluster}")
            if row.resolved_at is not None:
                continue  # already resolved: a second message would be a duplicate alert
            row.resolved_at, row.resolved_run_id, row.resolution = _dt(r.resolved_at), run_id, r.resolution
            s.flush()
            s.add(AlertRow(created_at=now, payload=_alert_payload("resolved", self._event(row, cluster)),
                           attempts=0))

    def accept(self, run_id: str, *, by: str, now: str) -> RunSummary:
        """A person declares this run the known-good baseline of its cluster and suite."""
        with self._guard("accept run"), self._tx(write=True) as s:
            row = self._run_row(s, run_id)
            row.known_good, row.accepted_by, row.accepted_at = True, by, _dt(now)
            s.flush()
            return self._summaries(s, [row.id])[0]

    def set_known_good(self, run_id: str, known_good: bool = True) -> None:
        with self._guard("mark run"), self._tx(write=True) as s:
            self._run_row(s, run_id).known_good = known_good

    # ------------------------------------------------------------------------------------------ reads
    def get_run(self, run_id: str) -> Run:
        with self._guard("read run"), self._tx() as s:
            row = self._run_row(s, run_id)
            return self._run(s, row)

    def run_detail(self, run_id: str) -> tuple[RunSummary, Run, list[DriftEvent]]:
        """What `show` needs, in one transaction: the summary, the results, the events the run opened or
        resolved."""
        with self._guard("read run"), self._tx() as s:
            row = self._run_row(s, run_id)
            summary = self._summaries(s, [row.id])[0]
            q = (select(DriftEventRow).where((DriftEventRow.opened_run_id == row.id)
                                             | (DriftEventRow.resolved_run_id == row.id))
                 .order_by(DriftEventRow.id))
            events = [self._event(e, summary.cluster) for e in s.scalars(q)]
            return summary, self._run(s, row), events

    def summary(self, run_id: str) -> RunSummary:
        with self._guard("read run"), self._tx() as s:
            return self._summaries(s, [self._run_row(s, run_id).id])[0]

    def history(self, cluster: str | None = None, limit: int = 100, before: str | None = None) -> list[RunSummary]:
        """Newest first."""
        with self._guard("read history"), self._tx() as s:
            q = select(RunRow.id).order_by(RunRow.started_at.desc(), RunRow.id.desc()).limit(limit)
            if cluster is not None:
                cid = s.scalar(select(ClusterRow.id).where(ClusterRow.name == cluster))
                if cid is None:
                    return []
                q = q.where(RunRow.cluster_id == cid)
            if before is not None:
                q = q.where(RunRow.started_at <= _dt(before))
            return self._summaries(s, list(s.scalars(q)))

    def latest_run(self, cluster: str, at: str | None = None) -> Run | None:
        runs = self.history(cluster, limit=1, before=at)
        return self.get_run(runs[0].id) if runs else None

    def known_good(self, cluster: str, suite_digest: str) -> Run | None:
        """The baseline drift is judged against: the newest known-good run of this cluster and suite."""
        with self._guard("read baseline"), self._tx() as s:
            row = s.scalars(select(RunRow).join(ClusterRow, ClusterRow.id == RunRow.cluster_id)
                            .join(SuiteRow, SuiteRow.id == RunRow.suite_id)
                            .where(ClusterRow.name == cluster, SuiteRow.digest == suite_digest,
                                   RunRow.known_good.is_(True))
                            .order_by(RunRow.started_at.desc(), RunRow.id.desc()).limit(1)).first()
            return self._run(s, row) if row is not None else None

    def table_counts(self) -> dict[str, int]:
        """Rows per table: for tests, the benchmark and `db current`."""
        with self._guard("count rows"), self._tx() as s:
            return {t.name: s.scalar(select(func.count()).select_from(t)) for t in metadata.sorted_tables}

    def clusters(self) -> list[str]:
        with self._guard("read clusters"), self._tx() as s:
            return list(s.scalars(select(ClusterRow.name).order_by(ClusterRow.name)))

    def snapshot(self, digest: str) -> Snapshot | None:
        with self._guard("read snapshot"), self._tx() as s:
            data = s.scalar(select(SnapshotRow.data).where(SnapshotRow.digest == digest))
        return snapshot_from_json(zlib.decompress(data)) if data is not None else None

    def suite_text(self, digest: str) -> str | None:
        with self._guard("read suite"), self._tx() as s:
            data = s.scalar(select(SuiteRow.data).where(SuiteRow.digest == digest))
        return zlib.decompress(data).decode() if data else None

    def events(self, cluster: str | None = None, *, open_only: bool = False, limit: int = 1000) -> list[DriftEvent]:
        with self._guard("read events"), self._tx() as s:
            q = select(DriftEventRow, ClusterRow.name).join(ClusterRow, ClusterRow.id == DriftEventRow.cluster_id)
            if cluster is not None:
                q = q.where(ClusterRow.name == cluster)
            if open_only:
                q = q.where(DriftEventRow.resolved_at.is_(None))
            q = q.order_by(DriftEventRow.opened_at.desc(), DriftEventRow.id.desc()).limit(limit)
            return [self._event(row, name) for row, name in s.execute(q)]

    def open_events(self, cluster: str) -> list[DriftEvent]:
        return self.events(cluster, open_only=True)

    # ----------------------------------------------------------------------------------------- outbox
    def pending_alerts(self, limit: int = 50) -> list[Alert]:
        with self._guard("read alerts"), self._tx() as s:
            rows = s.scalars(select(AlertRow).where(AlertRow.sent_at.is_(None)).order_by(AlertRow.id).limit(limit))
            return [_alert(r) for r in rows]

    def mark_alert_sent(self, alert_id: str, now: str) -> None:
        with self._guard("update alert"), self._tx(write=True) as s:
            s.execute(update(AlertRow).where(AlertRow.id == _int_id(alert_id, "alert"))
                      .values(sent_at=_dt(now), attempts=AlertRow.attempts + 1, last_error=None))

    def mark_alert_failed(self, alert_id: str, error: str) -> None:
        with self._guard("update alert"), self._tx(write=True) as s:
            s.execute(update(AlertRow).where(AlertRow.id == _int_id(alert_id, "alert"))
                      .values(attempts=AlertRow.attempts + 1, last_error=error[:2000]))

    # -------------------------------------------------------------------------------------- retention
    def prune(self, now: str, retention_days: int) -> PruneReport:
        """Deletes runs older than the retention, except accepted runs and each current baseline; then
        everything only they referenced (snapshots, suites, result sets, results), old resolved events and
        old sent alerts. One transaction."""
        cutoff = _dt(now) - timedelta(days=retention_days)
        with self._guard("prune"), self._tx(write=True) as s:
            # The same order as known_good(): newest start time, then newest id.
            rank = func.row_number().over(partition_by=(RunRow.cluster_id, RunRow.suite_id),
                                          order_by=(RunRow.started_at.desc(), RunRow.id.desc())).label("rank")
            ranked = select(RunRow.id, rank).where(RunRow.known_good.is_(True)).subquery()
            baselines = set(s.scalars(select(ranked.c.id).where(ranked.c.rank == 1)))
            doomed = [i for i in s.scalars(select(RunRow.id).where(RunRow.started_at < cutoff,
                                                                   RunRow.accepted_by.is_(None)))
                      if i not in baselines]
            for i in range(0, len(doomed), 500):
                chunk = doomed[i:i + 500]
                s.execute(update(DriftEventRow).where(DriftEventRow.opened_run_id.in_(chunk))
                          .values(opened_run_id=None))
                s.execute(update(DriftEventRow).where(DriftEventRow.resolved_run_id.in_(chunk))
                          .values(resolved_run_id=None))
                s.execute(delete(RunRow).where(RunRow.id.in_(chunk)))
            n_snap = s.execute(delete(SnapshotRow).where(SnapshotRow.id.not_in(select(RunRow.snapshot_id))
                                                         )).rowcount
            n_suite = s.execute(delete(SuiteRow).where(SuiteRow.id.not_in(select(RunRow.suite_id)))).rowcount
            n_sets = s.execute(delete(ResultSetRow).where(
                ResultSetRow.id.not_in(select(RunRow.result_set_id)))).rowcount
            live: set[int] = set()
            for blob in s.scalars(select(ResultSetRow.members)):
                live.update(_decode_ids(blob))
            dead = [i for i in s.scalars(select(FlowResultRow.id)) if i not in live]
            for i in range(0, len(dead), 500):
                s.execute(delete(FlowResultRow).where(FlowResultRow.id.in_(dead[i:i + 500])))
            n_events = s.execute(delete(DriftEventRow).where(DriftEventRow.resolved_at < cutoff)).rowcount
            n_alerts = s.execute(delete(AlertRow).where(AlertRow.sent_at < cutoff)).rowcount
        self._sets.clear()
        return PruneReport(len(doomed), n_snap, n_suite, n_sets, len(dead), n_events, n_alerts)

    # --------------------------------------------------------------------------------- export/import
    def export_bundle(self, run_ids: Iterable[str], now: str) -> dict:
        """A JSON-ready bundle of runs with their snapshots, for clusters that do not share a database."""
        with self._guard("export"), self._tx() as s:
            rows = [self._run_row(s, rid) for rid in run_ids]
            runs, snapshots = [], {}
            for row in rows:
                run = self._run(s, row)
                entry = to_jsonable(run)
                entry["known_good"], entry["accepted_by"] = row.known_good, row.accepted_by
                runs.append(entry)
                if run.snapshot_digest not in snapshots:
                    data = s.scalar(select(SnapshotRow.data).where(SnapshotRow.id == row.snapshot_id))
                    snapshots[run.snapshot_digest] = json.loads(zlib.decompress(data))
        return {"format": BUNDLE_FORMAT, "schema": BUNDLE_SCHEMA, "exported_at": now, "runs": runs,
                "snapshots": snapshots}

    def cluster_run_ids(self, cluster: str) -> list[str]:
        with self._guard("read runs"), self._tx() as s:
            q = (select(RunRow.id).join(ClusterRow, ClusterRow.id == RunRow.cluster_id)
                 .where(ClusterRow.name == cluster).order_by(RunRow.started_at, RunRow.id))
            ids = [str(i) for i in s.scalars(q)]
        if not ids:
            raise InputError(f"no runs of cluster {cluster!r} (see netpol-drift history)")
        return ids

    def import_bundle(self, bundle: Any, now: str) -> ImportReport:
        """All runs of the bundle, or none: validated first, written in one transaction."""
        runs, snapshots = parse_bundle(bundle)
        with self._guard("import"), self._tx(write=True) as s:
            imported, skipped = [], 0
            for run, known_good, accepted_by in runs:
                exists = s.scalar(select(RunRow.id).join(ClusterRow, ClusterRow.id == RunRow.cluster_id)
                                  .where(ClusterRow.name == run.cluster, RunRow.started_at == _dt(run.started_at),
                                         RunRow.trigger == run.trigger))
                if exists is not None:
                    skipped += 1
                    continue
                rid = self._save(s, replace(run, id=None), now=_dt(now), snapshot=snapshots[run.snapshot_digest],
                                 suite_text=None, known_good=known_good, transitions=Transitions(),
                                 accepted_by=accepted_by)
                imported.append(str(rid))
        return ImportReport(tuple(imported), skipped)

    # -------------------------------------------------------------------------------------- internals
    def _run_row(self, s: Session, run_id: str) -> RunRow:
        row = s.get(RunRow, _int_id(run_id, "run"))
        if row is None:
            raise InputError(f"unknown run {run_id} (see netpol-drift history)")
        return row

    def _results(self, s: Session, set_id: int) -> tuple[tuple, ...]:
        """The stable fields of a result set's members, in order (cached: sets never change)."""
        cached = self._sets.get(set_id)
        if cached is not None:
            self._sets.move_to_end(set_id)
            return cached
        blob = s.scalar(select(ResultSetRow.members).where(ResultSetRow.id == set_id))
        ids = _decode_ids(blob)
        rows: dict[int, Any] = {}
        unique = sorted(set(ids))
        for i in range(0, len(unique), 900):
            chunk = unique[i:i + 900]
            for row in s.execute(select(*_RESULT_COLUMNS).where(FlowResultRow.id.in_(chunk))):
                rows[row.id] = _fields_from_row(row)
        results = tuple(rows[i] for i in ids)
        self._sets[set_id] = results
        if len(self._sets) > 64:
            self._sets.popitem(last=False)
        return results

    def _run(self, s: Session, row: RunRow) -> Run:
        # One round trip for the three names (three scalar subqueries, no join to explain to the planner).
        cluster, snap, suite = s.execute(select(
            select(ClusterRow.name).where(ClusterRow.id == row.cluster_id).scalar_subquery(),
            select(SnapshotRow.digest).where(SnapshotRow.id == row.snapshot_id).scalar_subquery(),
            select(SuiteRow.digest).where(SuiteRow.id == row.suite_id).scalar_subquery())).one()
        results = _apply_volatile(self._results(s, row.result_set_id), row.volatile)
        return Run(cluster, _iso(row.started_at), _iso(row.finished_at), row.trigger, snap, suite,
                   tuple(results), row.status, row.error, str(row.id))

    def _summaries(self, s: Session, ids: list[int]) -> list[RunSummary]:
        if not ids:
            return []
        q = (select(RunRow, ClusterRow.name, SnapshotRow.digest, SuiteRow.digest, ResultSetRow.digest)
             .join(ClusterRow, ClusterRow.id == RunRow.cluster_id)
             .join(SnapshotRow, SnapshotRow.id == RunRow.snapshot_id)
             .join(SuiteRow, SuiteRow.id == RunRow.suite_id)
             .join(ResultSetRow, ResultSetRow.id == RunRow.result_set_id)
             .where(RunRow.id.in_(ids)))
        by_id = {}
        for row, cluster, snap, suite, rset in s.execute(q):
            by_id[row.id] = RunSummary(str(row.id), cluster, _iso(row.started_at), _iso(row.finished_at),
                                       row.trigger, row.status, row.known_good, row.accepted_by, snap, suite,
                                       row.n_results, row.n_violations, row.n_gaps, row.n_skipped, rset)
        return [by_id[i] for i in ids if i in by_id]

    def _event(self, row: DriftEventRow, cluster: str) -> DriftEvent:
        cause = from_jsonable(Cause, json.loads(row.cause), "cause") if row.cause else None
        return DriftEvent(cluster, row.flow_key, row.kind, _iso(row.opened_at), row.detail, cause,
                          str(row.opened_run_id) if row.opened_run_id else None, _iso(row.resolved_at),
                          str(row.resolved_run_id) if row.resolved_run_id else None, row.resolution, str(row.id))


class _Guard:
    """Turns database failures inside a store call into one StoreError line (our own errors pass through)."""

    def __init__(self, url: str, what: str) -> None:
        self.url, self.what = url, what

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc is not None and isinstance(exc, SQLAlchemyError):
            if (isinstance(exc, DBAPIError) and exc.connection_invalidated) or "connect" in _reason(exc).lower():
                raise StoreError(f"cannot reach database {safe_url(self.url)}: {_reason(exc)}") from exc
            raise StoreError(f"{self.what} failed on {safe_url(self.url)}: {_reason(exc)}") from exc
        return False


def _int_id(text: str, what: str) -> int:
    try:
        value = int(str(text).strip())
    except ValueError:
        value = -1
    if value <= 0 or value > 2**62:
        raise InputError(f"unknown {what} {text} (see netpol-drift history)" if what == "run"
                         else f"unknown {what} {text}")
    return value


def _alert(r: AlertRow) -> Alert:
    return Alert(str(r.id), _iso(r.created_at), r.payload, r.attempts, r.last_error, _iso(r.sent_at))


def _alert_payload(change: str, e: DriftEvent) -> str:
    body = {"change": change, **to_jsonable(e)}
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def parse_bundle(bundle: Any) -> tuple[list[tuple[Run, bool, str | None]], dict[str, Snapshot]]:
    """Validates a bundle completely before anything is written. Raises InputError naming what is wrong."""
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise InputError(f"not a {BUNDLE_FORMAT} (no \"format\": \"{BUNDLE_FORMAT}\")")
    schema = bundle.get("schema")
    if not isinstance(schema, int) or isinstance(schema, bool):
        raise InputError("bundle has no integer \"schema\"", field="schema")
    if schema > BUNDLE_SCHEMA:
        raise InputError(f"bundle schema {schema} is newer than this netpol-drift reads ({BUNDLE_SCHEMA}); "
                         "upgrade netpol-drift to import it")
    raw_snaps = bundle.get("snapshots")
    raw_runs = bundle.get("runs")
    if not isinstance(raw_snaps, dict):
        raise InputError("must be an object of snapshots by digest", field="snapshots")
    if not isinstance(raw_runs, list):
        raise InputError("must be a list of runs", field="runs")
    snapshots = {}
    for digest, raw in raw_snaps.items():
        snap = from_jsonable(Snapshot, raw, "snapshot")
        if snapshot_digest(snap) != digest:
            raise InputError(f"content does not match its digest {digest}", field=f"snapshots.{digest}")
        snapshots[digest] = snap
    runs = []
    for i, raw in enumerate(raw_runs):
        if not isinstance(raw, dict):
            raise InputError("must be an object", field=f"runs[{i}]")
        raw = dict(raw)
        known_good, accepted_by = raw.pop("known_good", False), raw.pop("accepted_by", None)
        if not isinstance(known_good, bool) or not (accepted_by is None or isinstance(accepted_by, str)):
            raise InputError("known_good must be true/false and accepted_by a string", field=f"runs[{i}]")
        run = from_jsonable(Run, raw, f"runs[{i}]")
        if run.snapshot_digest not in snapshots:
            raise InputError(f"snapshot {run.snapshot_digest} is not in the bundle", field=f"runs[{i}]")
        for t in (run.started_at, run.finished_at):
            _dt(t)
        runs.append((run, known_good, accepted_by))
    return runs, snapshots

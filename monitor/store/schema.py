"""The database tables, as SQLAlchemy 2 typed models. Alembic migrations must match this file exactly.

How a year of 5-minute runs stays small: a run row points at a result *set*; a set is an ordered list of
ids of distinct flow results (one row per result value ever seen, deduplicated by digest), stored as a
compressed blob of delta-encoded ids. A run whose results equal an earlier run's reuses that set and costs
one row plus its per-run latencies (one byte each). Snapshots and suite versions are stored once per digest,
compressed. Times are naive UTC everywhere (the same on SQLite and PostgreSQL).
These rows never leave the monitor.store package: the API converts them to models.py dataclasses.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Named constraints so that migrations can drop them by name on every backend (SQLite batch mode too).
# A change run's trigger in words ("NetworkPolicy shop/api modified, ... (+N more)"), cut to fit.
TRIGGER_DETAIL_LENGTH = 300
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class ClusterRow(Base):
    __tablename__ = "clusters"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(253), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class SnapshotRow(Base):
    __tablename__ = "snapshots"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(80), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    size: Mapped[int] = mapped_column(Integer)  # bytes of canonical JSON before compression
    data: Mapped[bytes] = mapped_column(LargeBinary)  # zlib(canonical JSON)


class SuiteRow(Base):
    __tablename__ = "suites"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(80), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    data: Mapped[bytes | None] = mapped_column(LargeBinary)  # zlib(suite file text) when the caller gave it


class FlowResultRow(Base):
    """One distinct result value (everything but latency and attempts, which change every run)."""

    __tablename__ = "flow_results"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    flow_key: Mapped[str] = mapped_column(Text, index=True)
    case: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)
    destination: Mapped[str] = mapped_column(Text)
    port: Mapped[int] = mapped_column(Integer)
    protocol: Mapped[str] = mapped_column(String(8))
    expected: Mapped[str] = mapped_column(String(16))
    intent: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(16))
    verdict: Mapped[str] = mapped_column(String(16))
    explanation: Mapped[str] = mapped_column(Text)
    reason: Mapped[str] = mapped_column(Text)
    node: Mapped[str | None] = mapped_column(String(253))


class ResultSetRow(Base):
    __tablename__ = "result_sets"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    size: Mapped[int] = mapped_column(Integer)
    members: Mapped[bytes] = mapped_column(LargeBinary)  # zlib(varints of delta-encoded flow_results ids)
    # zlib(JSON of monitor.grid.grid(results)), built when the set is written: what a run page shows, so
    # that its first view reads one row instead of building 40,000 cells. NULL: a set written before 0005.
    grid: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)


class RunRow(Base):
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_cluster_started", "cluster_id", "started_at"),
        Index("ix_runs_baseline", "cluster_id", "suite_id", "known_good", "started_at"),
        Index("ix_runs_started", "started_at"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id"))
    suite_id: Mapped[int] = mapped_column(ForeignKey("suites.id"))
    snapshot_id: Mapped[int] = mapped_column(ForeignKey("snapshots.id"))
    result_set_id: Mapped[int] = mapped_column(ForeignKey("result_sets.id"))
    trigger: Mapped[str] = mapped_column(String(16))
    trigger_detail: Mapped[str | None] = mapped_column(String(TRIGGER_DETAIL_LENGTH), nullable=True)
    status: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime] = mapped_column(DateTime)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)
    known_good: Mapped[bool] = mapped_column(Boolean, default=False)
    accepted_by: Mapped[str | None] = mapped_column(String(253))
    accepted_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Summary counts so that `history` never opens a result set.
    n_results: Mapped[int] = mapped_column(Integer)
    n_violations: Mapped[int] = mapped_column(Integer)
    n_gaps: Mapped[int] = mapped_column(Integer)
    n_skipped: Mapped[int] = mapped_column(Integer)
    # zlib(one latency byte per result, log scale, then one attempts byte per result); NULL when all zero.
    volatile: Mapped[bytes | None] = mapped_column(LargeBinary)


# Newest run first: start time, then id (two runs can start in the same instant: an import, two replicas).
# The baseline is the first known-good run of a cluster and suite in this order (known_good), and retention
# keeps exactly that run (prune): both must use this one order, or prune could delete the baseline.
RUNS_NEWEST_FIRST = (RunRow.started_at.desc(), RunRow.id.desc())


class RunHourRow(Base):
    """Per cluster and hour, what the history chart needs of that hour's runs, kept as runs are written (and
    recomputed by prune): a year's chart reads ~8,800 of these instead of 105,000 runs."""

    __tablename__ = "run_hours"
    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id"), primary_key=True)
    hour: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)  # Unix time // 3600
    runs: Mapped[int] = mapped_column(Integer)
    # The worst run: max((n_violations + n_skipped) * 10**9 + run id) (the most violated + skipped, then the
    # latest); its counts are read from its row.
    worst: Mapped[int] = mapped_column(BigInteger)
    gaps: Mapped[int] = mapped_column(Integer)  # max n_gaps
    longest_ms: Mapped[int | None] = mapped_column(Integer)  # max duration; NULL: no run of the hour finished


class DriftEventRow(Base):
    __tablename__ = "drift_events"
    __table_args__ = (Index("ix_drift_events_cluster_open", "cluster_id", "resolved_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cluster_id: Mapped[int] = mapped_column(ForeignKey("clusters.id"))
    flow_key: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16))  # violation | gap | drift
    detail: Mapped[str] = mapped_column(Text)
    cause: Mapped[str | None] = mapped_column(Text)  # JSON of compare.Cause
    opened_at: Mapped[datetime] = mapped_column(DateTime)
    # Runs can be pruned by retention; the event outlives them.
    opened_run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime)
    resolved_run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    resolution: Mapped[str | None] = mapped_column(Text)


class AlertIncidentRow(Base):
    """One alert message (an incident: a run and a cause, or a flapping flow) and where it went, so that a
    restarted service still updates the right message when the incident resolves."""

    __tablename__ = "alert_incidents"
    __table_args__ = (Index("ix_alert_incidents_flapping", "cluster", "kind", "flow_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cluster: Mapped[str] = mapped_column(String(253))
    kind: Mapped[str] = mapped_column(String(16))  # incident | flapping
    flow_key: Mapped[str | None] = mapped_column(Text)  # flapping: the flow
    channel: Mapped[str | None] = mapped_column(String(255))  # bot token: the channel id Slack answered
    ts: Mapped[str | None] = mapped_column(String(64))  # bot token: the message ts (webhook, log: none)
    content: Mapped[str] = mapped_column(Text)  # the sender's JSON of the message, re-rendered on resolve
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)
    ended_at: Mapped[datetime | None] = mapped_column(DateTime)  # flapping: the flow was stable again
    details_due: Mapped[bool] = mapped_column(Boolean, default=False)  # its thread details not posted yet


class AlertRow(Base):
    """Outbox: written in the same transaction as the event, sent later, so no alert is lost or doubled."""

    __tablename__ = "alert_outbox"
    __table_args__ = (Index("ix_alert_outbox_pending", "sent_at", "id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    payload: Mapped[str] = mapped_column(Text)  # JSON
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Set by a failed attempt: the sender's backoff. NULL: due now.
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime)
    slack_channel: Mapped[str | None] = mapped_column(String(255))
    slack_ts: Mapped[str | None] = mapped_column(String(64))
    event_id: Mapped[int | None] = mapped_column(Integer, index=True)  # the drift event it carries
    # The message it went out in (several alerts of one run and cause share one); NULL with a note: closed
    # without a message (refused <-> timeout only, flapping), or not sent yet.
    incident_id: Mapped[int | None] = mapped_column(ForeignKey("alert_incidents.id", ondelete="SET NULL"))
    note: Mapped[str | None] = mapped_column(Text)


metadata = Base.metadata

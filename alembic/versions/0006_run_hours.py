"""Per cluster and hour, the history chart's aggregates of that hour's runs (run_hours), filled from the runs
already stored: the chart of a year read and bucketed 105,000 runs (~130 ms of SQLite date parsing).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 11:35:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "run_hours",
        sa.Column("cluster_id", sa.Integer(), nullable=False),
        sa.Column("hour", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("worst", sa.BigInteger(), nullable=False),
        sa.Column("gaps", sa.Integer(), nullable=False),
        sa.Column("longest_ms", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["cluster_id"], ["clusters.id"], name=op.f("fk_run_hours_cluster_id_clusters")),
        sa.PrimaryKeyConstraint("cluster_id", "hour", name=op.f("pk_run_hours")),
    )
    if op.get_bind().dialect.name == "sqlite":
        hour = "CAST(strftime('%s', started_at) AS INTEGER) / 3600"
        ms = "CAST(round((julianday(finished_at) - julianday(started_at)) * 86400000) AS INTEGER)"
    else:
        hour = "CAST(floor(extract(epoch FROM started_at) / 3600) AS INTEGER)"
        ms = "CAST(round(extract(epoch FROM finished_at - started_at) * 1000) AS INTEGER)"
    worst = "max((n_violations + n_skipped) * CAST(1000000000 AS BIGINT) + id)"  # runs.WORST_SPAN
    op.execute(f"INSERT INTO run_hours (cluster_id, hour, runs, worst, gaps, longest_ms) "
               f"SELECT cluster_id, {hour}, count(*), {worst}, max(n_gaps), max({ms}) FROM runs "
               f"GROUP BY cluster_id, {hour}")


def downgrade() -> None:
    op.drop_table("run_hours")

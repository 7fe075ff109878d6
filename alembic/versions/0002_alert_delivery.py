"""Alert delivery: when a failed alert is next tried, and where a sent one was posted (Slack channel, ts).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 08:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("alert_outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_attempt_at", sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column("slack_channel", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("slack_ts", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("alert_outbox", schema=None) as batch_op:
        batch_op.drop_column("slack_ts")
        batch_op.drop_column("slack_channel")
        batch_op.drop_column("next_attempt_at")

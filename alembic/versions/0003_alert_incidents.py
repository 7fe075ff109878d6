"""Alert incidents: one row per Slack message (where it went, what it said), outbox rows linked to their
drift event and message, and a note for alerts closed without a message.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "alert_incidents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cluster", sa.String(length=253), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("flow_key", sa.Text(), nullable=True),
        sa.Column("channel", sa.String(length=255), nullable=True),
        sa.Column("ts", sa.String(length=64), nullable=True),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("details_due", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_incidents")),
    )
    with op.batch_alter_table("alert_incidents", schema=None) as batch_op:
        batch_op.create_index("ix_alert_incidents_flapping", ["cluster", "kind", "flow_key"], unique=False)
    with op.batch_alter_table("alert_outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("event_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("incident_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("note", sa.Text(), nullable=True))
        batch_op.create_index(batch_op.f("ix_alert_outbox_event_id"), ["event_id"], unique=False)
        batch_op.create_foreign_key(batch_op.f("fk_alert_outbox_incident_id_alert_incidents"), "alert_incidents",
                                    ["incident_id"], ["id"], ondelete="SET NULL")


def downgrade() -> None:
    with op.batch_alter_table("alert_outbox", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("fk_alert_outbox_incident_id_alert_incidents"), type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_alert_outbox_event_id"))
        batch_op.drop_column("note")
        batch_op.drop_column("incident_id")
        batch_op.drop_column("event_id")
    with op.batch_alter_table("alert_incidents", schema=None) as batch_op:
        batch_op.drop_index("ix_alert_incidents_flapping")
    op.drop_table("alert_incidents")

"""A result set keeps its run page's grid, built when the set is written (the first view of a 200 x 200 run
read 40,000 results and built 40,000 cells: ~2 s). Sets written before stay NULL and are built on view.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 11:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("result_sets", sa.Column("grid", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    # Not batch mode: on SQLite that copies the table, and dropping the old one trips runs' foreign key.
    # SQLite drops a column in place since 3.35.
    op.drop_column("result_sets", "grid")

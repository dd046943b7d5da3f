"""operators.sessions_ended_at: a log-out or a disable ends the operator's web sessions

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 08:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import cardcenter.core.db

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("operators") as batch:
        batch.add_column(
            sa.Column(
                "sessions_ended_at",
                cardcenter.core.db.UTCDateTime(timezone=True),
                nullable=True,
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("operators") as batch:
        batch.drop_column("sessions_ended_at")

"""call records and PIN failures

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "call_records",
        sa.Column("call_id", sa.String(64), nullable=False),
        sa.Column("direction", sa.String(8), nullable=False),
        sa.Column("scenario", sa.String(128), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("answered_at", sa.Float(), nullable=True),
        sa.Column("bridged_at", sa.Float(), nullable=True),
        sa.Column("ended_at", sa.Float(), nullable=False),
        sa.Column("duration", sa.Float(), nullable=False),
        sa.Column("did", sa.String(64), nullable=True),
        sa.Column("destination", sa.String(64), nullable=True),
        sa.Column("caller", sa.String(128), nullable=True),
        sa.Column("room", sa.String(2048), nullable=True),
        sa.Column("pin", sa.String(32), nullable=True),
        sa.Column("sip_status", sa.Integer(), nullable=True),
        sa.Column("hangup_cause", sa.String(128), nullable=False),
        sa.Column("hangup_side", sa.String(16), nullable=False),
        sa.Column("loss_fraction", sa.Float(), nullable=True),
        sa.Column("jitter_ms", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("call_id", name="pk_call_records"),
    )
    op.create_index("ix_call_records_started_at", "call_records", ["started_at"])
    op.create_table(
        "pin_failures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("caller", sa.String(128), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_pin_failures"),
    )
    op.create_index("ix_pin_failures_caller_at", "pin_failures", ["caller", "at"])
    op.create_index("ix_pin_failures_at", "pin_failures", ["at"])


def downgrade() -> None:
    op.drop_index("ix_pin_failures_at", "pin_failures")
    op.drop_index("ix_pin_failures_caller_at", "pin_failures")
    op.drop_table("pin_failures")
    op.drop_index("ix_call_records_started_at", "call_records")
    op.drop_table("call_records")

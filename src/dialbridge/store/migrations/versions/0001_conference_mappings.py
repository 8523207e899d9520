"""conference mappings

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "conference_mappings",
        sa.Column("pin", sa.String(13), nullable=False),
        sa.Column("conference", sa.String(2048), nullable=False),
        sa.Column("static", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("last_used_at", sa.Float(), nullable=False),
        sa.Column("retired_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("pin", name="pk_conference_mappings"),
    )
    op.create_index(
        "uq_conference_mappings_live_conference",
        "conference_mappings",
        ["conference"],
        unique=True,
        sqlite_where=sa.text("retired_at IS NULL"),
        postgresql_where=sa.text("retired_at IS NULL"),
    )
    op.create_index("ix_conference_mappings_retired_at", "conference_mappings", ["retired_at"])


def downgrade() -> None:
    op.drop_index("ix_conference_mappings_retired_at", "conference_mappings")
    op.drop_index("uq_conference_mappings_live_conference", "conference_mappings")
    op.drop_table("conference_mappings")

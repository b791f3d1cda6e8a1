"""index the reprocessings (granules with `supersedes`) by recording time, for their counts per day

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_granule_reprocessed", "granule", ["first_seen"], postgresql_where=sa.text("supersedes IS NOT NULL")
    )


def downgrade() -> None:
    op.drop_index("ix_granule_reprocessed", table_name="granule")

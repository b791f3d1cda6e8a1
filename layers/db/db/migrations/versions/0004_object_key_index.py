"""index granule.object_key (reconcile looks up stored keys a page at a time)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_granule_object_key", "granule", ["object_key"], postgresql_where=sa.text("object_key IS NOT NULL")
    )


def downgrade() -> None:
    op.drop_index("ix_granule_object_key", table_name="granule")

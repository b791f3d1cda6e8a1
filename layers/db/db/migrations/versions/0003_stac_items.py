"""STAC item columns on granule

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("granule", sa.Column("collection", sa.Text(), nullable=True))
    op.add_column("granule", sa.Column("cloud_cover", sa.Float(), nullable=True))
    op.add_column(
        "granule",
        sa.Column("assets", postgresql.JSONB(astext_type=sa.Text()), nullable=True, comment="selected band -> href"),
    )
    op.add_column(
        "granule",
        sa.Column("item", postgresql.JSONB(astext_type=sa.Text()), nullable=True, comment="the full STAC item"),
    )


def downgrade() -> None:
    for column in ("item", "assets", "cloud_cover", "collection"):
        op.drop_column("granule", column)

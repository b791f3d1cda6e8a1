"""downloader state on granule

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("granule", sa.Column("downloaded", sa.Boolean(), server_default=sa.text("false"), nullable=False))
    op.add_column("granule", sa.Column("downloaded_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("granule", sa.Column("download_retries", sa.Integer(), server_default=sa.text("0"), nullable=False))
    op.add_column("granule", sa.Column("object_key", sa.Text(), nullable=True))
    op.add_column("granule", sa.Column("download_error", sa.Text(), nullable=True))
    op.create_index("ix_granule_not_downloaded", "granule", ["first_seen"], postgresql_where=sa.text("NOT downloaded"))


def downgrade() -> None:
    op.drop_index("ix_granule_not_downloaded", table_name="granule")
    for column in ("download_error", "object_key", "download_retries", "downloaded_at", "downloaded"):
        op.drop_column("granule", column)

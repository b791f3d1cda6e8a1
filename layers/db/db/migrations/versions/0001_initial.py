"""granule, granule_count, status and the delivery outbox

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "granule",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("filename", sa.Text(), nullable=False),
        sa.Column("tile_id", sa.Text(), nullable=True),
        sa.Column("platform", sa.Text(), nullable=True),
        sa.Column("product_type", sa.Text(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("checksum", sa.Text(), nullable=True, comment="MD5 hex digest from CDSE"),
        sa.Column("blake3", sa.Text(), nullable=True, comment="BLAKE3 hex digest from CDSE"),
        sa.Column("sensing_start", TZ, nullable=True),
        sa.Column("sensing_end", TZ, nullable=True),
        sa.Column("published", TZ, nullable=True),
        sa.Column("download_url", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False, comment="search | subscription | stac"),
        sa.Column("first_seen", TZ, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_granule")),
    )
    op.create_index(op.f("ix_granule_published"), "granule", ["published"])
    op.create_table(
        "granule_count",
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("platform", sa.Text(), nullable=False),
        sa.Column("available_links", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("fetched_links", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_fetched_time", TZ, nullable=True),
        sa.Column("completed", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("cursor_published", TZ, nullable=True),
        sa.Column("cursor_offset", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("date", "platform", name=op.f("pk_granule_count")),
    )
    op.create_table(
        "status",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_status")),
    )
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("granule_id", sa.Text(), nullable=False),
        sa.Column("sink", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), server_default=sa.text("'pending'"), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", TZ, server_default=sa.func.now(), nullable=False),
        sa.Column("sent_at", TZ, nullable=True),
        sa.ForeignKeyConstraint(
            ["granule_id"], ["granule.id"], name=op.f("fk_outbox_granule_id_granule"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.UniqueConstraint("granule_id", "sink", name=op.f("uq_outbox_granule_id_sink")),
    )
    op.create_index("ix_outbox_pending", "outbox", ["sink", "id"], postgresql_where=sa.text("status = 'pending'"))
    op.create_index("ix_outbox_status_created", "outbox", ["status", "created_at"])


def downgrade() -> None:
    op.drop_table("outbox")
    op.drop_table("status")
    op.drop_table("granule_count")
    op.drop_index(op.f("ix_granule_published"), table_name="granule")
    op.drop_table("granule")

"""real CDSE shapes: granule.online; CDSE Ids stored lower-case; size 0 (not measured) stored as unknown

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26

Ids: CDSE compares product Ids case-insensitively, so a product recorded once in upper case and once in lower
case is one granule. Where both spellings exist the lower-case row stays and the others go (with their
deliveries: the lower-case row has its own); a lone upper-case row is renamed together with its deliveries.
STAC granule ids (`collection/item`) are case-sensitive and left alone.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_CDSE = "source IN ('search', 'subscription')"


def upgrade() -> None:
    op.add_column("granule", sa.Column("online", sa.Boolean(), nullable=True))
    op.execute("UPDATE granule SET size = NULL WHERE size = 0")
    # Of several spellings of one Id, keep the lower-case one, else the first in byte order (one pass).
    op.execute(
        f"""
        WITH spellings AS (
            SELECT array_agg(id ORDER BY id = lower(id) DESC, id COLLATE "C") AS ids
            FROM granule WHERE {_CDSE} GROUP BY lower(id) HAVING count(*) > 1
        )
        DELETE FROM granule WHERE id IN (SELECT unnest(ids[2:]) FROM spellings)
        """
    )
    # The key cannot be renamed under its foreign key: lifted for the rename, then restored as it was.
    op.drop_constraint("fk_outbox_granule_id_granule", "outbox", type_="foreignkey")
    op.execute(
        f"""
        UPDATE outbox SET granule_id = lower(granule_id)
        WHERE granule_id IN (SELECT id FROM granule WHERE {_CDSE} AND id <> lower(id))
        """
    )
    op.execute(f"UPDATE granule SET id = lower(id) WHERE {_CDSE} AND id <> lower(id)")
    op.create_foreign_key(
        "fk_outbox_granule_id_granule", "outbox", "granule", ["granule_id"], ["id"], ondelete="CASCADE"
    )


def downgrade() -> None:
    op.drop_column("granule", "online")

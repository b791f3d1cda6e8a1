"""deletions that can be trusted: `deleted_at` within years 1900..2200 (CHECK), existing rows repaired; remembered
deletions indexed by when they were remembered, so pruning them is cheap

A pushed `DeletionDate` was stored as given, so a live database may hold one no reader can read back (year
10000 breaks `status`, the console and the granule's deliveries). Such a date is now malformed (refused at the
edges), and the rows holding one are repaired before the check is validated:
- a remembered deletion of a product never recorded is forgotten (it would be refused now);
- a recorded granule whose deletion no sink has received yet is no longer deleted: its unsent deletion
  deliveries go (a genuine deletion, pushed or polled again, is announced then);
- a recorded granule whose deletion some sink already received stays deleted, dated when it was recorded.
The check is added NOT VALID first, so that rows written while the repair runs are checked too, then validated.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

from db.models import timestamp_in_range

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

CONSTRAINT = "ck_granule_deleted_at_in_range"
OUT_OF_RANGE = f"deleted_at IS NOT NULL AND NOT ({timestamp_in_range('deleted_at')})"
ANNOUNCED = "o.event = 'deleted' AND (o.status = 'sent' OR o.first_sent_at IS NOT NULL)"

REPAIRS = (
    f"DELETE FROM granule WHERE source = 'deletion' AND {OUT_OF_RANGE}",
    f"""
    WITH unannounced AS (
        SELECT g.id FROM granule g
        WHERE {OUT_OF_RANGE} AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.granule_id = g.id AND {ANNOUNCED})
    ),
    dropped AS (
        DELETE FROM outbox o USING unannounced u WHERE o.granule_id = u.id AND o.event = 'deleted'
    )
    UPDATE granule g SET deleted_at = NULL, deletion_cause = NULL FROM unannounced u WHERE g.id = u.id
    """,
    f"""
    UPDATE granule g SET deleted_at = coalesce(
        (SELECT min(o.created_at) FROM outbox o WHERE o.granule_id = g.id AND o.event = 'deleted'), g.first_seen)
    WHERE {OUT_OF_RANGE}
    """,
)


def upgrade() -> None:
    op.execute(f"ALTER TABLE granule ADD CONSTRAINT {CONSTRAINT} CHECK ({timestamp_in_range('deleted_at')}) NOT VALID")
    for statement in REPAIRS:
        op.execute(statement)
    op.execute(f"ALTER TABLE granule VALIDATE CONSTRAINT {CONSTRAINT}")
    op.create_index("ix_granule_remembered", "granule", ["first_seen"], postgresql_where=sa.text("source = 'deletion'"))


def downgrade() -> None:
    op.drop_index("ix_granule_remembered", table_name="granule")
    op.execute(f"ALTER TABLE granule DROP CONSTRAINT {CONSTRAINT}")

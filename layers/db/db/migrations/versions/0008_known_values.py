"""granule.source and outbox.status hold only the values the code knows (CHECK)

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26

The values are written out here, as this revision adds them; db.models.Source and DeliveryStatus name them in
the code, and a new member needs a revision that widens its constraint. Validated: every row written so far
holds one of them.
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

CHECKS = {
    ("granule", "source_known"): "source IN ('search', 'subscription', 'stac')",
    ("outbox", "status_known"): "status IN ('pending', 'sent', 'failed')",
}


def upgrade() -> None:
    for (table, name), condition in CHECKS.items():
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT ck_{table}_{name} CHECK ({condition})")


def downgrade() -> None:
    for table, name in CHECKS:
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT ck_{table}_{name}")

"""granule timestamps within years 1900..2200 (CHECK), so no stored value is one a reader cannot read back

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26

NOT VALID: rows written before this revision are not scanned (a migration must not fail on them, and the
relay, downloader and reconcile report such rows instead of stopping on them); every row inserted or
updated from now on is checked.
"""

from alembic import op

from db.models import TIMESTAMP_RANGE_CHECKS

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for name, condition in TIMESTAMP_RANGE_CHECKS.items():
        op.execute(f"ALTER TABLE granule ADD CONSTRAINT ck_granule_{name} CHECK ({condition}) NOT VALID")


def downgrade() -> None:
    for name in TIMESTAMP_RANGE_CHECKS:
        op.execute(f"ALTER TABLE granule DROP CONSTRAINT ck_granule_{name}")

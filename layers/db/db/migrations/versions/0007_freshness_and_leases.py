"""freshness and relay leases: outbox.first_sent_at (kept when a delivery is requeued), outbox.leased_by (the
relay session that holds a pending delivery), an index on granule.first_seen for the last day's figures, and
outbox's (status, created_at) index widened to (status, sink, created_at) for the counts per sink; outbox pages
half free (fillfactor 50) so that leases are HOT updates

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("first_sent_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("outbox", sa.Column("leased_by", sa.Integer(), nullable=True))
    op.execute("UPDATE outbox SET first_sent_at = sent_at WHERE sent_at IS NOT NULL")
    op.create_index("ix_granule_first_seen", "granule", ["first_seen"])
    # Counts per sink and state (`status`, the console) and the oldest pending per sink read this index only.
    op.create_index("ix_outbox_status_sink_created", "outbox", ["status", "sink", "created_at"])
    op.drop_index("ix_outbox_status_created", table_name="outbox")
    # Half of each page left free: leasing a delivery (which changes no indexed column) then rewrites the row in
    # place (a HOT update) instead of adding an entry to every index of the table.
    op.execute("ALTER TABLE outbox SET (fillfactor = 50)")


def downgrade() -> None:
    op.execute("ALTER TABLE outbox RESET (fillfactor)")
    op.create_index("ix_outbox_status_created", "outbox", ["status", "created_at"])
    op.drop_index("ix_outbox_status_sink_created", table_name="outbox")
    op.drop_index("ix_granule_first_seen", table_name="granule")
    op.drop_column("outbox", "leased_by")
    op.drop_column("outbox", "first_sent_at")

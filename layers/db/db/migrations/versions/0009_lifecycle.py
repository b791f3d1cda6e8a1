"""product lifecycle: deletions, reprocessing identity, one delivery per granule, sink and event

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)

# A product's identity (SPEC §9): its name without processing baseline and discriminator,
# S2A_MSIL1C_20200808T010311_N0500_R045_T54PXA_20230413T212505.SAFE -> S2A_MSIL1C_20200808T010311_R045_T54PXA;
# NULL for names of another form (STAC item ids). IMMUTABLE, so a generated column and its index can use it.
IDENTITY_FUNCTION = r"""
CREATE FUNCTION granule_identity(name text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURNS NULL ON NULL INPUT
RETURN substring(name FROM '^(S2[A-D]_MSIL[12][AC]_[0-9]{8}T[0-9]{6})_N[0-9]{4}_R[0-9]{3}_T[0-9]{2}[A-Z]{3}_')
    || substring(name FROM '^S2[A-D]_MSIL[12][AC]_[0-9]{8}T[0-9]{6}_N[0-9]{4}(_R[0-9]{3}_T[0-9]{2}[A-Z]{3})_')
"""


SOURCES = "source IN ('search', 'subscription', 'stac')"
SOURCES_WITH_DELETION = "source IN ('search', 'subscription', 'stac', 'deletion')"


def upgrade() -> None:
    op.execute(IDENTITY_FUNCTION)
    op.add_column("granule", sa.Column("deleted_at", TZ, nullable=True, comment="CDSE DeletionDate"))
    op.add_column("granule", sa.Column("deletion_cause", sa.Text(), nullable=True, comment="CDSE DeletionCause"))
    op.add_column(
        "granule", sa.Column("supersedes", sa.Text(), nullable=True, comment="id of the granule this reprocesses")
    )
    op.add_column(
        "granule",
        sa.Column("identity", sa.Text(), sa.Computed("granule_identity(filename)", persisted=True), nullable=True),
    )
    op.create_index("ix_granule_identity", "granule", ["identity"], postgresql_where=sa.text("identity IS NOT NULL"))
    op.create_index(
        "ix_granule_deleted_at", "granule", ["deleted_at"], postgresql_where=sa.text("deleted_at IS NOT NULL")
    )

    # A granule now has up to one delivery per sink and event (found, deleted).
    op.add_column(
        "outbox",
        sa.Column("event", sa.Text(), server_default=sa.text("'found'"), nullable=False, comment="found | deleted"),
    )
    op.drop_constraint("uq_outbox_granule_id_sink", "outbox", type_="unique")
    op.create_unique_constraint("uq_outbox_granule_id_sink_event", "outbox", ["granule_id", "sink", "event"])

    # A deletion of a product never recorded is remembered as its row, source `deletion` (widens 0008's check);
    # a delivery's event is one of the two the code knows.
    op.execute("ALTER TABLE granule DROP CONSTRAINT ck_granule_source_known")
    op.execute(f"ALTER TABLE granule ADD CONSTRAINT ck_granule_source_known CHECK ({SOURCES_WITH_DELETION})")
    op.alter_column(
        "granule",
        "source",
        existing_type=sa.Text(),
        comment="search | subscription | stac | deletion",
        existing_comment="search | subscription | stac",
    )
    op.execute("ALTER TABLE outbox ADD CONSTRAINT ck_outbox_event_known CHECK (event IN ('found', 'deleted'))")

    # Progress of the DeletedProducts poll per deletion day (as granule_count is for Products).
    op.create_table(
        "deletion_count",
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("available_deletions", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("fetched_deletions", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_fetched_time", TZ, nullable=True),
        sa.Column("completed", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("cursor_deleted", TZ, nullable=True),
        sa.Column("cursor_offset", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.PrimaryKeyConstraint("date", name=op.f("pk_deletion_count")),
    )


def downgrade() -> None:
    op.drop_table("deletion_count")
    op.execute("ALTER TABLE outbox DROP CONSTRAINT ck_outbox_event_known")
    op.execute("DELETE FROM granule WHERE source = 'deletion'")
    op.execute("ALTER TABLE granule DROP CONSTRAINT ck_granule_source_known")
    op.execute(f"ALTER TABLE granule ADD CONSTRAINT ck_granule_source_known CHECK ({SOURCES})")
    op.alter_column(
        "granule",
        "source",
        existing_type=sa.Text(),
        comment="search | subscription | stac",
        existing_comment="search | subscription | stac | deletion",
    )
    op.execute("DELETE FROM outbox WHERE event <> 'found'")
    op.drop_constraint("uq_outbox_granule_id_sink_event", "outbox", type_="unique")
    op.create_unique_constraint("uq_outbox_granule_id_sink", "outbox", ["granule_id", "sink"])
    op.drop_column("outbox", "event")
    op.drop_index("ix_granule_deleted_at", table_name="granule")
    op.drop_index("ix_granule_identity", table_name="granule")
    for column in ("identity", "supersedes", "deletion_cause", "deleted_at"):
        op.drop_column("granule", column)
    op.execute("DROP FUNCTION granule_identity(text)")

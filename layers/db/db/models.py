"""The schema as SQLAlchemy Core tables (what Alembic compares the migrations with, and what queries build on). The
schema changes only through the Alembic migrations in db/migrations. Core, not ORM: nothing here maps rows to
objects, and importing `sqlalchemy.orm` would lengthen every function's cold start."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


metadata = MetaData(naming_convention=NAMING_CONVENTION)


def timestamp_in_range(column: str) -> str:
    """The CHECK condition keeping a stored timestamp within what every reader can read back (psycopg: years
    1..9999), one day wider than the edges accept (years 1900..2200 in the product's own offset, ±14:00 at most)."""
    return f"{column} IS NULL OR ({column} >= '1899-12-31 00:00:00+00' AND {column} < '2201-01-02 00:00:00+00')"


# The product timestamps' checks (migration 0005); `deleted_at` got its own in migration 0012.
TIMESTAMP_RANGE_CHECKS = {
    f"{column}_in_range": timestamp_in_range(column) for column in ("sensing_start", "sensing_end", "published")
}


class DeliveryStatus(enum.StrEnum):
    """`outbox.status`: pending → sent, or failed after RELAY_MAX_ATTEMPTS refusals."""

    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class Source(enum.StrEnum):
    """`granule.source`: where link-fetcher first learned of the product (also the message's `source`)."""

    SEARCH = "search"  # the CDSE OData poll
    SUBSCRIPTION = "subscription"  # a CDSE push notification
    STAC = "stac"  # a STAC API watch
    DELETION = "deletion"  # a CDSE deletion of a product never recorded, remembered (never delivered)


def known_values_check(column: str, values: type[enum.StrEnum]) -> str:
    """The CHECK condition that keeps `column` to the members of `values` (migration 0008)."""
    return f"{column} IN ({', '.join(repr(str(value)) for value in values)})"


class StrEnumText[E: enum.StrEnum](TypeDecorator[E]):
    """A TEXT column read back as a member of a StrEnum (written as its value)."""

    impl = Text
    cache_ok = True

    def __init__(self, values: type[E]) -> None:
        super().__init__()
        self.values = values

    def process_bind_param(self, value: E | str | None, dialect: Dialect) -> str | None:
        return None if value is None else str(self.values(value))

    def process_result_value(self, value: str | None, dialect: Dialect) -> E | None:
        return None if value is None else self.values(value)


def _timestamp(name: str, *, comment: str | None = None, **options: Any) -> Column[dt.datetime]:
    return Column(name, DateTime(timezone=True), comment=comment, **options)


# One product, ever: a CDSE Sentinel-2 product (id = CDSE Id) or a STAC item (id = collection/item id); one row
# per product name whichever sources brought it (SPEC §11).
granule_table = Table(
    "granule",
    metadata,
    Column("id", Text, primary_key=True),
    Column("filename", Text, nullable=False),
    Column("tile_id", Text),
    Column("platform", Text),
    Column("product_type", Text),
    Column("size", BigInteger),
    Column("checksum", Text, comment="MD5 hex digest from CDSE"),
    Column("blake3", Text, comment="BLAKE3 hex digest from CDSE"),
    _timestamp("sensing_start"),
    _timestamp("sensing_end"),
    _timestamp("published", index=True),
    Column("download_url", Text, nullable=False),
    Column("source", StrEnumText(Source), nullable=False, comment="search | subscription | stac | deletion"),
    _timestamp("first_seen", nullable=False, server_default=func.now()),
    # Downloader state (migration 0002).
    Column("downloaded", Boolean, nullable=False, server_default=text("false")),
    _timestamp("downloaded_at"),
    Column("download_retries", Integer, nullable=False, server_default=text("0")),
    Column("object_key", Text),
    Column("download_error", Text),
    # STAC items (migration 0003).
    Column("collection", Text),
    Column("cloud_cover", Float),
    Column("assets", JSONB, comment="selected band -> href"),
    Column("item", JSONB, comment="the full STAC item"),
    # CDSE `Online` (migration 0006): false means the product must be ordered before it can be downloaded.
    Column("online", Boolean),
    # Lifecycle (migration 0008): CDSE withdrew it, or a reprocessing replaced it; and what it reprocesses.
    _timestamp("deleted_at", comment="CDSE DeletionDate"),
    Column("deletion_cause", Text, comment="CDSE DeletionCause"),
    Column("supersedes", Text, comment="id of the granule this reprocesses"),
    # The product name without baseline and discriminator (SPEC §9), written by the recorder (link_fetcher.mission;
    # computed by the database from `filename` before migration 0012).
    Column("identity", Text),
    # One product, one granule (SPEC §11, migration 0012): the ESA product name from any source, unique among the
    # granules that share deliveries; the sources that brought it after the first; a STAC watch's own granule.
    Column("product_name", Text, comment="ESA product name without .SAFE, from any source"),
    Column(
        "other_sources",
        ARRAY(Text),
        nullable=False,
        server_default=text("'{}'"),
        comment="sources that brought the product after the first",
    ),
    Column(
        "own_deliveries",
        Boolean,
        nullable=False,
        server_default=text("false"),
        comment="a STAC watch's own granule, outside name uniqueness",
    ),
    *(CheckConstraint(condition, name=name) for name, condition in TIMESTAMP_RANGE_CHECKS.items()),
    CheckConstraint(timestamp_in_range("deleted_at"), name="deleted_at_in_range"),
    CheckConstraint(known_values_check("source", Source), name="source_known"),
    CheckConstraint(
        f"other_sources <@ ARRAY[{', '.join(repr(str(value)) for value in Source)}]", name="other_sources_known"
    ),
    CheckConstraint("sensing_start <= sensing_end", name="sensing_ordered"),
    Index(
        "uq_granule_product_name",
        "product_name",
        unique=True,
        postgresql_where=text("product_name IS NOT NULL AND NOT own_deliveries"),
    ),
    Index("ix_granule_not_downloaded", "first_seen", postgresql_where=text("NOT downloaded")),
    # Reconcile maps stored keys back to rows (migration 0004).
    Index("ix_granule_object_key", "object_key", postgresql_where=text("object_key IS NOT NULL")),
    # Freshness over the last day (`status`, the ops console) reads only the granules recorded in it (0007).
    Index("ix_granule_first_seen", "first_seen"),
    Index("ix_granule_identity", "identity", postgresql_where=text("identity IS NOT NULL")),
    Index("ix_granule_deleted_at", "deleted_at", postgresql_where=text("deleted_at IS NOT NULL")),
    # Reprocessings per day of recording (`status`, the ops console; migration 0010).
    Index("ix_granule_reprocessed", "first_seen", postgresql_where=text("supersedes IS NOT NULL")),
    # Remembered deletions of products never recorded, by when they were remembered: pruned after
    # DELETION_MEMORY_DAYS (migration 0012).
    Index("ix_granule_remembered", "first_seen", postgresql_where=text("source = 'deletion'")),
)

# Per publication day and platform: what the server reported and how far the Products poll got.
granule_count_table = Table(
    "granule_count",
    metadata,
    Column("date", Date, primary_key=True),
    Column("platform", Text, primary_key=True),
    Column("available_links", Integer, nullable=False, server_default=text("0")),
    Column("fetched_links", Integer, nullable=False, server_default=text("0")),
    _timestamp("last_fetched_time"),
    Column("completed", Boolean, nullable=False, server_default=text("false")),
    # Resume point of an unfinished day: the PublicationDate reached and how many products at exactly that
    # instant were already read.
    _timestamp("cursor_published"),
    Column("cursor_offset", Integer, nullable=False, server_default=text("0")),
)

# Per deletion day: the DeletedProducts poll's progress (as granule_count is for Products). Written out like
# granule_count rather than made by one function, so each column can be found by its name.
deletion_count_table = Table(
    "deletion_count",
    metadata,
    Column("date", Date, primary_key=True),
    Column("available_deletions", Integer, nullable=False, server_default=text("0")),
    Column("fetched_deletions", Integer, nullable=False, server_default=text("0")),
    _timestamp("last_fetched_time"),
    Column("completed", Boolean, nullable=False, server_default=text("false")),
    _timestamp("cursor_deleted"),
    Column("cursor_offset", Integer, nullable=False, server_default=text("0")),
)


class DeliveryEvent(enum.StrEnum):
    """What a delivery announces about its granule."""

    FOUND = "found"
    DELETED = "deleted"


status_table = Table(
    "status",
    metadata,
    Column("key", Text, primary_key=True),
    Column("value", Text, nullable=False),
    _timestamp("updated_at", nullable=False, server_default=func.now()),
)

# One delivery of one granule to one sink. Rows are written in the transaction that records the granule.
outbox_table = Table(
    "outbox",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("granule_id", Text, ForeignKey("granule.id", ondelete="CASCADE"), nullable=False),
    Column("sink", Text, nullable=False),
    Column(
        "event",
        StrEnumText(DeliveryEvent),
        nullable=False,
        server_default=text("'found'"),
        comment="found | deleted",
    ),
    Column("status", StrEnumText(DeliveryStatus), nullable=False, server_default=text("'pending'")),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("last_error", Text),
    _timestamp("created_at", nullable=False, server_default=func.now()),
    _timestamp("updated_at", nullable=False, server_default=func.now()),
    _timestamp("sent_at"),
    # Freshness (migration 0007): when this sink first accepted the message; a requeue resends but keeps it.
    _timestamp("first_sent_at"),
    # The relay session leasing this pending delivery: its token, held as a session advisory lock (db.outbox).
    # The table keeps half of each page free (fillfactor 50, migration 0007) so that a lease rewrites its row in
    # place without touching the indexes.
    Column("leased_by", Integer),
    UniqueConstraint("granule_id", "sink", "event"),
    CheckConstraint(known_values_check("status", DeliveryStatus), name="status_known"),
    CheckConstraint(known_values_check("event", DeliveryEvent), name="event_known"),
    Index("ix_outbox_pending", "sink", "id", postgresql_where=text("status = 'pending'")),
    # Counts per sink and state, the oldest pending delivery per sink (widened in migration 0007).
    Index("ix_outbox_status_sink_created", "status", "sink", "created_at"),
)

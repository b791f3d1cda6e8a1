"""SQLAlchemy 2 typed models. The schema changes only through the Alembic migrations in db/migrations."""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


# Stored timestamps stay within what every reader can read back (psycopg: years 1..9999), one day wider than
# the edges accept (years 1900..2200 in the product's own offset, at most ±14:00 from UTC).
TIMESTAMP_RANGE_CHECKS = {
    f"{column}_in_range": (
        f"{column} IS NULL OR ({column} >= '1899-12-31 00:00:00+00' AND {column} < '2201-01-02 00:00:00+00')"
    )
    for column in ("sensing_start", "sensing_end", "published")
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


class Granule(Base):
    """One product, ever: a CDSE Sentinel-2 product (id = CDSE Id) or a STAC item (id = collection/item id)."""

    __tablename__ = "granule"

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    filename: Mapped[str] = mapped_column(Text)
    tile_id: Mapped[str | None] = mapped_column(Text)
    platform: Mapped[str | None] = mapped_column(Text)
    product_type: Mapped[str | None] = mapped_column(Text)
    size: Mapped[int | None] = mapped_column(BigInteger)
    checksum: Mapped[str | None] = mapped_column(Text, comment="MD5 hex digest from CDSE")
    blake3: Mapped[str | None] = mapped_column(Text, comment="BLAKE3 hex digest from CDSE")
    sensing_start: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    sensing_end: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    published: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), index=True)
    download_url: Mapped[str] = mapped_column(Text)
    source: Mapped[Source] = mapped_column(StrEnumText(Source), comment="search | subscription | stac | deletion")
    first_seen: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Downloader state (migration 0002).
    downloaded: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    downloaded_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    download_retries: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    object_key: Mapped[str | None] = mapped_column(Text)
    download_error: Mapped[str | None] = mapped_column(Text)
    # STAC items (migration 0003).
    collection: Mapped[str | None] = mapped_column(Text)
    cloud_cover: Mapped[float | None] = mapped_column(Float)
    assets: Mapped[dict[str, Any] | None] = mapped_column(JSONB, comment="selected band -> href")
    item: Mapped[dict[str, Any] | None] = mapped_column(JSONB, comment="the full STAC item")
    # CDSE `Online` (migration 0006): false means the product must be ordered before it can be downloaded.
    online: Mapped[bool | None] = mapped_column(Boolean)
    # Lifecycle (migration 0008): CDSE withdrew it, or a reprocessing replaced it; and what it reprocesses.
    deleted_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), comment="CDSE DeletionDate")
    deletion_cause: Mapped[str | None] = mapped_column(Text, comment="CDSE DeletionCause")
    supersedes: Mapped[str | None] = mapped_column(Text, comment="id of the granule this reprocesses")
    # The name without baseline and discriminator (SPEC §9), computed by the database: granule_identity().
    identity: Mapped[str | None] = mapped_column(Text, Computed("granule_identity(filename)", persisted=True))

    __table_args__ = (
        *(CheckConstraint(condition, name=name) for name, condition in TIMESTAMP_RANGE_CHECKS.items()),
        CheckConstraint(known_values_check("source", Source), name="source_known"),
        Index("ix_granule_not_downloaded", "first_seen", postgresql_where=text("NOT downloaded")),
        # Reconcile maps stored keys back to rows (migration 0004).
        Index("ix_granule_object_key", "object_key", postgresql_where=text("object_key IS NOT NULL")),
        # Freshness over the last day (`status`, the ops console) reads only the granules recorded in it (0007).
        Index("ix_granule_first_seen", "first_seen"),
        Index("ix_granule_identity", "identity", postgresql_where=text("identity IS NOT NULL")),
        Index("ix_granule_deleted_at", "deleted_at", postgresql_where=text("deleted_at IS NOT NULL")),
        # Reprocessings per day of recording (`status`, the ops console; migration 0010).
        Index("ix_granule_reprocessed", "first_seen", postgresql_where=text("supersedes IS NOT NULL")),
    )


class GranuleCount(Base):
    """Per publication day and platform: what the server reported and how far the poller got."""

    __tablename__ = "granule_count"

    date: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    platform: Mapped[str] = mapped_column(Text, primary_key=True)
    available_links: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    fetched_links: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_fetched_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    completed: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    # Resume point of an unfinished day: the PublicationDate reached and how many products at exactly
    # that instant were already read.
    cursor_published: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    cursor_offset: Mapped[int] = mapped_column(Integer, server_default=text("0"))


class DeletionCount(Base):
    """Per deletion day: the DeletedProducts poll's progress (as granule_count is for Products)."""

    __tablename__ = "deletion_count"

    date: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    available_deletions: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    fetched_deletions: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_fetched_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    completed: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    cursor_deleted: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    cursor_offset: Mapped[int] = mapped_column(Integer, server_default=text("0"))


class DeliveryEvent(enum.StrEnum):
    """What a delivery announces about its granule."""

    FOUND = "found"
    DELETED = "deleted"


class Status(Base):
    __tablename__ = "status"

    key: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Outbox(Base):
    """One delivery of one granule to one sink. Rows are written in the transaction that records the granule."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    granule_id: Mapped[str] = mapped_column(Text, ForeignKey("granule.id", ondelete="CASCADE"))
    sink: Mapped[str] = mapped_column(Text)
    event: Mapped[DeliveryEvent] = mapped_column(
        StrEnumText(DeliveryEvent), server_default=text("'found'"), comment="found | deleted"
    )
    status: Mapped[DeliveryStatus] = mapped_column(StrEnumText(DeliveryStatus), server_default=text("'pending'"))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # Freshness (migration 0007): when this sink first accepted the message; a requeue resends but keeps it.
    first_sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    # The relay session leasing this pending delivery: its token, held as a session advisory lock (db.outbox).
    # The table keeps half of each page free (fillfactor 50, migration 0007) so that a lease rewrites its row in
    # place without touching the indexes.
    leased_by: Mapped[int | None] = mapped_column(Integer)

    __table_args__ = (
        UniqueConstraint("granule_id", "sink", "event"),
        CheckConstraint(known_values_check("status", DeliveryStatus), name="status_known"),
        CheckConstraint(known_values_check("event", DeliveryEvent), name="event_known"),
        Index("ix_outbox_pending", "sink", "id", postgresql_where=text("status = 'pending'")),
        # Counts per sink and state, the oldest pending delivery per sink (widened in migration 0007).
        Index("ix_outbox_status_sink_created", "status", "sink", "created_at"),
    )

"""Reading granule rows back when one of them may be unreadable.

psycopg refuses timestamps outside Python's years 1..9999, which PostgreSQL stores happily; rows written
before the range checks (migration 0005) may hold some. One such row must fail alone, never the batch
it is read with.
"""

# No `from __future__ import annotations` here: TypedDict reads NotRequired from evaluated annotations.

import datetime as dt
from collections.abc import Sequence
from typing import Any, NotRequired, TypedDict, cast

from sqlalchemy import Connection, text
from sqlalchemy.exc import DataError


class MessageRow(TypedDict):
    """The columns of a `granule` row that its messages are built from (link_fetcher.messages): what the relay
    reads with each lease."""

    id: str
    filename: str
    tile_id: str | None
    platform: str | None
    size: int | None
    checksum: str | None
    blake3: str | None
    sensing_start: dt.datetime | None
    published: dt.datetime | None
    download_url: str
    source: str  # a db.Source value
    first_seen: dt.datetime
    collection: str | None
    assets: dict[str, str] | None
    online: bool | None
    deleted_at: dt.datetime | None
    deletion_cause: str | None
    supersedes: str | None


class GranuleRow(MessageRow):
    """A `granule` row read back, column by column (db.models.granule_table; a test keeps the two in step). `item`, the
    full STAC item, is left out where it is not needed."""

    product_type: str | None
    sensing_end: dt.datetime | None
    downloaded: bool
    downloaded_at: dt.datetime | None
    download_retries: int
    object_key: str | None
    download_error: str | None
    cloud_cover: float | None
    item: NotRequired[dict[str, Any] | None]
    identity: str | None
    product_name: str | None
    other_sources: list[str]
    own_deliveries: bool


def load_granules(
    conn: Connection, ids: Sequence[str], columns: Sequence[str]
) -> tuple[dict[str, GranuleRow], dict[str, str]]:
    """({id: row} of the recorded ids that can be read, {id: why not} of those that cannot). One statement for
    the batch; one per granule only when the batch holds an unreadable row."""
    statement = text(f"SELECT {', '.join(columns)} FROM granule WHERE id = ANY(CAST(:ids AS text[]))")
    try:
        return {row["id"]: _row(row) for row in conn.execute(statement, {"ids": list(ids)}).mappings()}, {}
    except DataError:
        pass
    rows: dict[str, GranuleRow] = {}
    unreadable: dict[str, str] = {}
    for granule_id in dict.fromkeys(ids):
        try:
            row = conn.execute(statement, {"ids": [granule_id]}).mappings().first()
        except DataError as exc:
            unreadable[granule_id] = f"granule row unreadable: {exc.orig}"
            continue
        if row is not None:
            rows[granule_id] = _row(row)
    return rows, unreadable


def _row(mapping: Any) -> GranuleRow:
    return cast(GranuleRow, dict(mapping))  # the columns selected are GranuleRow's (all, or all but `item`)

"""The downloader's state in Postgres: `granule` download columns and `status.last_file_downloaded_time`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence

from sqlalchemy import Connection, select, text

import db
from db import GranuleRow, granule_table

LAST_DOWNLOAD_KEY = "last_file_downloaded_time"


_ALL_COLUMNS = tuple(column.name for column in granule_table.columns)


def load_granules(conn: Connection, ids: Sequence[str]) -> tuple[dict[str, GranuleRow], dict[str, str]]:
    """({id: row as a dict} for the ids that are recorded and readable, {id: why not} for unreadable rows)."""
    return db.load_granules(conn, ids, _ALL_COLUMNS)


def mark_downloaded(conn: Connection, granule_id: str, key: str) -> None:
    conn.execute(
        text(
            """
            UPDATE granule SET downloaded = true, downloaded_at = now(), object_key = :key, download_error = NULL
            WHERE id = :id
            """
        ),
        {"id": granule_id, "key": key},
    )
    conn.execute(
        text(
            """
            INSERT INTO status (key, value, updated_at) VALUES (:key, :value, now())
            ON CONFLICT (key) DO UPDATE SET value = GREATEST(status.value, EXCLUDED.value), updated_at = now()
            """
        ),
        {"key": LAST_DOWNLOAD_KEY, "value": dt.datetime.now(dt.UTC).isoformat()},
    )


def mark_failed(conn: Connection, granule_id: str, error: str) -> None:
    conn.execute(
        text(
            """
            UPDATE granule SET download_retries = download_retries + 1, download_error = :error
            WHERE id = :id AND NOT downloaded
            """
        ),
        {"id": granule_id, "error": error[:2000]},
    )


def downloaded_since(
    conn: Connection, since: dt.datetime | None, batch: int = 500
) -> Iterator[tuple[list[GranuleRow], dict[str, str]]]:
    """Rows marked downloaded (first seen at or after `since`), in batches: (readable rows, {id: why not} for
    the rows that cannot be read back); not those CDSE deleted (their objects may have been removed on purpose)."""
    columns = granule_table.c
    query = select(columns.id).where(columns.downloaded, columns.deleted_at.is_(None)).order_by(columns.id)
    if since is not None:
        query = query.where(columns.first_seen >= since)
    ids = conn.execution_options(stream_results=True, yield_per=batch).execute(query).scalars()
    for partition in ids.partitions(batch):
        rows, unreadable = load_granules(conn, partition)
        yield list(rows.values()), unreadable


def reset_downloads(conn: Connection, ids: Sequence[str], reason: str) -> None:
    """Rows whose stored object went missing or bad: no longer downloaded, with the reason."""
    conn.execute(
        text(
            """
            UPDATE granule SET downloaded = false, downloaded_at = NULL, download_error = :reason
            WHERE id = ANY(CAST(:ids AS text[]))
            """
        ),
        {"ids": list(ids), "reason": reason},
    )


def stale_undownloaded(conn: Connection, older_than: dt.datetime, since: dt.datetime | None) -> list[str]:
    """Granules first seen before `older_than` and still not downloaded, with no delivery pending; a granule CDSE
    deleted is never downloaded, so it is not missing."""
    rows = conn.execute(
        text(
            """
            SELECT g.id FROM granule g
            WHERE NOT g.downloaded AND g.deleted_at IS NULL AND g.first_seen < :older_than
              AND (CAST(:since AS timestamptz) IS NULL OR g.first_seen >= :since)
              AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.granule_id = g.id AND o.status = 'pending')
            ORDER BY g.id
            """
        ),
        {"older_than": older_than, "since": since},
    )
    return [row[0] for row in rows]


def known_objects(conn: Connection, keys: Sequence[str], folders: Sequence[str]) -> tuple[set[str], set[str]]:
    """(keys some granule records as its object_key, folders that are a STAC granule's id)."""
    by_key = conn.execute(
        text("SELECT object_key FROM granule WHERE object_key = ANY(CAST(:keys AS text[]))"), {"keys": list(keys)}
    )
    by_folder = conn.execute(
        text("SELECT id FROM granule WHERE source = 'stac' AND id = ANY(CAST(:ids AS text[]))"), {"ids": list(folders)}
    )
    return {row[0] for row in by_key}, {row[0] for row in by_folder}

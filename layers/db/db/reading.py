"""Reading granule rows back when one of them may be unreadable.

psycopg refuses timestamps outside Python's years 1..9999, which PostgreSQL stores happily; rows written
before the range checks (migration 0005) may hold some. One such row must fail alone, never the batch
it is read with.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.exc import DataError


def load_granules(
    conn: Connection, ids: Sequence[str], columns: Sequence[str]
) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """({id: row} of the recorded ids that can be read, {id: why not} of those that cannot). One statement for
    the batch; one per granule only when the batch holds an unreadable row."""
    statement = text(f"SELECT {', '.join(columns)} FROM granule WHERE id = ANY(CAST(:ids AS text[]))")
    try:
        return {row["id"]: dict(row) for row in conn.execute(statement, {"ids": list(ids)}).mappings()}, {}
    except DataError:
        pass
    rows: dict[str, dict[str, Any]] = {}
    unreadable: dict[str, str] = {}
    for granule_id in dict.fromkeys(ids):
        try:
            row = conn.execute(statement, {"ids": [granule_id]}).mappings().first()
        except DataError as exc:
            unreadable[granule_id] = f"granule row unreadable: {exc.orig}"
            continue
        if row is not None:
            rows[granule_id] = dict(row)
    return rows, unreadable

"""A day-and-platform's fetch progress in `granule_count`: the server's count, products read, the cursor."""

from __future__ import annotations

import dataclasses
import datetime as dt

from sqlalchemy import Connection, func, select, update
from sqlalchemy.dialects.postgresql import insert

from db import granule_count_table
from link_fetcher.fetching.query import Cursor


@dataclasses.dataclass(frozen=True)
class DayProgress:
    day: dt.date
    platform: str
    available: int = 0  # the server's count for the day when the current pass (or re-check) began
    fetched: int = 0  # distinct products read by the current pass
    completed: bool = False
    cursor: Cursor = dataclasses.field(default_factory=Cursor)


def load_progress(conn: Connection, day: dt.date, platform: str) -> DayProgress:
    """The stored progress, creating the row of a day never fetched."""
    conn.execute(insert(granule_count_table).values(date=day, platform=platform).on_conflict_do_nothing())
    row = conn.execute(
        select(granule_count_table).where(granule_count_table.c.date == day, granule_count_table.c.platform == platform)
    ).one()
    return DayProgress(
        day=day,
        platform=platform,
        available=row.available_links,
        fetched=row.fetched_links,
        completed=row.completed,
        cursor=Cursor(row.cursor_published, row.cursor_offset),
    )


def save_progress(conn: Connection, progress: DayProgress) -> None:
    """Store progress (in the caller's transaction, with the page it follows) and stamp last_fetched_time."""
    conn.execute(
        update(granule_count_table)
        .where(granule_count_table.c.date == progress.day, granule_count_table.c.platform == progress.platform)
        .values(
            available_links=progress.available,
            fetched_links=progress.fetched,
            completed=progress.completed,
            cursor_published=progress.cursor.published,
            cursor_offset=progress.cursor.ties,
            last_fetched_time=func.now(),
        )
    )

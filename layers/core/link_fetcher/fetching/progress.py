"""A day's read progress, kept in a table of its own per collection: `granule_count` per publication day and
platform for products, `deletion_count` per deletion day for deletions. The server's count, items read, the
cursor; and how a page read moves them (`after_page`)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Table, func, select, update
from sqlalchemy.dialects.postgresql import insert

from db import deletion_count_table, granule_count_table
from link_fetcher.fetching.query import Cursor, advance


@dataclasses.dataclass(frozen=True)
class DayProgress:
    day: dt.date
    platform: str | None = None  # products: the platform read; deletions: None
    available: int = 0  # the server's count for the day when the current pass (or re-check) began
    fetched: int = 0  # distinct items read by the current pass
    completed: bool = False
    cursor: Cursor = dataclasses.field(default_factory=Cursor)


def after_page(
    progress: DayProgress,
    published: Sequence[dt.datetime],
    *,
    returned: int,
    top: int,
    count: int,
    from_day_start: bool,
) -> tuple[DayProgress, bool]:
    """The progress after a page of `returned` items (asked for `top`; the server counts `count`) with these
    publication instants, and whether the pass must start again from the day's start: the pages ran out before
    the count was reached, so items became visible behind the cursor. A pass that began at the day's start
    completes whatever it counted (`from_day_start`)."""
    cursor, counted = advance(progress.cursor, published)
    progress = dataclasses.replace(
        progress,
        cursor=cursor,
        fetched=progress.fetched + counted,
        # A request from the day's start counts the whole day.
        available=count if progress.cursor.published is None else progress.available,
    )
    if returned < top or returned >= count:
        if progress.fetched >= progress.available or from_day_start:
            return dataclasses.replace(progress, completed=True), False
        return progress, True
    return progress, False


@dataclasses.dataclass(frozen=True)
class ProgressTable:
    """Where a collection's progress is kept: the table (keyed by `date`, and `platform` when the collection is
    read per platform) and the names of its count and cursor columns."""

    table: Table
    available: str
    fetched: str
    cursor: str

    def _key(self, day: dt.date, platform: str | None) -> dict[str, Any]:
        return {"date": day} if platform is None else {"date": day, "platform": platform}

    def load(self, conn: Connection, day: dt.date, platform: str | None = None) -> DayProgress:
        """The stored progress, creating the row of a day never read."""
        key = self._key(day, platform)
        conn.execute(insert(self.table).values(**key).on_conflict_do_nothing())
        where = [self.table.c[name] == value for name, value in key.items()]
        row = conn.execute(select(self.table).where(*where)).one()._mapping
        cursor = Cursor(row[self.cursor], row["cursor_offset"])
        return DayProgress(day, platform, row[self.available], row[self.fetched], row["completed"], cursor)

    def save(self, conn: Connection, progress: DayProgress) -> None:
        """Store progress (in the caller's transaction, with the page it follows) and stamp last_fetched_time."""
        where = [self.table.c[name] == value for name, value in self._key(progress.day, progress.platform).items()]
        values = {
            self.available: progress.available,
            self.fetched: progress.fetched,
            "completed": progress.completed,
            self.cursor: progress.cursor.published,
            "cursor_offset": progress.cursor.ties,
            "last_fetched_time": func.now(),
        }
        conn.execute(update(self.table).where(*where).values(values))

    def unfinished(
        self, conn: Connection, first: dt.date, before: dt.date, platforms: Sequence[str] | None = None
    ) -> list[tuple[dt.date, str | None]]:
        """The (day, platform)s in [first, before) — of `platforms`, for a table kept per platform — whose read
        began and never completed (a poll that failed after its retries), newest first."""
        table = self.table
        where = [~table.c.completed, table.c.date >= first, table.c.date < before]
        per_platform = "platform" in table.c
        if per_platform and platforms is not None:
            where.append(table.c.platform.in_(platforms))
        columns = [table.c.date, table.c.platform] if per_platform else [table.c.date]
        rows = conn.execute(select(*columns).where(*where).order_by(table.c.date.desc(), *columns[1:]))
        return [(row.date, row.platform if per_platform else None) for row in rows]


PRODUCTS = ProgressTable(granule_count_table, "available_links", "fetched_links", "cursor_published")
DELETIONS = ProgressTable(deletion_count_table, "available_deletions", "fetched_deletions", "cursor_deleted")

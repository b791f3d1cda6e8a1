"""The resumable day loop, shared by the product poll (`fetch.py`) and the deletion poll (`deletions.py`): page
through one day of a CDSE collection, record each page with the progress it makes in one transaction, stop
early when asked and resume from the stored cursor.

A finished day is re-checked with one request: when the server's count has not changed, nothing more is read.
When it has, the items after the cursor are read (new ones are usually the newest); if the count is still not
reached, items became visible earlier in the day and the whole day is read again (progress.after_page).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

from sqlalchemy import Connection, Engine

from link_fetcher.fetching.progress import DayProgress, ProgressTable, after_page
from link_fetcher.fetching.query import Cursor

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True, slots=True)
class PageRead[T]:
    """What the loop needs of a page, and what the day records of it (`items`)."""

    instants: list[dt.datetime]  # each item's paging instant, in the server's order
    returned: int  # items the server returned (unreadable ones included)
    count: int  # the server's count of the day
    items: T


class DayPages[G, T](Protocol):
    """One day of one collection: what a page is (G, read into T), and where its progress is kept."""

    @property
    def progress_table(self) -> ProgressTable: ...

    @property
    def key(self) -> tuple[dt.date, str | None]:
        """The day, and the platform when the collection is read per platform."""
        ...

    @property
    def label(self) -> str:
        """For logs: `2024-09-12 S2A`, `deletions 2024-09-12`."""
        ...

    def count(self) -> int:
        """The day's count now: one cheap request."""
        ...

    def search(self, cursor: Cursor, top: int) -> G:
        """One page from `cursor`, of at most `top` items."""
        ...

    def read(self, page: G) -> PageRead[T]:
        """PagingError when the page cannot be paged."""
        ...

    def record(self, conn: Connection, items: T, progress: DayProgress) -> None:
        """Record a page's items in the caller's transaction (the loop saves `progress` in it too)."""
        ...

    def committed(self) -> None:
        """The page recorded last is committed: count it (reports, progress callbacks)."""
        ...


@dataclasses.dataclass
class DayRun:
    progress: DayProgress
    requests: int = 0
    unchanged: bool = False  # a finished day whose count had not changed: nothing was read


def read_day[G, T](engine: Engine, day: DayPages[G, T], *, page_size: int, should_stop: Callable[[], bool]) -> DayRun:
    """Read the day until done or `should_stop()` (asked before requesting each page); `progress.completed`
    says which."""
    with engine.begin() as conn:
        run = DayRun(day.progress_table.load(conn, *day.key))
    if run.progress.completed:
        count = day.count()
        run.requests += 1
        if count == run.progress.available:
            with engine.begin() as conn:
                day.progress_table.save(conn, run.progress)  # stamps the re-check
            run.unchanged = True
            return run
        log.info("%s: count changed %d -> %d, reading on", day.label, run.progress.available, count)
        run.progress = dataclasses.replace(run.progress, available=count, completed=False)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cdse-search") as searcher:

        def request_page(cursor: Cursor) -> tuple[int, Future[G]] | None:
            if should_stop():
                return None
            top = cursor.top(page_size)
            return top, searcher.submit(day.search, cursor, top)

        _read_pages(engine, day, run, request_page)
    return run


def _read_pages[G, T](
    engine: Engine,
    day: DayPages[G, T],
    run: DayRun,
    request_page: Callable[[Cursor], tuple[int, Future[G]] | None],
) -> None:
    # A pass that read from the day's start has seen everything visible when it began: it completes even if
    # items were withdrawn meanwhile (the count fell short), so this loop ends.
    from_day_start = run.progress.cursor.published is None
    pending = None if run.progress.completed else request_page(run.progress.cursor)
    while pending is not None:
        top, request = pending
        page = day.read(request.result())
        run.requests += 1
        progress, reread = after_page(
            run.progress,
            page.instants,
            returned=page.returned,
            top=top,
            count=page.count,
            from_day_start=from_day_start,
        )
        if reread:
            log.info("%s: fewer items after the cursor than the count: rereading", day.label)
            progress, from_day_start = DayProgress(*day.key), True
        run.progress = progress
        # The next page is asked for before this one is recorded: CDSE's latency overlaps the database's.
        pending = None if progress.completed else request_page(progress.cursor)
        with engine.begin() as conn:
            day.record(conn, page.items, progress)
            day.progress_table.save(conn, progress)
        day.committed()

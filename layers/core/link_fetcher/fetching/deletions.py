"""Polling CDSE's DeletedProducts collection (SPEC §9) per deletion day: paged, recorded a page at a time with
its progress (table `deletion_count`), resumable, and a finished day re-checked with one request.

Paging is the product poll's (fetching/query.py): keyset on DeletionDate with `$skip=0`, products at the
cursor's instant re-read and counted once, so a day of any size (more than 10,000 deletions) is read whole.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Sequence

from sqlalchemy import Connection, Engine, func, select, update
from sqlalchemy.dialects.postgresql import insert

from db import deletion_count_table, record_deletions
from db.deletions import DEFAULT_MEMORY_DAYS
from link_fetcher.cdse.deleted_products import DeletedProductsCatalogue, parse_items, remember_criteria, to_deletion
from link_fetcher.cdse.products import Criteria, load_allowed_tiles
from link_fetcher.fetching.query import Cursor, PagingError, after_page, day_window, odata_time
from link_fetcher.settings import Settings

log = logging.getLogger(__name__)


def day_filter(day: dt.date, deleted_from: dt.datetime | None = None) -> str:
    """The half-open deletion day, or its part from `deleted_from` (inclusive) on. Names are filtered here."""
    start, end = day_window(day)
    return f"DeletionDate ge {odata_time(max(start, deleted_from or start))} and DeletionDate lt {odata_time(end)}"


def count_params(day: dt.date) -> dict[str, str]:
    return {"$filter": day_filter(day), "$top": "1", "$count": "True"}


def page_params(day: dt.date, cursor: Cursor, top: int) -> dict[str, str]:
    return {
        "$filter": day_filter(day, cursor.published),
        "$orderby": "DeletionDate asc",
        "$top": str(top),
        "$skip": "0",
        "$count": "True",
    }


@dataclasses.dataclass(frozen=True)
class DeletionProgress:
    day: dt.date
    available: int = 0
    fetched: int = 0
    completed: bool = False
    cursor: Cursor = dataclasses.field(default_factory=Cursor)


def load_progress(conn: Connection, day: dt.date) -> DeletionProgress:
    conn.execute(insert(deletion_count_table).values(date=day).on_conflict_do_nothing())
    row = conn.execute(select(deletion_count_table).where(deletion_count_table.c.date == day)).one()
    return DeletionProgress(
        day,
        row.available_deletions,
        row.fetched_deletions,
        row.completed,
        Cursor(row.cursor_deleted, row.cursor_offset),
    )


def save_progress(conn: Connection, progress: DeletionProgress) -> None:
    conn.execute(
        update(deletion_count_table)
        .where(deletion_count_table.c.date == progress.day)
        .values(
            available_deletions=progress.available,
            fetched_deletions=progress.fetched,
            completed=progress.completed,
            cursor_deleted=progress.cursor.published,
            cursor_offset=progress.cursor.ties,
            last_fetched_time=func.now(),
        )
    )


@dataclasses.dataclass
class DeletionDayReport:
    day: dt.date
    requests: int = 0
    read: int = 0
    announced: int = 0  # recorded granules marked deleted now
    remembered: int = 0  # never recorded, remembered
    refused: int = 0  # recorded, not believed: another name, or dated before the granule's publication
    malformed: int = 0
    available: int = 0
    completed: bool = False
    unchanged: bool = False


class DeletionFetcher:
    """Reads deletion days into the database; one per process is enough."""

    def __init__(
        self,
        engine: Engine,
        catalogue: DeletedProductsCatalogue,
        *,
        criteria: Criteria,
        download_url: str,
        sink_names: Sequence[str],
        page_size: int = 1000,
        memory_days: int = DEFAULT_MEMORY_DAYS,
    ) -> None:
        self.engine = engine
        self.catalogue = catalogue
        self.criteria = criteria
        self.download_url = download_url
        self.sink_names = list(sink_names)
        self.page_size = page_size
        self.memory_days = memory_days

    @classmethod
    def from_settings(cls, settings: Settings, engine: Engine, sink_names: Sequence[str]) -> DeletionFetcher:
        return cls(
            engine,
            DeletedProductsCatalogue(settings.cdse_catalogue_url),
            criteria=remember_criteria(
                load_allowed_tiles(settings.allowed_tiles_file), settings.platforms, settings.product_type
            ),
            download_url=settings.cdse_download_url,
            sink_names=sink_names,
            page_size=settings.cdse_page_size,
            memory_days=settings.deletion_memory_days,
        )

    def fetch(self, day: dt.date, *, should_stop: Callable[[], bool] = lambda: False) -> DeletionDayReport:
        """Read the day until done or `should_stop()` (asked before each page); `completed` says which."""
        report = DeletionDayReport(day)
        with self.engine.begin() as conn:
            progress = load_progress(conn, day)
        if progress.completed:
            count = self.catalogue.search(count_params(day)).count
            report.requests += 1
            if count == progress.available:
                with self.engine.begin() as conn:
                    save_progress(conn, progress)
                report.available, report.completed, report.unchanged = count, True, True
                return report
            progress = dataclasses.replace(progress, available=count, completed=False)

        # A pass from the day's start has seen everything visible when it began: it completes even if the
        # count fell short meanwhile, so this loop ends.
        from_day_start = progress.cursor.published is None
        while not progress.completed and not should_stop():
            top = progress.cursor.top(self.page_size)
            page = self.catalogue.search(page_params(day, progress.cursor, top))
            report.requests += 1
            products, malformed = parse_items(page.items)
            if page.items and not products:
                raise PagingError(f"CDSE DeletedProducts: a page of {len(page.items)} unreadable deletions")
            progress, reread = after_page(
                progress,
                [product.deletion_date for product in products],
                returned=len(page.items),
                top=top,
                count=page.count,
                from_day_start=from_day_start,
            )
            if reread:
                log.info("deletions %s: fewer after the cursor than the count: rereading", day)
                progress, from_day_start = DeletionProgress(day), True
            deletions = [
                to_deletion(product, download_base_url=self.download_url, criteria=self.criteria)
                for product in products
            ]
            with self.engine.begin() as conn:
                outcome = record_deletions(conn, deletions, self.sink_names, memory_days=self.memory_days)
                save_progress(conn, progress)
            report.read += len(page.items)
            report.malformed += malformed
            report.announced += len(outcome.announced)
            report.remembered += len(outcome.remembered)
            report.refused += len(outcome.refused)
            for granule_id, reason in outcome.refused.items():
                log.warning("deletion of %s not believed: %s", granule_id, reason)
        report.available, report.completed = progress.available, progress.completed
        return report

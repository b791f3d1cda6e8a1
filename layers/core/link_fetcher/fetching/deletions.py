"""Polling CDSE's DeletedProducts collection (SPEC §9) per deletion day, through the shared day loop
(`day_loop.read_day`): paged, recorded a page at a time with its progress (table `deletion_count`), resumable,
and a finished day re-checked with one request.

Paging is the product poll's (fetching/query.py): keyset on DeletionDate with `$skip=0`, products at the
cursor's instant re-read and counted once, so a day of any size (more than 10,000 deletions) is read whole.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable
from typing import ClassVar

from sqlalchemy import Connection, Engine

from link_fetcher.cdse.deleted_products import (
    DeletedProduct,
    DeletedProductsCatalogue,
    DeletionPage,
    parse_items,
    remember_criteria,
    to_deletion,
)
from link_fetcher.cdse.products import Criteria, load_allowed_tiles
from link_fetcher.fetching.day_loop import PageRead, read_day
from link_fetcher.fetching.progress import DELETIONS, DayProgress, ProgressTable
from link_fetcher.fetching.query import Cursor, PagingError, day_window, odata_time
from link_fetcher.recording import Recorder
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


@dataclasses.dataclass
class _DeletionDay:
    """One deletion day, for the shared day loop: pages of DeletedProducts, `deletion_count`."""

    progress_table: ClassVar[ProgressTable] = DELETIONS

    fetcher: DeletionFetcher
    day: dt.date
    report: DeletionDayReport
    page: DeletionDayReport | None = None  # what the page recorded last adds, once committed

    @property
    def label(self) -> str:
        return f"deletions {self.day}"

    @property
    def key(self) -> tuple[dt.date, str | None]:
        return self.day, None

    def count(self) -> int:
        return self.fetcher.catalogue.search(count_params(self.day)).count

    def search(self, cursor: Cursor, top: int) -> DeletionPage:
        return self.fetcher.catalogue.search(page_params(self.day, cursor, top))

    def read(self, page: DeletionPage) -> PageRead[list[DeletedProduct]]:
        products, malformed = parse_items(page.items)
        if page.items and not products:
            raise PagingError(f"CDSE DeletedProducts: a page of {len(page.items)} unreadable deletions")
        self.page = DeletionDayReport(self.day, read=len(page.items), malformed=malformed)
        return PageRead([product.deletion_date for product in products], len(page.items), page.count, products)

    def record(self, conn: Connection, items: list[DeletedProduct], progress: DayProgress) -> None:
        base_url, criteria = self.fetcher.download_url, self.fetcher.criteria
        deletions = [to_deletion(item, download_base_url=base_url, criteria=criteria) for item in items]
        outcome = self.fetcher.recorder.deletions(conn, deletions)
        assert self.page is not None
        self.page.announced, self.page.remembered = len(outcome.announced), len(outcome.remembered)
        self.page.refused = len(outcome.refused)
        for granule_id, reason in outcome.refused.items():
            log.warning("deletion of %s not believed: %s", granule_id, reason)

    def committed(self) -> None:
        assert self.page is not None
        self.report.read += self.page.read
        self.report.malformed += self.page.malformed
        self.report.announced += self.page.announced
        self.report.remembered += self.page.remembered
        self.report.refused += self.page.refused


@dataclasses.dataclass
class DeletionFetcher:
    """Reads deletion days into the database; one per process is enough."""

    recorder: Recorder
    catalogue: DeletedProductsCatalogue
    _: dataclasses.KW_ONLY
    criteria: Criteria
    download_url: str
    page_size: int = 1000

    @classmethod
    def from_settings(cls, settings: Settings, recorder: Recorder) -> DeletionFetcher:
        return cls(
            recorder,
            DeletedProductsCatalogue(settings.cdse.catalogue_url),
            criteria=remember_criteria(
                load_allowed_tiles(settings.criteria.allowed_tiles_file),
                settings.criteria.platforms,
                settings.criteria.product_type,
            ),
            download_url=settings.cdse.download_url,
            page_size=settings.cdse.page_size,
        )

    @property
    def engine(self) -> Engine:
        return self.recorder.engine

    def fetch(self, day: dt.date, *, should_stop: Callable[[], bool] = lambda: False) -> DeletionDayReport:
        """Read the day until done or `should_stop()` (asked before each page); `completed` says which."""
        report = DeletionDayReport(day)
        run = read_day(self.engine, _DeletionDay(self, day, report), page_size=self.page_size, should_stop=should_stop)
        report.requests, report.available = run.requests, run.progress.available
        report.completed, report.unchanged = run.progress.completed, run.unchanged
        return report

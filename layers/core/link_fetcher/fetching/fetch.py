"""Fetch one publication day of one platform: page through CDSE, record each page with its progress in one
transaction, stop early when asked and resume from the stored cursor.

A finished day is re-checked with one request: when the server's count has not changed, nothing more is
read. When it has, the products after the cursor are read (new ones are usually the newest); if the count
is still not reached, products became visible earlier in the day and the whole day is read again.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from sqlalchemy import Engine

from db import GranuleRecord, Source, record_granules
from link_fetcher.cdse.products import (
    Criteria,
    ListedProduct,
    MalformedProduct,
    load_allowed_tiles,
    product_rejection_reason,
    to_record,
)
from link_fetcher.cdse.search import CdseCatalogue, SearchPage
from link_fetcher.fetching.progress import DayProgress, load_progress, save_progress
from link_fetcher.fetching.query import Cursor, DayQuery, PagingError, after_page
from link_fetcher.settings import Settings
from link_fetcher.timestamps import MALFORMED

log = logging.getLogger(__name__)

SOURCE = Source.SEARCH


@dataclasses.dataclass(frozen=True)
class PageOutcome:
    read: int
    new: int
    skipped: int
    available: int


@dataclasses.dataclass
class DayReport:
    day: dt.date
    platform: str
    requests: int = 0
    read: int = 0
    new: int = 0
    skipped: int = 0
    skipped_because: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    available: int = 0
    fetched: int = 0
    completed: bool = False
    unchanged: bool = False  # a finished day whose count had not changed: nothing was read

    def add(self, outcome: PageOutcome) -> None:
        self.read += outcome.read
        self.new += outcome.new
        self.skipped += outcome.skipped


def select_records(
    products: Sequence[ListedProduct | MalformedProduct], criteria: Criteria, download_url: str, now: dt.datetime
) -> tuple[list[GranuleRecord], collections.Counter[str]]:
    """The records worth keeping, and why the others were not (a product that cannot be read: `malformed`)."""
    records: list[GranuleRecord] = []
    rejected: collections.Counter[str] = collections.Counter()
    for product in products:
        if isinstance(product, MalformedProduct):
            log.warning("skipped malformed %s", product.describe())
            rejected[MALFORMED] += 1
            continue
        record = to_record(product, source=SOURCE, download_base_url=download_url)
        if reason := product_rejection_reason(product, record, criteria, now):
            rejected[reason] += 1
        else:
            records.append(record)
    return records, rejected


def _published(products: Sequence[ListedProduct | MalformedProduct]) -> list[dt.datetime]:
    """Each product's PublicationDate, for the paging cursor. The page is in PublicationDate order, so a product
    without a usable one (malformed) takes its predecessor's (the first ones, their successor's): it is still
    counted, and the page still reads as full."""
    dates = [
        product.published if isinstance(product, MalformedProduct) else product.publication_date for product in products
    ]
    known = [date for date in dates if date is not None]
    if dates and not known:
        raise PagingError("CDSE returned a page with no usable PublicationDate")
    filled: list[dt.datetime] = []
    for date in dates:
        filled.append(date or (filled[-1] if filled else known[0]))
    return filled


@dataclasses.dataclass
class DayFetcher:
    """Fetches day-and-platform pairs into the database; one per process is enough."""

    engine: Engine
    catalogue: CdseCatalogue
    _: dataclasses.KW_ONLY
    allowed_tiles: frozenset[str]
    product_type: str
    max_acquisition_age_days: int
    download_url: str
    sink_names: Sequence[str]
    page_size: int = 1000
    reprocessed_policy: str = "deliver"

    @classmethod
    def from_settings(
        cls, settings: Settings, engine: Engine, catalogue: CdseCatalogue, sink_names: Sequence[str]
    ) -> DayFetcher:
        return cls(
            engine,
            catalogue,
            allowed_tiles=load_allowed_tiles(settings.allowed_tiles_file),
            product_type=settings.product_type,
            max_acquisition_age_days=settings.max_acquisition_age_days,
            download_url=settings.cdse_download_url,
            sink_names=sink_names,
            page_size=settings.cdse_page_size,
            reprocessed_policy=settings.reprocessed_policy,
        )

    def fetch(
        self,
        day: dt.date,
        platform: str,
        *,
        should_stop: Callable[[], bool] = lambda: False,
        on_page: Callable[[PageOutcome], None] = lambda outcome: None,
    ) -> DayReport:
        """Read the day until done or `should_stop()` (asked before requesting each page); `completed` says
        which. Each page is recorded with the progress it makes in one transaction."""
        query = DayQuery(day, platform, self.product_type, self.max_acquisition_age_days)
        report = DayReport(day, platform)
        with self.engine.begin() as conn:
            progress = load_progress(conn, day, platform)
        if progress.completed:
            progress = self._recheck(query, progress, report)
            if report.unchanged:
                return report
        progress = self._read_pages(query, progress, report, should_stop, on_page)
        report.available, report.fetched, report.completed = progress.available, progress.fetched, progress.completed
        return report

    def _recheck(self, query: DayQuery, progress: DayProgress, report: DayReport) -> DayProgress:
        """A finished day, asked for its count: unchanged, it stays finished (`report.unchanged`); changed, the
        reading goes on from the cursor."""
        count = self.catalogue.search(query.count_params()).count
        report.requests += 1
        if count == progress.available:
            with self.engine.begin() as conn:
                save_progress(conn, progress)
            report.available, report.fetched = count, progress.fetched
            report.completed = report.unchanged = True
            return progress
        log.info("%s %s: count changed %d -> %d, reading on", query.day, query.platform, progress.available, count)
        return dataclasses.replace(progress, available=count, completed=False)

    def _read_pages(
        self,
        query: DayQuery,
        progress: DayProgress,
        report: DayReport,
        should_stop: Callable[[], bool],
        on_page: Callable[[PageOutcome], None],
    ) -> DayProgress:
        """Page on from the cursor until the day is done or `should_stop()`; the progress reached."""
        # Polling puts platform, type and recency in the query; these checks guard against a server ignoring them.
        criteria = Criteria(
            allowed_tiles=self.allowed_tiles, platforms=[query.platform], product_type=self.product_type
        )
        # A pass that read from the day's start has seen everything visible when it began: it completes even
        # if products were withdrawn meanwhile (the count fell short), so this loop ends.
        from_day_start = progress.cursor.published is None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="cdse-search") as searcher:

            def request_page(cursor: Cursor) -> tuple[int, Future[SearchPage]] | None:
                if should_stop():
                    return None
                top = cursor.top(self.page_size)
                return top, searcher.submit(self.catalogue.search, query.page_params(cursor, top))

            pending = None if progress.completed else request_page(progress.cursor)
            while pending is not None:
                top, request = pending
                page = request.result()
                report.requests += 1
                progress, reread = after_page(
                    progress,
                    _published(page.products),
                    returned=len(page.products),
                    top=top,
                    count=page.count,
                    from_day_start=from_day_start,
                )
                if reread:
                    log.info(
                        "%s %s: fewer products after the cursor than the count: rereading", query.day, query.platform
                    )
                    progress, from_day_start = DayProgress(query.day, query.platform), True
                # The next page is asked for before this one is recorded: CDSE's latency overlaps the database's.
                pending = None if progress.completed else request_page(progress.cursor)
                on_page(self._record_page(page, criteria, progress, report))
        return progress

    def _record_page(
        self, page: SearchPage, criteria: Criteria, progress: DayProgress, report: DayReport
    ) -> PageOutcome:
        """Record the page's products worth keeping with the progress it made, in one transaction."""
        records, rejected = select_records(page.products, criteria, self.download_url, dt.datetime.now(dt.UTC))
        with self.engine.begin() as conn:
            new_ids = (
                record_granules(conn, records, self.sink_names, reprocessed_policy=self.reprocessed_policy)
                if records
                else []
            )
            save_progress(conn, progress)
        outcome = PageOutcome(len(page.products), len(new_ids), sum(rejected.values()), progress.available)
        report.add(outcome)
        report.skipped_because.update(rejected)
        return outcome

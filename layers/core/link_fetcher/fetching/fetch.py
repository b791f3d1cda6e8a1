"""Fetch one publication day of one platform: the products of CDSE's search, through the shared day loop
(`day_loop.read_day`: paged, each page recorded with its progress, resumable, a finished day re-checked)."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from typing import ClassVar

from sqlalchemy import Connection, Engine

from db import GranuleRecord, Source
from link_fetcher.cdse.products import (
    Criteria,
    ListedProduct,
    MalformedProduct,
    load_allowed_tiles,
    product_rejection_reason,
    to_record,
)
from link_fetcher.cdse.search import CdseCatalogue, SearchPage
from link_fetcher.fetching.day_loop import PageRead, read_day
from link_fetcher.fetching.progress import PRODUCTS, DayProgress, ProgressTable
from link_fetcher.fetching.query import Cursor, DayQuery, PagingError
from link_fetcher.recording import Recorder
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
class _ProductDay:
    """One publication day of one platform, for the shared day loop: pages of products, `granule_count`."""

    progress_table: ClassVar[ProgressTable] = PRODUCTS

    fetcher: DayFetcher
    query: DayQuery
    criteria: Criteria
    report: DayReport
    on_page: Callable[[PageOutcome], None]
    outcome: PageOutcome | None = None
    rejected: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)

    @property
    def label(self) -> str:
        return f"{self.query.day} {self.query.platform}"

    @property
    def key(self) -> tuple[dt.date, str | None]:
        return self.query.day, self.query.platform

    def count(self) -> int:
        return self.fetcher.catalogue.search(self.query.count_params()).count

    def search(self, cursor: Cursor, top: int) -> SearchPage:
        return self.fetcher.catalogue.search(self.query.page_params(cursor, top))

    def read(self, page: SearchPage) -> PageRead[tuple[list[GranuleRecord], collections.Counter[str]]]:
        now = dt.datetime.now(dt.UTC)
        selected = select_records(page.products, self.criteria, self.fetcher.download_url, now)
        return PageRead(_published(page.products), len(page.products), page.count, selected)

    def record(
        self, conn: Connection, items: tuple[list[GranuleRecord], collections.Counter[str]], progress: DayProgress
    ) -> None:
        records, rejected = items
        new_ids = self.fetcher.recorder.granules(conn, records)
        read = len(records) + sum(rejected.values())
        self.outcome = PageOutcome(read, len(new_ids), sum(rejected.values()), progress.available)
        self.rejected = rejected

    def committed(self) -> None:
        assert self.outcome is not None
        self.report.add(self.outcome)
        self.report.skipped_because.update(self.rejected)
        self.on_page(self.outcome)


@dataclasses.dataclass
class DayFetcher:
    """Fetches day-and-platform pairs into the database; one per process is enough."""

    recorder: Recorder
    catalogue: CdseCatalogue
    _: dataclasses.KW_ONLY
    allowed_tiles: frozenset[str]
    product_type: str
    max_acquisition_age_days: int
    download_url: str
    page_size: int = 1000

    @classmethod
    def from_settings(cls, settings: Settings, recorder: Recorder, catalogue: CdseCatalogue) -> DayFetcher:
        return cls(
            recorder,
            catalogue,
            allowed_tiles=load_allowed_tiles(settings.criteria.allowed_tiles_file),
            product_type=settings.criteria.product_type,
            max_acquisition_age_days=settings.criteria.max_acquisition_age_days,
            download_url=settings.cdse.download_url,
            page_size=settings.cdse.page_size,
        )

    @property
    def engine(self) -> Engine:
        return self.recorder.engine

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
        # Polling puts platform, type and recency in the query; these checks guard against a server ignoring them.
        criteria = Criteria(allowed_tiles=self.allowed_tiles, platforms=[platform], product_type=self.product_type)
        report = DayReport(day, platform)
        run = read_day(
            self.engine,
            _ProductDay(self, query, criteria, report, on_page),
            page_size=self.page_size,
            should_stop=should_stop,
        )
        report.requests = run.requests
        report.available, report.fetched = run.progress.available, run.progress.fetched
        report.completed, report.unchanged = run.progress.completed, run.unchanged
        return report

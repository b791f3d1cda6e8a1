"""Fetch a STAC area: check everything first (collections, bands), then walk the windows, recording each page
with its deliveries in one transaction through the shared recorder. Delivery itself is the relay's job."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import logging
from collections.abc import Callable, Sequence
from typing import Any

from link_fetcher.recording import Recorder
from link_fetcher.stac.area import Area
from link_fetcher.stac.client import SearchRequest, StacApi
from link_fetcher.stac.items import (
    ItemCriteria,
    UnknownBands,
    check_bands,
    item_problem,
    rejection_reason,
    to_record,
)
from link_fetcher.stac.timerange import TimeRange, windows
from link_fetcher.timestamps import MALFORMED

log = logging.getLogger(__name__)

DEFAULT_WINDOW = dt.timedelta(days=1)


@dataclasses.dataclass(frozen=True, slots=True)
class StacQuery:
    """What to watch: an area on one API, over a time range cut into windows."""

    api_url: str
    collections: tuple[str, ...]
    area: Area
    time_range: TimeRange
    window: dt.timedelta = DEFAULT_WINDOW
    bands: tuple[str, ...] = ()
    max_cloud: float | None = None
    # Deliver this search's items on their own (their messages carry the assets) even when another source
    # brought the same product; otherwise an item of a product recorded before is that granule (SPEC §11).
    own_deliveries: bool = False


@dataclasses.dataclass
class CollectionSummary:
    collection: str
    windows: int = 0
    pages: int = 0
    returned: int = 0  # items the API returned, window-boundary repeats included
    recorded: int = 0  # new: recorded now and scheduled for delivery
    known: int = 0  # recorded before (by an earlier run or a concurrent one)
    rejected: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)


ProgressCallback = Callable[[str, TimeRange, CollectionSummary], None]


def check_query(api: StacApi, query: StacQuery) -> None:
    """Fail before recording anything: every collection exists and every band asked for is an asset (by the
    collection's `item_assets`, else by the first item in the area and range)."""
    for collection in query.collections:
        description = api.collection(collection)
        if not query.bands:
            continue
        item_assets = description.get("item_assets")
        if isinstance(item_assets, dict) and item_assets:
            if missing := [band for band in query.bands if band not in item_assets]:
                raise UnknownBands(f"collection {collection} (item_assets)", missing, list(item_assets))
            continue
        probe = SearchRequest(collection, query.area, query.time_range, page_size=1)
        first_page = next(api.pages(probe), [])
        if first_page:
            check_bands(first_page[0], query.bands)


@dataclasses.dataclass(frozen=True, slots=True)
class CheckedQuery:
    label: str  # the watch name; empty for a search given on the command line
    query: StacQuery
    api: StacApi


def open_and_check(queries: Sequence[tuple[str, StacQuery]], *, attempts: int) -> list[CheckedQuery]:
    """Open each API once and check every query, so a bad one stops the run before anything is recorded."""
    apis: dict[str, StacApi] = {}
    checked = []
    for label, query in queries:
        if query.api_url not in apis:
            apis[query.api_url] = StacApi.open(query.api_url, attempts=attempts)
        check_query(apis[query.api_url], query)
        checked.append(CheckedQuery(label, query, apis[query.api_url]))
    return checked


def fetch_items(
    recorder: Recorder,
    api: StacApi,
    query: StacQuery,
    *,
    page_size: int,
    keep_unknown_cloud: bool = True,
    on_window: ProgressCallback | None = None,
) -> list[CollectionSummary]:
    """Record every item of a checked query not recorded before (by any source: SPEC §11) through the shared
    recorder (REPROCESSED_POLICY honoured as by every source); one summary per collection.

    `keep_unknown_cloud`: an item without eo:cloud_cover is kept under a cloud limit; the limit is then checked
    here only, since the API's own filter would drop such items unseen."""
    summaries = []
    for collection in query.collections:
        summary = CollectionSummary(collection)
        summaries.append(summary)
        for window in windows(query.time_range, query.window):
            criteria = ItemCriteria(
                window=window, bands=query.bands, max_cloud=query.max_cloud, keep_unknown_cloud=keep_unknown_cloud
            )
            server_cloud_limit = None if keep_unknown_cloud else query.max_cloud
            request = SearchRequest(collection, query.area, window, server_cloud_limit, page_size)
            recording = _Recording(recorder, query.own_deliveries)
            for page in api.pages(request):
                _record_page(recording, api, collection, page, criteria, summary)
            summary.windows += 1
            if on_window:
                on_window(collection, window, summary)
    return summaries


@dataclasses.dataclass(frozen=True, slots=True)
class _Recording:
    """Where and how a query's pages are recorded."""

    recorder: Recorder
    own_deliveries: bool


def _record_page(
    recording: _Recording,
    api: StacApi,
    collection: str,
    page: list[dict[str, Any]],
    criteria: ItemCriteria,
    summary: CollectionSummary,
) -> None:
    records = []
    for item in page:
        if reason := rejection_reason(item, criteria):
            if reason == MALFORMED:
                item_id = item.get("id") if isinstance(item, dict) else None
                log.warning("%s: skipped malformed item %s: %s", collection, item_id, item_problem(item))
            summary.rejected[reason] += 1
        else:
            record = to_record(item, collection=collection, bands=criteria.bands, api_url=api.url)
            records.append(dataclasses.replace(record, own_deliveries=recording.own_deliveries))
    with recording.recorder.engine.begin() as conn:
        new_ids = recording.recorder.granules(conn, records)
    summary.pages += 1
    summary.returned += len(page)
    summary.recorded += len(new_ids)
    summary.known += len(records) - len(new_ids)
    log.info("%s %s: page of %d, %d new", collection, criteria.window, len(page), len(new_ids))

"""Polling source: complete, resumable CDSE OData search per publication day and platform (SPEC §2, §4)."""

from link_fetcher.fetching.fetch import DayFetcher, DayReport, PageOutcome
from link_fetcher.fetching.query import DayQuery, PagingError, days_between, query_days

__all__ = [
    "DayFetcher",
    "DayQuery",
    "DayReport",
    "PageOutcome",
    "PagingError",
    "days_between",
    "query_days",
]

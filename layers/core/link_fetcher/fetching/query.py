"""The CDSE OData search plan for one publication day and platform (SPEC §2). Pure: no I/O.

Paging is keyset on PublicationDate: each request asks for `PublicationDate ge <last one read>` with
`$skip=0`, so a day of any size is read whole and products appearing behind the cursor shift nothing.
Products whose PublicationDate equals the cursor are read again (their order is undefined, so skipping a
count of them could skip an unread one); `advance` counts them once. A page holding nothing but such ties
is followed by one of `$top` 1000, which holds the whole group unless 1000 products share one instant.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
from collections.abc import Sequence

from link_fetcher.mission import MISSION

MAX_TOP = 1000


class PagingError(RuntimeError):
    """The server's answer cannot be paged safely (out of order, or too many products at one instant)."""


def day_window(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """The half-open publication window [D 00:00Z, D+1 00:00Z)."""
    start = dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)
    return start, start + dt.timedelta(days=1)


def odata_time(value: dt.datetime) -> str:
    """`2024-09-12T14:52:06.118Z`: milliseconds as CDSE gives them, microseconds only when present."""
    value = value.astimezone(dt.UTC)
    timespec = "milliseconds" if value.microsecond % 1000 == 0 else "microseconds"
    return value.replace(tzinfo=None).isoformat(timespec=timespec) + "Z"


def _string_attribute(name: str, value: str) -> str:
    return (
        f"Attributes/OData.CSC.StringAttribute/any(att:att/Name eq '{name}' "
        f"and att/OData.CSC.StringAttribute/Value eq '{value}')"
    )


@dataclasses.dataclass(frozen=True)
class DayQuery:
    """What one day-and-platform search asks for."""

    day: dt.date
    platform: str
    product_type: str
    max_acquisition_age_days: int

    def filter(self, published_from: dt.datetime | None = None) -> str:
        """`$filter` for the day, or for its part from `published_from` (inclusive) on."""
        start, end = day_window(self.day)
        sensed_from = start - dt.timedelta(days=self.max_acquisition_age_days)
        return " and ".join(
            (
                f"Collection/Name eq '{MISSION.collection}'",
                _string_attribute("productType", self.product_type),
                _string_attribute("platformSerialIdentifier", MISSION.serial(self.platform)),
                f"PublicationDate ge {odata_time(max(start, published_from or start))}",
                f"PublicationDate lt {odata_time(end)}",
                f"ContentDate/Start ge {odata_time(sensed_from)}",
            )
        )

    def count_params(self) -> dict[str, str]:
        """The cheapest request that gives the day's count: one product, no attributes."""
        return {"$filter": self.filter(), "$top": "1", "$count": "True"}

    def page_params(self, cursor: Cursor, top: int) -> dict[str, str]:
        return {
            "$filter": self.filter(cursor.published),
            "$orderby": "PublicationDate asc",
            "$top": str(top),
            "$skip": "0",
            "$count": "True",
            "$expand": "Attributes",
        }


@dataclasses.dataclass(frozen=True)
class Cursor:
    """Where the next page starts: products published at or after `published` (None: the day's start), of
    which the `ties` published exactly at `published` were already counted."""

    published: dt.datetime | None = None
    ties: int = 0

    def top(self, page_size: int) -> int:
        """`$top` of the next page: ties are re-read, so a page full of them is followed by a larger one."""
        if self.ties < page_size:
            return page_size
        if self.ties < MAX_TOP:
            return MAX_TOP
        instant = odata_time(self.published) if self.published else "the day's start"
        raise PagingError(f"{MAX_TOP} or more products published at {instant}: cannot page them")


def advance(cursor: Cursor, published: Sequence[dt.datetime]) -> tuple[Cursor, int]:
    """The cursor after a page whose products have these PublicationDates, and how many of them were not
    counted before."""
    if not published:
        return cursor, 0
    previous = cursor.published
    if (previous is not None and published[0] < previous) or any(a > b for a, b in itertools.pairwise(published)):
        raise PagingError("CDSE returned products out of PublicationDate order")
    at_cursor = sum(1 for value in published if value == previous)
    already_counted = min(at_cursor, cursor.ties)
    last = published[-1]
    # A page that ends at the cursor's instant holds only ties.
    ties = max(cursor.ties, at_cursor) if last == previous else published.count(last)
    return Cursor(last, ties), len(published) - already_counted


def query_days(today: dt.date, lookback_days: int) -> list[dt.date]:
    """The `lookback_days` publication days before `today`, newest first."""
    return [today - dt.timedelta(days=offset) for offset in range(1, lookback_days + 1)]


def days_between(first: dt.date, last: dt.date) -> list[dt.date]:
    """Every day from `first` to `last`, both included."""
    return [first + dt.timedelta(days=offset) for offset in range((last - first).days + 1)]

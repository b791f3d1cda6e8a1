"""The search plan and keyset paging of the polling source (pure functions)."""

from __future__ import annotations

import datetime as dt
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from link_fetcher.fetching.progress import DayProgress, after_page
from link_fetcher.fetching.query import (
    Cursor,
    DayQuery,
    PagingError,
    advance,
    day_window,
    days_between,
    query_days,
)

pytestmark = pytest.mark.unit

DAY = dt.date(2024, 9, 12)
T0 = dt.datetime(2024, 9, 12, 10, tzinfo=dt.UTC)


def test_filter_is_the_spec_conjunction_with_a_half_open_window() -> None:
    query = DayQuery(DAY, "S2B", "S2MSI1C", 30)
    assert query.filter().split(" and ") == [
        "Collection/Name eq 'SENTINEL-2'",
        "Attributes/OData.CSC.StringAttribute/any(att:att/Name eq 'productType'",
        "att/OData.CSC.StringAttribute/Value eq 'S2MSI1C')",
        "Attributes/OData.CSC.StringAttribute/any(att:att/Name eq 'platformSerialIdentifier'",
        "att/OData.CSC.StringAttribute/Value eq 'B')",
        "PublicationDate ge 2024-09-12T00:00:00.000Z",
        "PublicationDate lt 2024-09-13T00:00:00.000Z",
        "ContentDate/Start ge 2024-08-13T00:00:00.000Z",
    ]
    resumed = query.filter(dt.datetime(2024, 9, 12, 14, 52, 6, 118000, tzinfo=dt.UTC))
    assert "PublicationDate ge 2024-09-12T14:52:06.118Z" in resumed
    assert "PublicationDate lt 2024-09-13T00:00:00.000Z" in resumed


def test_page_params_are_ordered_counted_and_within_cdse_limits() -> None:
    params = DayQuery(DAY, "S2A", "S2MSI1C", 30).page_params(Cursor(), 1000)
    assert params["$orderby"] == "PublicationDate asc"
    assert params["$top"] == "1000" and params["$skip"] == "0"
    assert params["$count"] == "True" and params["$expand"] == "Attributes"
    assert DayQuery(DAY, "S2A", "S2MSI1C", 30).count_params()["$top"] == "1"


def test_day_window_and_day_lists() -> None:
    assert day_window(DAY) == (
        dt.datetime(2024, 9, 12, tzinfo=dt.UTC),
        dt.datetime(2024, 9, 13, tzinfo=dt.UTC),
    )
    assert query_days(dt.date(2024, 3, 2), 3) == [dt.date(2024, 3, 1), dt.date(2024, 2, 29), dt.date(2024, 2, 28)]
    assert days_between(dt.date(2024, 2, 28), dt.date(2024, 3, 1)) == [
        dt.date(2024, 2, 28),
        dt.date(2024, 2, 29),
        dt.date(2024, 3, 1),
    ]
    assert days_between(DAY, DAY - dt.timedelta(days=1)) == []


def test_ties_at_the_cursor_are_read_again_and_counted_once() -> None:
    at = [T0, T0 + dt.timedelta(seconds=1), T0 + dt.timedelta(seconds=1)]
    cursor, new = advance(Cursor(), at)
    assert cursor == Cursor(at[-1], 2) and new == 3
    assert cursor.top(1000) == 1000
    # The next page starts with the two products at the cursor again, then one later one.
    later = at[-1] + dt.timedelta(seconds=1)
    cursor, new = advance(cursor, [at[-1], at[-1], later])
    assert cursor == Cursor(later, 1) and new == 1


def test_a_product_appearing_at_the_cursor_instant_is_counted() -> None:
    _, new = advance(Cursor(T0, 1), [T0, T0, T0 + dt.timedelta(seconds=1)])
    assert new == 2


def test_a_page_of_ties_only_is_followed_by_a_larger_one() -> None:
    cursor, new = advance(Cursor(), [T0] * 3)
    assert cursor == Cursor(T0, 3) and new == 3
    assert cursor.top(3) == 1000  # re-reading 3 ties in a page of 3 would never progress
    cursor, new = advance(cursor, [T0] * 5 + [T0 + dt.timedelta(seconds=1)])
    assert cursor == Cursor(T0 + dt.timedelta(seconds=1), 1) and new == 3
    assert cursor.top(3) == 3
    with pytest.raises(PagingError, match=r"1000 or more products published at 2024-09-12T10:00:00\.000Z"):
        Cursor(T0, 1000).top(1000)


def test_out_of_order_pages_are_refused() -> None:
    with pytest.raises(PagingError, match="out of PublicationDate order"):
        advance(Cursor(), [T0 + dt.timedelta(seconds=1), T0])
    with pytest.raises(PagingError, match="out of PublicationDate order"):
        advance(Cursor(T0, 1), [T0 - dt.timedelta(seconds=1)])


@given(
    instants=st.lists(st.integers(0, 40), min_size=0, max_size=120),
    page_size=st.integers(1, 12),
    seed=st.integers(0, 2**16),
)
def test_paging_any_day_reads_every_product_once(instants: list[int], page_size: int, seed: int) -> None:
    """Paging a day the way a strict server answers (ties in a new random order each time) sees every
    product and counts each exactly once."""
    rng = random.Random(seed)
    products = [(T0 + dt.timedelta(seconds=second), index) for index, second in enumerate(instants)]
    cursor, counted, seen = Cursor(), 0, set()
    for _ in range(len(products) + 2):
        top = cursor.top(page_size)
        window = sorted(
            (p for p in products if cursor.published is None or p[0] >= cursor.published),
            key=lambda p: (p[0], rng.random()),
        )
        page = window[:top]
        cursor, new = advance(cursor, [published for published, _ in page])
        counted += new
        seen.update(index for _, index in page)
        if len(page) < top or len(page) >= len(window):
            break
    assert counted == len(products)
    assert seen == set(range(len(products)))


T0 = dt.datetime(2024, 9, 12, 10, tzinfo=dt.UTC)


def _instants(count: int) -> list[dt.datetime]:
    return [T0 + dt.timedelta(seconds=i) for i in range(count)]


def test_a_full_page_moves_the_cursor_and_takes_the_days_count() -> None:
    progress, reread = after_page(
        DayProgress(dt.date(2024, 9, 12), "S2A"), _instants(10), returned=10, top=10, count=25, from_day_start=True
    )
    assert not reread and not progress.completed
    assert progress.fetched == 10 and progress.available == 25
    assert progress.cursor == Cursor(published=T0 + dt.timedelta(seconds=9), ties=1)


def test_the_last_page_completes_a_pass_that_reached_the_count() -> None:
    progress = DayProgress(dt.date(2024, 9, 12), "S2A", available=12, fetched=10, cursor=Cursor(T0, 1))
    later = [T0 + dt.timedelta(minutes=1), T0 + dt.timedelta(minutes=2)]
    progress, reread = after_page(progress, later, returned=2, top=10, count=12, from_day_start=False)
    assert progress.completed and not reread and progress.fetched == 12 and progress.available == 12


def test_pages_that_run_out_short_of_the_count_ask_for_a_reread_unless_from_the_days_start() -> None:
    short = DayProgress(dt.date(2024, 9, 12), "S2A", available=30, fetched=10, cursor=Cursor(T0, 1))
    later = [T0 + dt.timedelta(minutes=1)]
    progress, reread = after_page(short, later, returned=1, top=10, count=30, from_day_start=False)
    assert reread and not progress.completed  # items became visible behind the cursor
    progress, reread = after_page(short, later, returned=1, top=10, count=30, from_day_start=True)
    assert progress.completed and not reread  # a whole-day pass counts what it read

"""The polling source against a strict fake CDSE catalogue and real PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from db import UNASSIGNED_SINK
from link_fetcher.fetching import DayFetcher
from link_fetcher.http import HttpError
from tests.factories import ALLOWED_TILES, allowed_ids, day_fetcher
from tests.fakes.cdse_catalogue import FakeCatalogue, day_products, tiles
from tests.fakes.tcp_proxy import TcpProxy

DAY = dt.date(2024, 9, 12)
START = dt.datetime(2024, 9, 12, tzinfo=dt.UTC)


@pytest.fixture
def catalogue():
    with FakeCatalogue() as fake:
        yield fake


def make_fetcher(engine: Engine, catalogue: FakeCatalogue, page_size: int = 1000) -> DayFetcher:
    return day_fetcher(
        engine, catalogue.url, allowed_tiles=ALLOWED_TILES, sink_names=[UNASSIGNED_SINK], page_size=page_size
    )


def recorded(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.scalars(text("SELECT id FROM granule")))


def deliveries(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.scalars(text("SELECT granule_id FROM outbox")))


def granule_count(engine: Engine, platform: str = "S2A") -> dict:
    with engine.connect() as conn:
        return dict(
            conn.execute(
                text("SELECT * FROM granule_count WHERE date = :day AND platform = :platform"),
                {"day": DAY, "platform": platform},
            )
            .mappings()
            .one()
        )


def test_a_day_is_read_whole_within_its_half_open_window(engine: Engine, catalogue: FakeCatalogue) -> None:
    inside = day_products(
        DAY,
        "S2A",
        4,
        allowed_share=1,
        published=[
            START,
            START + dt.timedelta(hours=12),
            START + dt.timedelta(hours=23, minutes=59, seconds=59.7),
            START + dt.timedelta(days=1, microseconds=-1000),
        ],
    )
    outside = day_products(
        DAY,
        "S2A",
        2,
        allowed_share=1,
        published=[START - dt.timedelta(milliseconds=1), START + dt.timedelta(days=1)],
    )
    other_platform = day_products(DAY, "S2B", 3, allowed_share=1)
    catalogue.add(inside + outside + other_platform)
    report = make_fetcher(engine, catalogue).fetch(DAY, "S2A")
    assert report.completed and report.requests == 1
    assert sorted(recorded(engine)) == sorted(p["Id"] for p in inside)
    assert granule_count(engine)["available_links"] == granule_count(engine)["fetched_links"] == 4


def test_only_allowed_tiles_of_the_product_type_are_recorded(engine: Engine, catalogue: FakeCatalogue) -> None:
    products = day_products(DAY, "S2A", 50, allowed_share=0.6)
    level2 = day_products(DAY, "S2A", 5, allowed_share=1)
    for product in level2:  # same platform and day, another product type
        for attribute in product["Attributes"]:
            if attribute["Name"] == "productType":
                attribute["Value"] = "S2MSI2A"
    for product in products[::5]:  # no tileId attribute: the tile comes from the name
        product["Attributes"] = [a for a in product["Attributes"] if a["Name"] != "tileId"]
    catalogue.add(products + level2)
    report = make_fetcher(engine, catalogue, page_size=7).fetch(DAY, "S2A")
    assert sorted(recorded(engine)) == sorted(allowed_ids(products))
    assert report.new == 30 and set(report.skipped_because) == {"tile_not_allowed"}
    assert granule_count(engine)["fetched_links"] == granule_count(engine)["available_links"] == 50
    assert sorted(deliveries(engine)) == sorted(recorded(engine))


def test_products_sharing_a_publication_date_across_pages_are_all_recorded(
    engine: Engine, catalogue: FakeCatalogue
) -> None:
    # Groups of 1, 9, 4 and 25 products at one instant each, paged 8 at a time, ties in random order.
    instants = [
        START + dt.timedelta(hours=hour) for hour, size in ((1, 1), (2, 9), (3, 4), (4, 25)) for _ in range(size)
    ]
    products = day_products(DAY, "S2A", len(instants), allowed_share=1, published=instants)
    catalogue.add(products)
    report = make_fetcher(engine, catalogue, page_size=8).fetch(DAY, "S2A")
    assert report.completed
    assert granule_count(engine)["fetched_links"] == granule_count(engine)["available_links"] == 39
    assert report.new == 39 and sorted(recorded(engine)) == sorted(p["Id"] for p in products)


def test_a_finished_unchanged_day_costs_one_request(engine: Engine, catalogue: FakeCatalogue) -> None:
    catalogue.add(day_products(DAY, "S2A", 30))
    fetcher = make_fetcher(engine, catalogue, page_size=10)
    assert fetcher.fetch(DAY, "S2A").completed
    before = len(catalogue.requests)
    again = fetcher.fetch(DAY, "S2A")
    assert again.completed and again.unchanged and again.new == 0
    assert len(catalogue.requests) - before == 1
    assert len(deliveries(engine)) == 18


def test_late_products_anywhere_in_a_finished_day_are_found(engine: Engine, catalogue: FakeCatalogue) -> None:
    catalogue.add(day_products(DAY, "S2A", 40, allowed_share=1))
    fetcher = make_fetcher(engine, catalogue, page_size=10)
    assert fetcher.fetch(DAY, "S2A").completed

    # A product published after everything read: the re-check and one page after the cursor find it.
    newest = day_products(DAY, "S2A", 1, allowed_share=1, published=[START + dt.timedelta(hours=23, minutes=59)])
    catalogue.add(newest)
    report = fetcher.fetch(DAY, "S2A")
    assert report.completed and report.new == 1 and report.requests == 2

    # One visible late with an early PublicationDate: after the cursor there is nothing, so the day is reread.
    early = day_products(DAY, "S2A", 1, allowed_share=1, published=[START + dt.timedelta(minutes=5)])
    catalogue.add(early)
    report = fetcher.fetch(DAY, "S2A")
    assert report.completed and report.new == 1
    assert report.requests == 1 + 1 + 5  # re-check, the page after the cursor, the 42 products again
    assert {newest[0]["Id"], early[0]["Id"]} <= set(recorded(engine))
    assert len(recorded(engine)) == len(deliveries(engine)) == 42
    assert granule_count(engine)["fetched_links"] == 42
    assert fetcher.fetch(DAY, "S2A").unchanged


def test_a_withdrawn_product_does_not_trigger_rereading_forever(engine: Engine, catalogue: FakeCatalogue) -> None:
    products = day_products(DAY, "S2A", 20)
    catalogue.add(products)
    fetcher = make_fetcher(engine, catalogue, page_size=10)
    fetcher.fetch(DAY, "S2A")
    catalogue.remove([products[3]["Id"]])
    assert fetcher.fetch(DAY, "S2A").requests == 2  # re-check, then the page after the cursor
    assert fetcher.fetch(DAY, "S2A").unchanged


def test_stopping_early_keeps_the_pages_and_resumes_where_it_stopped(engine: Engine, catalogue: FakeCatalogue) -> None:
    products = day_products(DAY, "S2A", 95)
    catalogue.add(products)
    fetcher = make_fetcher(engine, catalogue, page_size=10)
    pages_allowed = iter([False, False, False, True])
    first = fetcher.fetch(DAY, "S2A", should_stop=lambda: next(pages_allowed))
    assert not first.completed and first.requests == 3 and first.read == 30
    progress = granule_count(engine)
    # Each page after the first starts with the last product of the one before (the cursor's instant).
    assert not progress["completed"] and progress["fetched_links"] == 28
    assert progress["cursor_published"] is not None
    second = fetcher.fetch(DAY, "S2A")
    assert second.completed and granule_count(engine)["fetched_links"] == 95
    # Resuming read nothing again but that one boundary product per page.
    assert first.read + second.read == 95 + first.requests + second.requests - 1
    assert sorted(recorded(engine)) == sorted(allowed_ids(products))
    assert len(deliveries(engine)) == len(recorded(engine))


def test_faults_are_retried(engine: Engine, catalogue: FakeCatalogue) -> None:
    products = day_products(DAY, "S2A", 25)
    catalogue.add(products)
    catalogue.inject("503", "drop", "429")
    report = make_fetcher(engine, catalogue, page_size=10).fetch(DAY, "S2A")
    assert report.completed and report.requests == 3
    assert len(catalogue.requests) == 6
    assert sorted(recorded(engine)) == sorted(allowed_ids(products))


def test_a_server_that_stays_down_is_one_clear_error(engine: Engine, catalogue: FakeCatalogue) -> None:
    catalogue.add(day_products(DAY, "S2A", 25))
    catalogue.inject("503", "503", "503", "503", "503")
    with pytest.raises(HttpError, match="CDSE search: HTTP 503"):
        make_fetcher(engine, catalogue, page_size=10).fetch(DAY, "S2A")
    assert len(catalogue.requests) == 5
    assert recorded(engine) == []


def test_a_malformed_product_is_skipped_and_its_neighbours_recorded(
    engine: Engine, catalogue: FakeCatalogue, caplog: pytest.LogCaptureFixture
) -> None:
    products = day_products(DAY, "S2A", 25, allowed_share=1.0)
    products[3]["Name"] = None
    products[12]["Checksum"] = [{}]  # a real shape, not malformed: no checksum
    catalogue.add(products)
    report = make_fetcher(engine, catalogue, page_size=10).fetch(DAY, "S2A")
    assert report.completed and report.fetched == 25 and report.skipped_because["malformed"] == 1
    assert sorted(recorded(engine)) == sorted(p["Id"] for i, p in enumerate(products) if i != 3)
    assert f"skipped malformed product {products[3]['Id']}: Name: Expected `str`, got `null`" in caplog.text


def test_an_answer_that_is_not_a_page_is_one_clear_error(engine: Engine, catalogue: FakeCatalogue) -> None:
    catalogue.add(day_products(DAY, "S2A", 5))
    catalogue.inject("not-a-page")
    with pytest.raises(
        HttpError, match=r"CDSE search: unexpected answer: Object missing required field `@odata.count`"
    ):
        make_fetcher(engine, catalogue, page_size=10).fetch(DAY, "S2A")
    assert len(catalogue.requests) == 1  # not retried: asking again gets the same answer
    assert recorded(engine) == []


def test_a_refused_query_is_not_retried(engine: Engine, catalogue: FakeCatalogue) -> None:
    catalogue.add(day_products(DAY, "S2A", 5))
    with pytest.raises(HttpError, match="HTTP 422"):
        make_fetcher(engine, catalogue, page_size=1001).fetch(DAY, "S2A")
    assert len(catalogue.requests) == 1


def test_a_database_outage_mid_fetch_leaves_whole_pages_and_the_next_run_completes(
    engine: Engine, catalogue: FakeCatalogue, database_url: str
) -> None:
    products = day_products(DAY, "S2A", 60)
    catalogue.add(products)
    url = make_url(database_url)
    with TcpProxy(url.host, url.port or 5432) as proxy:
        proxied = create_engine(url.set(host="127.0.0.1", port=proxy.port))
        pages = []

        def database_goes_down_after_two_pages(outcome) -> None:
            pages.append(outcome)
            if len(pages) == 2:
                proxy.stop()

        with pytest.raises(OperationalError):
            make_fetcher(proxied, catalogue, page_size=10).fetch(DAY, "S2A", on_page=database_goes_down_after_two_pages)
        proxied.dispose()
    # Two pages (10 products, then 9 and the boundary one again) were committed with their cursor; the
    # third was not recorded at all.
    progress = granule_count(engine)
    assert progress["fetched_links"] == 19 and not progress["completed"]
    by_published = sorted(products, key=lambda p: p["PublicationDate"])
    assert progress["cursor_published"] == dt.datetime.fromisoformat(by_published[18]["PublicationDate"])
    assert sorted(recorded(engine)) == sorted(allowed_ids(by_published[:19]))
    assert len(deliveries(engine)) == len(recorded(engine))

    report = make_fetcher(engine, catalogue, page_size=10).fetch(DAY, "S2A")
    assert report.completed and granule_count(engine)["fetched_links"] == 60
    assert sorted(recorded(engine)) == sorted(allowed_ids(products))
    assert sorted(deliveries(engine)) == sorted(recorded(engine))


@pytest.mark.unit
def test_fixture_tiles_are_what_they_claim() -> None:
    assert set(tiles(True, 5)) <= ALLOWED_TILES and not set(tiles(False, 5)) & ALLOWED_TILES

"""The date_generator and link_fetcher Lambdas, called as Step Functions calls them."""

from __future__ import annotations

import datetime as dt
import types

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine, text

from tests.factories import allowed_ids
from tests.fakes.cdse_catalogue import FakeCatalogue, day_products

DAY = dt.date(2024, 9, 12)


class Context(types.SimpleNamespace):
    """A Lambda context whose remaining time drops by `per_call_ms` each time it is asked."""

    def __init__(self, remaining_ms: int, per_call_ms: int = 0) -> None:
        super().__init__(
            function_name="fn", memory_limit_in_mb=512, invoked_function_arn="arn:aws:lambda:x", aws_request_id="r"
        )
        self.remaining_ms, self.per_call_ms = remaining_ms, per_call_ms

    def get_remaining_time_in_millis(self) -> int:
        self.remaining_ms -= self.per_call_ms
        return self.remaining_ms


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch, database_url: str, tmp_path) -> pytest.MonkeyPatch:
    monkeypatch.chdir(tmp_path)  # no developer .env
    monkeypatch.setenv("DATABASE_URL", database_url)
    for key in ("TO_DOWNLOAD_QUEUE_URL", "REDIS_URL", "PLATFORMS"):
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


@pytest.fixture
def date_generator(lambda_env, engine: Engine):
    from lambdas.date_generator import handler

    return handler


@pytest.fixture
def link_fetcher(lambda_env):
    from lambdas.link_fetcher import handler

    return handler


def test_date_generator_defaults_to_five_days_before_today_for_every_platform(date_generator) -> None:
    pairs = date_generator.handler({}, Context(900_000))["query_dates_platforms"]
    yesterday = dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)
    assert len(pairs) == 15
    assert pairs[:3] == [[yesterday.isoformat(), platform] for platform in ("S2A", "S2B", "S2C")]
    assert pairs[-1] == [(yesterday - dt.timedelta(days=4)).isoformat(), "S2C"]


def test_date_generator_takes_now_lookback_and_platforms(date_generator) -> None:
    event = {"now": "2024-03-01T00:30:00Z", "lookback_days": 2, "platforms": ["S2B"]}
    assert date_generator.handler(event, Context(900_000)) == {
        "query_dates_platforms": [["2024-02-29", "S2B"], ["2024-02-28", "S2B"]],
        "deletion_dates": ["2024-02-29", "2024-02-28"],
    }


def test_date_generator_offers_again_the_days_left_unfinished_in_its_window(date_generator, engine: Engine) -> None:
    """A (day, platform) or deletion day whose fetch failed after its retries (its progress row not completed) is
    offered by the next schedules while it is within UNFINISHED_DAYS_WINDOW days before the lookback."""
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO granule_count (date, platform, completed) VALUES "
                "('2024-02-20', 'S2B', false), ('2024-02-20', 'S2A', true), ('2024-02-19', 'S2C', false), "
                "('2024-02-28', 'S2B', false), ('2024-01-01', 'S2B', false)"
            )
        )
        conn.execute(
            text("INSERT INTO deletion_count (date, completed) VALUES ('2024-02-21', false), ('2024-02-22', true)")
        )
    event = {"now": "2024-03-01T03:00:00Z", "lookback_days": 2, "platforms": ["S2B", "S2C"]}
    assert date_generator.handler(event, Context(900_000)) == {
        # The lookback days, then the unfinished ones before them (2024-02-28 is a lookback day already; S2A is not
        # asked for; 2024-01-01 is out of the 30-day window), newest first.
        "query_dates_platforms": [
            ["2024-02-29", "S2B"], ["2024-02-29", "S2C"], ["2024-02-28", "S2B"], ["2024-02-28", "S2C"],
            ["2024-02-20", "S2B"], ["2024-02-19", "S2C"],
        ],
        "deletion_dates": ["2024-02-29", "2024-02-28", "2024-02-21"],
    }  # fmt: skip
    date_generator.get_settings.cache_clear()
    lambda_env = pytest.MonkeyPatch()
    lambda_env.setenv("UNFINISHED_DAYS_WINDOW", "0")
    try:
        assert len(date_generator.handler(event, Context(900_000))["query_dates_platforms"]) == 4
    finally:
        lambda_env.undo()
        date_generator.get_settings.cache_clear()


@pytest.mark.parametrize(
    ("event", "error"),
    [
        ({"platforms": ["S2Z"]}, ValueError),
        ({"lookback_days": 0}, ValidationError),
        ({"now": "yesterday"}, ValidationError),
        ({"days": 3}, ValidationError),
    ],
)
def test_date_generator_refuses_bad_input(date_generator, event, error) -> None:
    with pytest.raises(error):
        date_generator.handler(event, Context(900_000))


def test_link_fetcher_loop_stops_early_and_ends_with_every_granule(link_fetcher, lambda_env, engine: Engine) -> None:
    products = day_products(DAY, "S2B", 250)
    with FakeCatalogue() as catalogue:
        catalogue.add(products)
        lambda_env.setenv("CDSE_CATALOGUE_URL", catalogue.url)
        lambda_env.setenv("CDSE_PAGE_SIZE", "50")
        event = {"query_date": "2024-09-12", "platform": "S2B"}
        results = []
        while not results or not results[-1]["completed"]:
            # Two pages fit before less than 60 s of Lambda time would remain.
            results.append(link_fetcher.handler(dict(event), Context(60_000 + 2 * 10_000, per_call_ms=10_000)))
            assert len(results) < 10
        requests = len(catalogue.requests)
    assert results[0] == {"query_date": "2024-09-12", "platform": "S2B", "completed": False}
    assert results[-1] == {**event, "completed": True}
    assert len(results) == 3  # 250 products, 49 new ones a page after the first: 6 pages, 2 per call
    assert requests == 6
    with engine.connect() as conn:
        ids = set(conn.scalars(text("SELECT id FROM granule")))
        deliveries = conn.scalar(text("SELECT count(*) FROM outbox"))
    assert ids == allowed_ids(products) and deliveries == len(ids)


def test_link_fetcher_reads_a_deletion_day_in_calls_that_stop_early(link_fetcher, lambda_env, engine: Engine) -> None:
    """The state machine's deletion step: `{"deletion_date"}` until `completed`; each recorded granule deleted
    is announced once, the others remembered."""
    from db import record_granules
    from tests.factories import granule_record
    from tests.fakes.cdse_catalogue import deleted_entity

    products = day_products(DAY, "S2B", 120, allowed_share=1.0)
    start = dt.datetime.combine(DAY, dt.time(), dt.UTC)
    with engine.begin() as conn:
        published = start - dt.timedelta(days=1)  # before its deletion, or the deletion would not be believed
        records = [granule_record(0, id=p["Id"], filename=p["Name"], published=published) for p in products[:10]]
        record_granules(conn, records, ["unassigned"])
    with FakeCatalogue() as catalogue:
        catalogue.add_deleted([deleted_entity(p, start + dt.timedelta(minutes=i)) for i, p in enumerate(products)])
        lambda_env.setenv("CDSE_CATALOGUE_URL", catalogue.url)
        lambda_env.setenv("CDSE_PAGE_SIZE", "50")
        event = {"deletion_date": DAY.isoformat()}
        results = []
        while not results or not results[-1]["completed"]:
            results.append(link_fetcher.handler(dict(event), Context(60_000 + 2 * 10_000, per_call_ms=10_000)))
            assert len(results) < 10
    assert results[0] == {**event, "completed": False} and results[-1] == {**event, "completed": True}
    with engine.connect() as conn:
        deleted = conn.scalar(text("SELECT count(*) FROM granule WHERE deleted_at IS NOT NULL"))
        announced = conn.scalar(text("SELECT count(*) FROM outbox WHERE event = 'deleted'"))
    assert (deleted, announced) == (120, 10)


def test_link_fetcher_refuses_a_bad_event(link_fetcher) -> None:
    with pytest.raises(ValidationError):
        link_fetcher.handler({"query_date": "12/09/2024", "platform": "S2A"}, Context(900_000))
    with pytest.raises(ValueError, match="unknown platform"):
        link_fetcher.handler({"query_date": "2024-09-12", "platform": "S3A"}, Context(900_000))

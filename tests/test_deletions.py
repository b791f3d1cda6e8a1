"""Deletions (SPEC §9) from every source — push notifications, the OData DeletedProducts poll — in every order
relative to `created`, against real PostgreSQL, real Redis, moto SQS and the fake CDSE."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator

import boto3
import pytest
import redis
from moto import mock_aws
from sqlalchemy import Engine, text

from db import DeletionRecord, GranuleRecord, record_deletions, record_granules
from link_fetcher.cdse.deleted_products import DeletedProductsCatalogue
from link_fetcher.cdse.products import load_allowed_tiles
from link_fetcher.cli import main
from link_fetcher.fetching import DayFetcher
from link_fetcher.fetching.deletions import DeletionFetcher
from link_fetcher.http import make_session
from link_fetcher.push import PushEndpoint
from link_fetcher.recording import Recorder
from link_fetcher.relay import relay
from link_fetcher.settings import PACKAGED_TILES_FILE
from link_fetcher.sinks.redis_stream import RedisStreamSink, event_from_fields
from link_fetcher.sinks.sqs import SqsSink
from tests.factories import day_fetcher, granule_record
from tests.fakes.cdse_catalogue import FakeCatalogue, day_products, deleted_entity
from tests.push_support import DELETED_FIXTURE, PASSWORD, USERNAME, basic, deleted_notification, encode, notification
from tests.schema import assert_valid_message

AUTH = {"Authorization": basic()}
DAY = dt.date(2024, 9, 12)
ALLOWED = load_allowed_tiles(PACKAGED_TILES_FILE)


def rows(engine: Engine) -> dict[str, tuple]:
    with engine.connect() as conn:
        result = conn.execute(text("SELECT id, source, deleted_at, deletion_cause FROM granule"))
        return {row.id: (row.source, row.deleted_at, row.deletion_cause) for row in result}


def deliveries(engine: Engine) -> list[tuple[str, str, str]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text("SELECT granule_id, event, sink FROM outbox ORDER BY id"))]


@pytest.fixture
def endpoint(make_settings, engine: Engine) -> PushEndpoint:
    settings = make_settings(subscription_username=USERNAME, subscription_password=PASSWORD, platforms="S2A,S2B")
    made = PushEndpoint.from_settings(settings, lambda: engine)
    made.metrics.clear_metrics()
    return made


def deletion(
    granule: GranuleRecord | str, *, remember: bool = False, cause: str = "Duplicated product"
) -> DeletionRecord:
    """A deletion of `granule` (its name as recorded), or of the product of an Id never recorded."""
    granule_id = granule if isinstance(granule, str) else granule.id
    return DeletionRecord(
        id=granule_id,
        filename=granule.filename
        if isinstance(granule, GranuleRecord)
        else f"S2A_MSIL1C_20240912T112541_N0511_R137_T28PHQ_{granule_id[-6:]}.SAFE",
        deleted_at=dt.datetime(2024, 9, 14, tzinfo=dt.UTC),
        deletion_cause=cause,
        download_url=f"https://d/{granule_id}",
        remember=remember,
        tile_id="28PHQ",
        platform="S2A",
        product_type="S2MSI1C",
    )


# --- The database statement -----------------------------------------------------------------------------


def test_deletion_of_a_recorded_granule_is_announced_once_per_sink(engine) -> None:
    record = granule_record(0)
    with engine.begin() as conn:
        record_granules(conn, [record], ["sqs", "redis"])
        first = record_deletions(conn, [deletion(record), deletion(record)], ["sqs", "redis"])
    with engine.begin() as conn:
        again = record_deletions(conn, [deletion(record, cause="Corrupted product")], ["sqs", "redis"])
    assert (first.announced, first.remembered, again.announced, again.remembered) == ([record.id], [], [], [])
    assert rows(engine)[record.id][2] == "Duplicated product"  # set once: the second cause changed nothing
    assert sorted(deliveries(engine)) == sorted(
        [
            (record.id, "found", "sqs"),
            (record.id, "found", "redis"),
            (record.id, "deleted", "sqs"),
            (record.id, "deleted", "redis"),
        ]
    )


def test_deletion_of_a_product_never_recorded_is_remembered_and_its_created_not_delivered(engine) -> None:
    record = granule_record(1)
    with engine.begin() as conn:
        outcome = record_deletions(conn, [deletion(record, remember=True), deletion("other", remember=False)], ["sqs"])
        assert outcome.remembered == [record.id] and outcome.announced == []
        assert record_granules(conn, [record], ["sqs"]) == []
    assert rows(engine) == {record.id: ("deletion", dt.datetime(2024, 9, 14, tzinfo=dt.UTC), "Duplicated product")}
    assert deliveries(engine) == []


def test_concurrent_deletion_and_created_never_lose_the_deletion(engine) -> None:
    """Deleted and created of one product recorded at the same moment, many times: every time the product ends
    deleted, and its deletion is announced exactly when its `found` was."""
    records = [granule_record(100 + i) for i in range(40)]
    start = threading.Barrier(2)

    def create(record):
        start.wait()
        with engine.begin() as conn:
            record_granules(conn, [record], ["sqs"])

    def delete(record):
        start.wait()
        with engine.begin() as conn:
            record_deletions(conn, [deletion(record, remember=True)], ["sqs"])

    for record in records:
        threads = [threading.Thread(target=create, args=(record,)), threading.Thread(target=delete, args=(record,))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    recorded = rows(engine)
    assert all(recorded[record.id][1] is not None for record in records)
    events = deliveries(engine)
    for record in records:
        mine = sorted(event for granule_id, event, _ in events if granule_id == record.id)
        assert mine in ([], ["deleted", "found"])


# --- Messages -------------------------------------------------------------------------------------------


@pytest.fixture
def moto_queue(aws_env) -> Iterator[tuple[object, str]]:
    with mock_aws():
        client = boto3.client("sqs", region_name="us-east-1")
        yield client, client.create_queue(QueueName="to-download")["QueueUrl"]


def test_deletion_messages_on_sqs_and_redis(engine, moto_queue, make_settings, redis_url, unique_name) -> None:
    client, queue_url = moto_queue
    record = granule_record(2)
    with engine.begin() as conn:
        record_granules(conn, [record], ["sqs", "redis"])
        record_deletions(conn, [deletion(record)], ["sqs", "redis"])
    redis_sink = RedisStreamSink.from_settings(make_settings(redis_url=redis_url, redis_stream=unique_name))
    report = relay(engine, [SqsSink(queue_url, client=client), redis_sink])
    assert report.sent == {"sqs": 2, "redis": 2}
    bodies = [
        json.loads(m["Body"]) for m in client.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    ]
    found, deleted = sorted(bodies, key=lambda body: body["event"] != "found")
    assert found["event"] == "found" and found["id"] == record.id and "supersedes" not in found
    assert deleted == {
        "event": "deleted",
        "id": record.id,
        "filename": record.filename,
        "deleted_at": "2024-09-14T00:00:00Z",
        "deletion_cause": "Duplicated product",
    }
    for body in bodies:
        assert_valid_message(body)
    stream = redis.Redis.from_url(redis_url)
    try:
        events = [event_from_fields(fields) for _, fields in stream.xrange(unique_name)]
    finally:
        stream.delete(unique_name)
    assert [(e.get_type(), e.get_id()) for e in events] == [
        ("link-fetcher.granule.found", record.id),
        ("link-fetcher.granule.deleted", f"{record.id}:deleted"),
    ]
    assert events[1].get_data() == deleted and events[1].get_subject() == record.filename


# --- Push -----------------------------------------------------------------------------------------------


@pytest.mark.unit
def test_the_deleted_sample_parses() -> None:
    from link_fetcher.cdse.notifications import parse_notifications

    [parsed] = parse_notifications(encode(DELETED_FIXTURE)).notifications
    assert parsed.is_deletion and parsed.product is None
    assert parsed.deletion is not None and parsed.deletion.deletion_cause == "Corrupted product"
    assert parsed.deletion.product_id == DELETED_FIXTURE["ProductId"]


@pytest.mark.parametrize("order", ["created_then_deleted", "deleted_then_created", "both_in_one_array"])
def test_push_deletion_in_every_order(engine, endpoint, order) -> None:
    created = notification()
    deleted = deleted_notification(created["value"])
    bodies = {
        "created_then_deleted": [encode(created), encode(deleted), encode(deleted)],
        "deleted_then_created": [encode(deleted), encode(created), encode(deleted)],
        "both_in_one_array": [encode([created, deleted, deleted])],
    }[order]
    assert [endpoint.handle(AUTH, body).status for body in bodies] == [204] * len(bodies)
    product_id = created["value"]["Id"]
    source, deleted_at, cause = rows(engine)[product_id]
    assert deleted_at is not None and cause == "Corrupted product"
    expected = [] if order == "deleted_then_created" else [(product_id, "found"), (product_id, "deleted")]
    assert [(granule_id, event) for granule_id, event, _ in deliveries(engine)] == expected
    assert source == ("deletion" if order == "deleted_then_created" else "subscription")


def test_push_deletion_of_a_product_we_would_never_record_is_ignored(engine, endpoint) -> None:
    product = notification(tile="01AAA")["value"]  # not an allowed tile
    assert endpoint.handle(AUTH, encode(deleted_notification(product))).status == 204
    assert rows(engine) == {} and deliveries(engine) == []


def test_push_deletion_with_a_bad_value_is_400(engine, endpoint) -> None:
    body = deleted_notification(notification()["value"])
    del body["value"]["DeletionDate"]
    reply = endpoint.handle(AUTH, encode(body))
    assert reply.status == 400 and "DeletionDate" in json.loads(reply.content())["error"]
    body["value"]["DeletionDate"] = "2024-09-14T08:00:47"  # no zone
    assert endpoint.handle(AUTH, encode(body)).status == 400


def test_same_deletion_from_push_and_poll_at_once_is_announced_once(engine, endpoint, make_settings) -> None:
    created = notification()
    assert endpoint.handle(AUTH, encode(created)).status == 204
    deleted = deleted_notification(created["value"])  # an hour after its publication, a day ago
    day = dt.datetime.fromisoformat(deleted["value"]["DeletionDate"]).date()
    with FakeCatalogue() as catalogue:
        catalogue.add_deleted([deleted["value"]])
        fetcher = _deletion_fetcher(engine, catalogue)
        start = threading.Barrier(9)
        statuses: list[int] = []

        def push() -> None:
            start.wait()
            statuses.append(endpoint.handle(AUTH, encode(deleted)).status)

        def poll() -> None:
            start.wait()
            fetcher.fetch(day)

        threads = [threading.Thread(target=push) for _ in range(8)] + [threading.Thread(target=poll)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert statuses == [204] * 8
    assert [event for _, event, _ in deliveries(engine)] == ["found", "deleted"]


# --- Polling DeletedProducts ----------------------------------------------------------------------------


def _deletion_fetcher(engine: Engine, catalogue: FakeCatalogue, page_size: int = 1000) -> DeletionFetcher:
    from link_fetcher.cdse.deleted_products import remember_criteria

    return DeletionFetcher(
        Recorder(engine, sink_names=["sqs"]),
        DeletedProductsCatalogue(catalogue.url, session=make_session(backoff=0.01, attempts=5)),
        criteria=remember_criteria(ALLOWED, ["S2A", "S2B", "S2C"], "S2MSI1C"),
        download_url="https://download.example",
        page_size=page_size,
    )


def _product_fetcher(engine: Engine, catalogue: FakeCatalogue) -> DayFetcher:
    return day_fetcher(
        engine, catalogue.url, allowed_tiles=ALLOWED, sink_names=["sqs"], max_acquisition_age_days=100_000
    )


def test_polling_more_than_10000_deletions_in_a_day(engine) -> None:
    """12,500 deletions on one day (more than $skip can reach), 2,000 of them at a handful of shared instants,
    of which 300 were recorded earlier: all read, each recorded granule announced once; a rerun costs a request."""
    products = day_products(DAY, "S2A", 10_500, allowed_share=1.0)
    start = dt.datetime.combine(DAY, dt.time(), dt.UTC)
    instants = [start + dt.timedelta(seconds=7 * i) for i in range(10_500)]
    instants += [start + dt.timedelta(hours=h) for h in (3, 7, 11, 19) for _ in range(500)]
    extra = day_products(DAY, "S2B", 2_000, allowed_share=1.0)
    entities = [deleted_entity(p, when) for p, when in zip(products + extra, instants, strict=True)]
    recorded_ids = {p["Id"] for p in products[::35]}
    with engine.begin() as conn:
        published = start - dt.timedelta(days=1)  # before its deletion, or the deletion would not be believed
        records = [
            granule_record(0, id=p["Id"], filename=p["Name"], published=published)
            for p in products
            if p["Id"] in recorded_ids
        ]
        record_granules(conn, records, ["sqs"])
    with FakeCatalogue() as catalogue:
        catalogue.add_deleted(entities)
        fetcher = _deletion_fetcher(engine, catalogue, page_size=1000)
        report = fetcher.fetch(DAY)
        assert report.completed and report.available == 12_500
        assert report.announced == len(recorded_ids) == 300
        assert report.remembered == 12_500 - 300
        assert fetcher.fetch(DAY).unchanged
        requests = [path for _, path in catalogue.requests]
    # The fake answers 422 beyond $skip 10,000: every request kept to $skip 0.
    assert all(path.startswith("/odata/v1/DeletedProducts?") and "%24skip=1" not in path for path in requests)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM granule WHERE deleted_at IS NOT NULL")).scalar_one() == 12_500
        assert conn.execute(text("SELECT count(*) FROM outbox WHERE event = 'deleted'")).scalar_one() == 300
        row = conn.execute(text("SELECT available_deletions, fetched_deletions, completed FROM deletion_count")).one()
    assert tuple(row) == (12_500, 12_500, True)


def test_poll_deletion_in_every_order_relative_to_the_product_poll(engine) -> None:
    """Deleted first (remembered: the product poll then records nothing new), and created first (announced)."""
    early, late = day_products(DAY, "S2A", 2, allowed_share=1.0)
    when = dt.datetime.combine(DAY, dt.time(23), dt.UTC)
    with FakeCatalogue() as catalogue:
        catalogue.add([early])
        assert _product_fetcher(engine, catalogue).fetch(DAY, "S2A").new == 1
        catalogue.add_deleted([deleted_entity(early, when), deleted_entity(late, when)])
        assert _deletion_fetcher(engine, catalogue).fetch(DAY).announced == 1
        catalogue.add([late])  # visible in Products after its deletion was read
        product_report = _product_fetcher(engine, catalogue).fetch(DAY, "S2A")
    assert product_report.new == 0
    assert [(granule_id, event) for granule_id, event, _ in deliveries(engine)] == [
        (early["Id"], "found"),
        (early["Id"], "deleted"),
    ]


def test_poll_resumes_after_a_failure(engine) -> None:
    products = day_products(DAY, "S2A", 2_500, allowed_share=1.0)
    start = dt.datetime.combine(DAY, dt.time(), dt.UTC)
    with FakeCatalogue() as catalogue:
        catalogue.add_deleted([deleted_entity(p, start + dt.timedelta(seconds=i)) for i, p in enumerate(products)])
        fetcher = _deletion_fetcher(engine, catalogue)
        calls = iter([False, False, True])
        stopped = fetcher.fetch(DAY, should_stop=lambda: next(calls))
        assert not stopped.completed and stopped.read == 2000
        rest = fetcher.fetch(DAY)
    # Each page re-reads the one deletion at its cursor (counted once): 1,999 counted before, 501 after.
    assert rest.completed and (rest.read, rest.remembered) == (502, 501)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT fetched_deletions FROM deletion_count")).scalar_one() == 2_500


def test_cli_deletions(cli_env, engine, capsys) -> None:
    product = day_products(DAY, "S2A", 1, allowed_share=1.0)[0]
    with engine.begin() as conn:
        published = dt.datetime.fromisoformat(product["PublicationDate"])
        record = granule_record(0, id=product["Id"], filename=product["Name"], published=published)
        record_granules(conn, [record], ["unassigned"])
    with FakeCatalogue() as catalogue:
        catalogue.add_deleted([deleted_entity(product, dt.datetime.combine(DAY, dt.time(5), dt.UTC))])
        cli_env.setenv("CDSE_CATALOGUE_URL", catalogue.url)
        assert main(["deletions", "--day", "2024-09-12", "--to", "2024-09-13"]) == 0
        assert main(["deletions", "--day", "2024-09-13", "--to", "2024-09-12"]) == 2
        out = capsys.readouterr()
        cli_env.setenv("CDSE_CATALOGUE_URL", catalogue.url + "/wrong-prefix")
        assert main(["deletions", "--day", "2024-09-14"]) == 1
    err = capsys.readouterr().err
    assert "2024-09-12" in out.out and "announced" in out.out and "--to is before --day" in out.err
    assert err.count("\n") == 1 and "HTTP 404" in err and "run the same command again" in err
    assert [(event, sink) for _, event, sink in deliveries(engine)] == [
        ("found", "unassigned"),
        ("deleted", "unassigned"),
    ]

"""The push endpoint's handling core against real PostgreSQL and a fake SQS queue: recording once, delivery,
filters, concurrency with the poller, database and queue outages, credentials from Secrets Manager."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator

import boto3
import pytest
from moto import mock_aws
from sqlalchemy import Engine

from db import get_engine, record_granules
from link_fetcher.cdse.products import CdseProduct
from link_fetcher.credentials import clear_cache
from link_fetcher.push import PushEndpoint
from link_fetcher.settings import Settings
from tests.factories import granule_record
from tests.fakes.sqs_endpoint import SqsEndpoint
from tests.push_support import (
    PASSWORD,
    USERNAME,
    basic,
    encode,
    granule_rows,
    notification,
    outbox_rows,
    queued_ids,
    race_pushes_and_poller,
    recent_fixture,
)

AUTH = {"Authorization": basic()}


@pytest.fixture(scope="module")
def sqs_server() -> Iterator[SqsEndpoint]:
    with SqsEndpoint() as endpoint:
        yield endpoint


@pytest.fixture
def sqs(aws_env, sqs_server: SqsEndpoint, monkeypatch: pytest.MonkeyPatch) -> SqsEndpoint:
    monkeypatch.setenv("AWS_ENDPOINT_URL", sqs_server.url)
    return sqs_server


@pytest.fixture
def push_settings(make_settings, sqs: SqsEndpoint, unique_name: str) -> Settings:
    return make_settings(
        subscription_username=USERNAME,
        subscription_password=PASSWORD,
        to_download_queue_url=sqs.queue_url(unique_name),
        platforms="S2A,S2B",
    )


@pytest.fixture
def make_endpoint(engine: Engine) -> Callable[..., PushEndpoint]:
    def make(settings: Settings, database: Engine = engine) -> PushEndpoint:
        endpoint = PushEndpoint.from_settings(settings, lambda: database)
        endpoint.metrics.clear_metrics()  # powertools keeps metrics at class level
        return endpoint

    return make


def _counts(endpoint: PushEndpoint) -> dict[str, float]:
    return {name: sum(metric["Value"]) for name, metric in endpoint.metrics.metric_set.items()}


def test_records_and_delivers_once(engine, push_settings, make_endpoint, sqs, unique_name) -> None:
    endpoint = make_endpoint(push_settings)
    body = encode(recent_fixture())
    assert endpoint.handle(AUTH, body).status == 204
    assert endpoint.handle({"authorization": basic()}, body).status == 204  # CDSE's retry: a duplicate
    product_id = recent_fixture()["value"]["Id"]
    assert granule_rows(engine) == [(product_id, "subscription")]
    assert outbox_rows(engine) == [(product_id, "sqs", "sent")]
    assert queued_ids(sqs, unique_name) == [product_id]
    message = json.loads(sqs.fake.messages(unique_name)[0]["Body"])
    assert message["source"] == "subscription" and message["tile_id"] == "28PHQ"
    assert _counts(endpoint) == {"recorded": 1, "duplicate": 1, "delivered": 1}


def test_an_array_is_recorded_in_one_go_and_each_decision_counted(
    engine, push_settings, make_endpoint, sqs, unique_name
) -> None:
    endpoint = make_endpoint(push_settings)
    kept = [notification(), notification(platform="S2B")]
    skipped = [notification("modified"), notification(tile="01AAA"), notification(platform="S2C")]
    assert endpoint.handle(AUTH, encode(kept + skipped + kept[:1])).status == 204
    kept_ids = sorted(n["value"]["Id"] for n in kept)
    assert [row[0] for row in granule_rows(engine)] == kept_ids
    assert sorted(queued_ids(sqs, unique_name)) == kept_ids
    assert _counts(endpoint) == {
        "recorded": 2,
        "duplicate": 1,  # the same notification twice in one array
        "event_not_created": 1,
        "tile_not_allowed": 1,
        "platform_not_configured": 1,
        "delivered": 2,
    }


def test_refusals_record_nothing(engine, push_settings, make_endpoint) -> None:
    endpoint = make_endpoint(push_settings)
    body = encode(notification())
    unauthorized = endpoint.handle({"Authorization": basic(password="wrong")}, body)
    assert (unauthorized.status, unauthorized.headers["WWW-Authenticate"][:5]) == (401, "Basic")
    assert endpoint.handle({}, body).status == 401
    invalid = endpoint.handle(AUTH, b'{"SubscriptionEvent": "created"}')
    assert invalid.status == 400 and json.loads(invalid.content()) == {"error": "value: Field required"}
    assert endpoint.handle(AUTH, b" " * (1024 * 1024 + 1)).status == 413
    assert granule_rows(engine) == []
    assert _counts(endpoint) == {"unauthorized": 2, "invalid": 1, "too_large": 1}


def test_database_down_is_503_so_cdse_retries(push_settings, make_endpoint) -> None:
    endpoint = make_endpoint(push_settings, get_engine("postgresql://postgres@127.0.0.1:1/nowhere"))
    reply = endpoint.handle(AUTH, encode(notification()))
    assert reply.status == 503 and reply.headers["Retry-After"]
    assert "database unavailable" in json.loads(reply.content())["error"]
    # Refusals that need no database still answer as usual.
    assert endpoint.handle({}, b"{}").status == 401
    assert endpoint.handle(AUTH, encode(notification("modified"))).status == 204


def test_queue_down_still_204_and_delivery_stays_pending(engine, push_settings, make_endpoint, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")  # nothing listens there
    endpoint = make_endpoint(push_settings)
    body = notification()
    assert endpoint.handle(AUTH, encode(body)).status == 204
    assert outbox_rows(engine) == [(body["value"]["Id"], "sqs", "pending")]


def test_without_sink_deliveries_stay_pending_unassigned(engine, make_settings, make_endpoint) -> None:
    endpoint = make_endpoint(make_settings(subscription_username=USERNAME, subscription_password=PASSWORD))
    body = notification()
    assert endpoint.handle(AUTH, encode(body)).status == 204
    assert outbox_rows(engine) == [(body["value"]["Id"], "unassigned", "pending")]


def test_simultaneous_deliveries_and_the_poller_record_one_row_and_send_one_message(
    engine, push_settings, make_endpoint, sqs, unique_name
) -> None:
    endpoint = make_endpoint(push_settings)
    for _ in range(3):  # a few rounds, for different interleavings
        body = notification()
        product = CdseProduct.model_validate(body["value"])

        def push(start: threading.Barrier, body=body) -> int:
            start.wait()
            return endpoint.handle(AUTH, encode(body)).status

        assert race_pushes_and_poller(push, product, engine) == [204] * 16
        assert [row[0] for row in granule_rows(engine)].count(product.id) == 1
        assert [row[0] for row in outbox_rows(engine)].count(product.id) == 1
    # The poller's rows are delivered by the scheduled relay, not by the endpoint: count what is queued or pending.
    pending = [row[0] for row in outbox_rows(engine) if row[2] == "pending"]
    assert sorted(queued_ids(sqs, unique_name) + pending) == sorted(row[0] for row in granule_rows(engine))
    assert len(queued_ids(sqs, unique_name)) == len(set(queued_ids(sqs, unique_name)))


@pytest.fixture
def secrets_manager(aws_env) -> Iterator[object]:
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="us-east-1")


def test_credentials_from_secrets_manager_are_cached(engine, make_settings, make_endpoint, secrets_manager) -> None:
    arn = secrets_manager.create_secret(
        Name="push-endpoint", SecretString=json.dumps({"username": "from-secret", "password": "v1"})
    )["ARN"]
    endpoint = make_endpoint(make_settings(subscription_secret_arn=arn))
    body = encode(notification("modified"))
    assert endpoint.handle({"Authorization": basic("from-secret", "v1")}, body).status == 204
    secrets_manager.put_secret_value(
        SecretId=arn, SecretString=json.dumps({"username": "from-secret", "password": "v2"})
    )
    # Still the cached value: the secret is not read on every request.
    assert endpoint.handle({"Authorization": basic("from-secret", "v1")}, body).status == 204
    assert endpoint.handle({"Authorization": basic("from-secret", "v2")}, body).status == 401
    clear_cache()  # what the expiry of SECRET_MAX_AGE_SECONDS does
    assert endpoint.handle({"Authorization": basic("from-secret", "v2")}, body).status == 204


def test_unreadable_secret_is_503(make_settings, make_endpoint, secrets_manager) -> None:
    endpoint = make_endpoint(
        make_settings(subscription_secret_arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:missing")
    )
    reply = endpoint.handle({"Authorization": basic()}, encode(notification()))
    assert reply.status == 503 and "credentials unavailable" in json.loads(reply.content())["error"]


def test_a_request_delivers_only_what_it_recorded(engine, push_settings, make_endpoint, sqs, unique_name) -> None:
    with engine.begin() as conn:  # a backlog left by an outage: the scheduled relay's job, not this request's
        backlog = record_granules(conn, [granule_record(i) for i in range(25)], ["sqs"])
    endpoint = make_endpoint(push_settings)
    body = notification()
    assert endpoint.handle(AUTH, encode(body)).status == 204
    assert queued_ids(sqs, unique_name) == [body["value"]["Id"]]
    pending = sorted(row[0] for row in outbox_rows(engine) if row[2] == "pending")
    assert pending == sorted(backlog)

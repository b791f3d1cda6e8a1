"""The link_subscription Lambda: API Gateway REST proxy events in, proxy responses out, granules recorded."""

from __future__ import annotations

import base64
import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine

from lambdas.link_subscription import handler as lambda_module
from tests.fakes.sqs_endpoint import SqsEndpoint
from tests.push_support import PASSWORD, USERNAME, basic, encode, granule_rows, notification, queued_ids
from twin.events import api_gateway_event
from twin.template import RouteSpec


@dataclasses.dataclass
class Context:
    function_name: str = "link-subscription"
    memory_limit_in_mb: int = 256
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:link-subscription"
    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"


# The push route (cdk/link_fetcher_cdk/push.py); the handler reads none of it but the method.
EVENTS_ROUTE = RouteSpec("POST", "/events", "LinkSubscription", "AWS_PROXY", "v1", None, None)


def api_event(body: bytes, headers: dict[str, str] | None = None, *, method: str = "POST", base64_body=False) -> dict:
    """API Gateway's proxy event as the twin builds it; `base64_body`: the body base64-encoded, as API Gateway
    passes one of a binary media type."""
    event = api_gateway_event(dataclasses.replace(EVENTS_ROUTE, method=method), body, headers or {}, "192.0.2.1")
    if base64_body:
        event.update(body=base64.b64encode(body).decode(), isBase64Encoded=True)
    return event


@pytest.fixture
def sqs(aws_env) -> Iterator[SqsEndpoint]:
    with SqsEndpoint() as endpoint:
        yield endpoint


@pytest.fixture
def invoke(monkeypatch, database_url: str, sqs: SqsEndpoint, unique_name: str, tmp_path) -> Iterator[Any]:
    monkeypatch.chdir(tmp_path)  # no developer .env
    for key, value in {
        "DATABASE_URL": database_url,
        "SUBSCRIPTION_USERNAME": USERNAME,
        "SUBSCRIPTION_PASSWORD": PASSWORD,
        "TO_DOWNLOAD_QUEUE_URL": sqs.queue_url(unique_name),
        "AWS_ENDPOINT_URL": sqs.url,
    }.items():
        monkeypatch.setenv(key, value)
    lambda_module.metrics.clear_metrics()  # powertools keeps metrics at class level: other tests' are there
    return lambda event: lambda_module.handler(event, Context())


def test_records_delivers_and_counts(invoke, engine: Engine, sqs, unique_name, capsys) -> None:
    body = notification()
    response = invoke(api_event(encode(body), {"Authorization": basic(), "Content-Type": "application/json"}))
    assert response["statusCode"] == 204 and not response.get("body")
    assert granule_rows(engine) == [(body["value"]["Id"], "subscription")]
    assert queued_ids(sqs, unique_name) == [body["value"]["Id"]]
    # A base64-encoded retry of the same notification, header in lower case: a duplicate, no second message.
    retry = invoke(api_event(encode(body), {"authorization": basic()}, base64_body=True))
    assert retry["statusCode"] == 204
    assert queued_ids(sqs, unique_name) == [body["value"]["Id"]]
    emitted = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    # The delivery's freshness (publication to SQS) for the stack's alarm, by source, then the outcome counts.
    (fresh,) = [metric for metric in emitted if "FreshnessSeconds" in metric]
    assert fresh["source"] == "subscription" and fresh["FreshnessSeconds"]  # one value per sink that took it
    emitted = [metric for metric in emitted if metric is not fresh]
    assert [metric.get("recorded") for metric in emitted] == [[1.0], None]
    assert [metric.get("duplicate") for metric in emitted] == [None, [1.0]]


def test_wrong_credentials_401(invoke, engine: Engine) -> None:
    response = invoke(api_event(encode(notification()), {"Authorization": basic(password="nope")}))
    assert response["statusCode"] == 401
    headers = response.get("multiValueHeaders") or {k: [v] for k, v in response["headers"].items()}
    assert headers["WWW-Authenticate"][0].startswith("Basic")
    assert json.loads(response["body"]) == {"error": "unauthorized"}
    assert invoke(api_event(encode(notification()), {}))["statusCode"] == 401
    assert granule_rows(engine) == []


def test_bad_input_400_and_413(invoke, engine: Engine) -> None:
    bad = invoke(api_event(b'{"value": {}}', {"Authorization": basic()}))
    assert bad["statusCode"] == 400 and "SubscriptionEvent" in json.loads(bad["body"])["error"]
    big = invoke(api_event(b" " * (1024 * 1024 + 1), {"Authorization": basic()}, base64_body=True))
    assert big["statusCode"] == 413
    assert granule_rows(engine) == []


def test_out_of_range_timestamps_are_400_naming_the_field_not_502(invoke, engine: Engine) -> None:
    offset, year_one = notification(), notification()
    offset["value"]["PublicationDate"] = "2024-09-12T14:52:06.118+16:00"
    year_one["value"]["ContentDate"]["End"] = "0001-01-01T00:00:00+14:00"
    for body, error in (
        (offset, "value.PublicationDate: Value error, UTC offset +16:00 is beyond ±14:00"),
        (year_one, "value.ContentDate.End: Value error, year 1 is outside 1900..2200"),
    ):
        response = invoke(api_event(encode(body), {"Authorization": basic()}))
        assert response["statusCode"] == 400, response
        assert json.loads(response["body"])["error"] == error
    assert granule_rows(engine) == []


def test_other_routes_are_not_found(invoke) -> None:
    response = invoke(api_event(b"", {"Authorization": basic()}, method="GET"))
    assert response["statusCode"] == 404 and "POST /events" in json.loads(response["body"])["error"]

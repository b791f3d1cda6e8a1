"""The delivery acceptance checks, run as a user would: `fetch` against the fake CDSE with a sink down, then
`pending` and `relay`; and a FIFO queue plus a Redis stream fed by one `fetch`."""

from __future__ import annotations

import datetime as dt
import json

import pytest
import redis

from link_fetcher.cli import main
from link_fetcher.sinks.redis_stream import event_from_fields
from tests.factories import allowed_ids
from tests.fakes.cdse_catalogue import FakeCatalogue, day_products
from tests.fakes.sqs_endpoint import SqsEndpoint
from tests.schema import assert_valid_message

DAY = dt.date(2024, 9, 12)


@pytest.fixture
def products(cli_env, engine) -> list[dict]:
    day = day_products(DAY, "S2A", 120)
    with FakeCatalogue() as catalogue:
        catalogue.add(day)
        cli_env.setenv("CDSE_CATALOGUE_URL", catalogue.url)
        yield day


def test_fetch_with_sqs_down_records_all_then_relay_delivers_each_once(cli_env, products, capsys) -> None:
    expected = sorted(allowed_ids(products))
    with SqsEndpoint() as endpoint:
        queue_url = endpoint.queue_url("to-download")
    # The endpoint is stopped now: nothing listens on its port.
    cli_env.setenv("AWS_ENDPOINT_URL", endpoint.url)
    cli_env.setenv("TO_DOWNLOAD_QUEUE_URL", queue_url)
    assert main(["fetch", "--day", DAY.isoformat(), "--platform", "S2A"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{len(expected)} deliveries pending" in err and "sqs unavailable" in err
    assert "Traceback" not in err

    assert main(["pending"]) == 0
    pending = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(line["id"] for line in pending) == expected
    assert {line["sink"] for line in pending} == {"sqs"}
    assert {"id", "sink", "status", "attempts", "last_error"} <= set(pending[0])

    with SqsEndpoint() as back:
        cli_env.setenv("AWS_ENDPOINT_URL", back.url)
        cli_env.setenv("TO_DOWNLOAD_QUEUE_URL", back.queue_url("to-download"))
        assert main(["relay"]) == 0
        assert f"delivered: sqs {len(expected)}" in capsys.readouterr().err
        bodies = [json.loads(message["Body"]) for message in back.fake.messages("to-download")]
        assert sorted(body["id"] for body in bodies) == expected  # each exactly once
        assert main(["relay"]) == 0
        assert "delivered: sqs 0" in capsys.readouterr().err
        assert len(back.fake.messages("to-download")) == len(expected)
    for body in bodies:
        assert_valid_message(body)
    assert main(["pending"]) == 0
    assert capsys.readouterr().out == ""


def test_fetch_to_a_fifo_queue_and_a_redis_stream(cli_env, products, redis_url, unique_name, capsys) -> None:
    expected = sorted(allowed_ids(products))
    client = redis.Redis.from_url(redis_url)
    try:
        with SqsEndpoint() as endpoint:
            cli_env.setenv("AWS_ENDPOINT_URL", endpoint.url)
            cli_env.setenv("TO_DOWNLOAD_QUEUE_URL", endpoint.queue_url("to-download.fifo"))
            cli_env.setenv("REDIS_URL", redis_url)
            cli_env.setenv("REDIS_STREAM", unique_name)
            assert main(["fetch", "--day", DAY.isoformat(), "--platform", "S2A"]) == 0
            assert f"sqs {len(expected)}, redis {len(expected)}" in capsys.readouterr().err
            messages = endpoint.fake.messages("to-download.fifo")
        assert sorted(message["Attributes"]["MessageDeduplicationId"] for message in messages) == expected
        for message in messages:
            body = json.loads(message["Body"])
            assert_valid_message(body)
            assert message["Attributes"]["MessageGroupId"] == body["tile_id"]
        events = [event_from_fields(fields) for _, fields in client.xrange(unique_name)]
        assert sorted(event.get_id() for event in events) == expected
        for event in events:
            assert_valid_message(event.get_data())
            assert event.get_extension("producer") == "link-fetcher"
            assert event.get_extension("href") == event.get_data()["download_url"]
    finally:
        client.delete(unique_name)
        client.close()

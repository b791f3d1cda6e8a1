"""What every sink must do the same, run against each: SQS (the fake endpoint) and Redis Streams (the real server)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator

import boto3
import pytest
import redis

import link_fetcher.relay as relay_module
from link_fetcher.relay import relay
from link_fetcher.sinks import Sink
from link_fetcher.sinks.redis_stream import RedisStreamSink
from link_fetcher.sinks.sqs import SqsSink
from tests.factories import record
from tests.fakes.sqs_endpoint import SqsEndpoint

# A sink, and how to read back the granule ids it was given (in arrival order).
SinkUnderTest = tuple[Sink, Callable[[], list[str]]]


@pytest.fixture(params=["sqs", "redis"])
def sink_under_test(request, aws_env, make_settings, redis_url: str, unique_name: str) -> Iterator[SinkUnderTest]:
    if request.param == "sqs":
        with SqsEndpoint() as endpoint:
            client = boto3.client("sqs", endpoint_url=endpoint.url, region_name="us-east-1")
            yield (
                SqsSink(endpoint.queue_url("q"), client=client),
                lambda: [json.loads(message["Body"])["id"] for message in endpoint.fake.messages("q")],
            )
        return
    client = redis.Redis.from_url(redis_url)
    try:
        yield (
            RedisStreamSink.from_settings(make_settings(redis_url=redis_url, redis_stream=unique_name)),
            lambda: [fields[b"id"].decode() for _, fields in client.xrange(unique_name)],
        )
    finally:
        client.delete(unique_name)
        client.close()


def test_two_relays_at_once_never_double_send(engine, sink_under_test: SinkUnderTest) -> None:
    sink, received = sink_under_test
    ids = record(engine, 300, [sink.name])
    reports = []
    threads = [threading.Thread(target=lambda: reports.append(relay(engine, [sink], workers=2))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(received()) == sorted(ids)
    assert sum(report.sent[sink.name] for report in reports) == 300


def test_a_second_relay_has_nothing_left_to_send(engine, sink_under_test: SinkUnderTest) -> None:
    sink, received = sink_under_test
    ids = record(engine, 25, [sink.name])
    assert relay(engine, [sink]).sent == {sink.name: 25}
    assert relay(engine, [sink]).sent == {sink.name: 0}
    assert sorted(received()) == sorted(ids)


def test_each_worker_leases_one_batch_first_then_twice_as_many_up_to_the_cap(
    engine, sink_under_test: SinkUnderTest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small backlog goes to every worker at once (first leases of one batch); a large one is leased in few
    statements (doubling up to LEASE_BATCHES batches)."""
    sink, received = sink_under_test
    ids = record(engine, 390, [sink.name])
    asked: list[int] = []  # each lease's limit
    original = relay_module.lease_pending

    def counting_lease(*args, **kwargs):
        asked.append(args[3])
        return original(*args, **kwargs)

    monkeypatch.setattr(relay_module, "lease_pending", counting_lease)
    assert relay(engine, [sink]).sent == {sink.name: 390}
    assert asked == [10, 20, 40, 80, 100, 100, 100]  # the last one comes back short (40): caught up
    assert sorted(received()) == sorted(ids)

"""What every sink must do the same, run against each: SQS (the fake endpoint) and Redis Streams (the real server)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator

import boto3
import pytest
import redis
from sqlalchemy import text

from db.outbox import LeaseSession
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
    original = LeaseSession.send_lease

    def counting_lease(*args, **kwargs):
        asked.append(args[3])
        return original(*args, **kwargs)

    monkeypatch.setattr(LeaseSession, "send_lease", counting_lease)
    assert relay(engine, [sink]).sent == {sink.name: 390}
    assert asked == [10, 20, 40, 80, 100, 100, 100]  # the last one comes back short (40): caught up
    assert sorted(received()) == sorted(ids)


def test_a_batch_leaves_once_the_previous_is_marked_and_the_next_lease_goes_with_a_lease_last(
    engine, aws_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The mark of a batch runs while the next batch is built; it has committed when that batch leaves the process
    (botocore's before-send), so a crash still repeats one batch at most. The next lease is sent as a lease's last
    batch leaves."""
    record(engine, 150, ["sqs"])
    marked_at_departure: list[int] = []  # deliveries marked sent as each batch leaves
    leases_sent_after: list[int] = []  # batches that had left when each lease was sent
    original = LeaseSession.send_lease

    def noting_lease(*args, **kwargs):
        leases_sent_after.append(len(marked_at_departure))
        return original(*args, **kwargs)

    monkeypatch.setattr(LeaseSession, "send_lease", noting_lease)
    with SqsEndpoint() as endpoint:
        client = boto3.client("sqs", endpoint_url=endpoint.url, region_name="us-east-1")
        sink = SqsSink(endpoint.queue_url("q"), client=client)

        def hold_rows_of_batch_two(locked: threading.Event) -> None:
            # The relay's mark of batch 2 waits for these row locks: 0.3 s, far longer than building batch 3.
            with engine.begin() as conn:
                conn.execute(text("SELECT id FROM outbox WHERE id BETWEEN 11 AND 20 FOR UPDATE")).all()
                locked.set()
                time.sleep(0.3)

        def departing(**_) -> None:  # runs after the sink's own before-send handler
            with engine.connect() as conn:
                sent = conn.execute(text("SELECT count(*) FROM outbox WHERE status = 'sent'")).scalar_one()
            marked_at_departure.append(sent)
            if len(marked_at_departure) == 2:
                locked = threading.Event()
                threading.Thread(target=hold_rows_of_batch_two, args=(locked,)).start()
                assert locked.wait(5)

        client.meta.events.register("before-send.sqs.SendMessageBatch", departing)
        assert relay(engine, [sink]).sent == {"sqs": 150}
    assert marked_at_departure == list(range(0, 150, 10))
    # Leases of 10, 20, 40 and 80; the fifth comes back empty. Each after the first went out with its
    # predecessor's last batch: the 1st, 3rd, 7th and 15th.
    assert leases_sent_after == [0, 0, 2, 6, 14]

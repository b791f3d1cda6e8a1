"""Delivery across sinks and failures: several sinks, SQS down mid-run, refusals, the crash window, consumers,
the CLI (`relay`, `pending`, `status`) and the scheduled relay Lambda."""

from __future__ import annotations

import datetime as dt
import json
import threading
import types
from collections.abc import Iterator, Sequence

import boto3
import pytest
import redis
from botocore.config import Config
from moto import mock_aws
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from db import record_granules
from db.outbox import LEASE_LOCK_CLASS
from examples import consume_redis, consume_sqs
from link_fetcher.cli import main
from link_fetcher.observability import NAMESPACE, Metric, Service
from link_fetcher.relay import RESENDS, relay
from link_fetcher.sinks import BeforeSend, Message, Sink
from link_fetcher.sinks.redis_stream import RedisStreamSink
from link_fetcher.sinks.sqs import SqsSink
from tests.factories import granule_record, record
from tests.fakes.sqs_endpoint import SqsEndpoint
from tests.schema import assert_valid_message

DEAD_URL = "http://127.0.0.1:1"
NO_RETRIES = Config(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=2, read_timeout=5)


def _sqs_sink(endpoint_url: str, queue_url: str) -> SqsSink:
    client = boto3.client("sqs", endpoint_url=endpoint_url, region_name="us-east-1", config=NO_RETRIES)
    return SqsSink(queue_url, client=client)


def _bodies(endpoint: SqsEndpoint, queue: str = "q") -> list[dict]:
    bodies = [json.loads(message["Body"]) for message in endpoint.fake.messages(queue)]
    for body in bodies:
        assert_valid_message(body)
    return bodies


def _outbox(engine: Engine) -> dict[tuple[str, str], int]:
    with engine.connect() as conn:
        return {
            (s, st): n for s, st, n in conn.execute(text("SELECT sink, status, count(*) FROM outbox GROUP BY 1, 2"))
        }


@pytest.fixture
def stream(redis_url: str, unique_name: str) -> Iterator[tuple[redis.Redis, str]]:
    client = redis.Redis.from_url(redis_url)
    yield client, unique_name
    client.delete(unique_name)
    client.close()


def _redis_sink(make_settings, url: str, name: str) -> RedisStreamSink:
    return RedisStreamSink.from_settings(make_settings(redis_url=url, redis_stream=name))


class _Wrapped:
    """Delegates to a sink; `before(n)` runs before the n-th batch, `after(n)` after the sink accepted it."""

    def __init__(self, sink: Sink, before=lambda n: None, after=lambda n: None) -> None:
        self.name = sink.name
        self._sink, self._before, self._after, self.calls = sink, before, after, 0
        self._lock = threading.Lock()  # relay workers send concurrently

    def send(self, messages: Sequence[Message], before_send: BeforeSend | None = None) -> dict[str, str]:
        with self._lock:
            self.calls += 1
            batch = self.calls
        self._before(batch)
        refused = self._sink.send(messages, before_send)
        self._after(batch)
        return refused


class SimulatedCrash(Exception):
    pass


def _crash_on(batch: int):
    def after(n: int) -> None:
        if n == batch:
            raise SimulatedCrash("the relay died after the sink accepted the batch, before COMMIT")

    return after


def test_dead_redis_neither_blocks_sqs_nor_makes_it_send_twice(engine, aws_env, make_settings, redis_url, stream):
    client, name = stream
    ids = record(engine, 25, ["sqs", "redis"])
    with SqsEndpoint() as endpoint:
        sqs = _sqs_sink(endpoint.url, endpoint.queue_url("q"))
        report = relay(engine, [_redis_sink(make_settings, "redis://127.0.0.1:1/0", name), sqs])
        assert report.sent == {"redis": 0, "sqs": 25} and "redis" in report.unavailable and report.pending == 25
        assert _outbox(engine) == {("sqs", "sent"): 25, ("redis", "pending"): 25}
        report = relay(engine, [_redis_sink(make_settings, redis_url, name), sqs])
        assert report.sent == {"redis": 25, "sqs": 0} and report.pending == 0
        assert sorted(body["id"] for body in _bodies(endpoint)) == sorted(ids)
    assert sorted(fields[b"id"].decode() for _, fields in client.xrange(name)) == sorted(ids)


def test_sqs_down_mid_run_then_relay_delivers_the_rest_once(engine, aws_env) -> None:
    ids = record(engine, 50, ["sqs"])
    with SqsEndpoint() as first:
        sink = _Wrapped(_sqs_sink(first.url, first.queue_url("q")), before=lambda n: n == 3 and first.stop())
        report = relay(engine, [sink])
        assert report.sent == {"sqs": 20} and "sqs" in report.unavailable and report.pending == 30
        delivered_first = [body["id"] for body in _bodies(first)]
    with SqsEndpoint() as second:
        report = relay(engine, [_sqs_sink(second.url, second.queue_url("q"))], workers=3)
        assert report.sent == {"sqs": 30} and report.pending == 0
        assert sorted(delivered_first + [body["id"] for body in _bodies(second)]) == sorted(ids)
        # A second relay sends nothing.
        assert relay(engine, [_sqs_sink(second.url, second.queue_url("q"))]).sent == {"sqs": 0}
        assert len(second.fake.messages("q")) == 30


def test_a_relay_ends_once_caught_up_and_leaves_later_recordings_to_the_next(engine, aws_env) -> None:
    """A short batch means the backlog is drained: the relay returns instead of spinning on whatever trickles
    in meanwhile (one granule per batch under a busy push endpoint); the next relay sends it."""
    record(engine, 15, ["sqs"])

    def record_one_more(batch: int) -> None:
        if batch == 2:  # the short batch (5 of 15): a granule recorded while it is being sent
            with engine.begin() as conn:
                record_granules(conn, [granule_record(99)], ["sqs"])

    with SqsEndpoint() as endpoint:
        sink = _Wrapped(_sqs_sink(endpoint.url, endpoint.queue_url("q")), before=record_one_more)
        report = relay(engine, [sink])
        assert report.sent == {"sqs": 15} and report.pending == 1 and sink.calls == 2
        assert relay(engine, [sink]).sent == {"sqs": 1}
        assert len(_bodies(endpoint)) == 16


def test_partial_batch_failure_resends_only_the_refused_entries(engine, aws_env) -> None:
    ids = record(engine, 10, ["sqs"])
    seen: list[str] = []

    def refuse_first_try_of_one(entry: dict) -> bool:
        granule_id = json.loads(entry["MessageBody"])["id"]
        seen.append(granule_id)
        return granule_id == ids[4] and seen.count(granule_id) == 1

    with SqsEndpoint() as endpoint:
        endpoint.fake.refuse = refuse_first_try_of_one
        report = relay(engine, [_sqs_sink(endpoint.url, endpoint.queue_url("q"))])
        assert report.sent == {"sqs": 10} and report.refused == {"sqs": 0} and report.pending == 0
        assert sorted(seen) == sorted([*ids, ids[4]])  # the nine accepted ones were not sent again
        assert sorted(body["id"] for body in _bodies(endpoint)) == sorted(ids)


def test_a_refused_entry_does_not_hold_up_the_rest(engine, aws_env) -> None:
    ids = record(engine, 35, ["sqs"])
    poison = ids[2]
    tries: list[str] = []

    def refuse_poison(entry: dict) -> bool:
        granule_id = json.loads(entry["MessageBody"])["id"]
        tries.append(granule_id)
        return granule_id == poison

    with SqsEndpoint() as endpoint:
        endpoint.fake.refuse = refuse_poison
        report = relay(engine, [_sqs_sink(endpoint.url, endpoint.queue_url("q"))], max_attempts=3, workers=2)
        assert report.sent == {"sqs": 34} and report.refused == {"sqs": 1} and report.pending == 1
        assert tries.count(poison) == RESENDS + 1  # resent within the batch, then left for the next relay
        with engine.connect() as conn:
            attempts, error = conn.execute(
                text("SELECT attempts, last_error FROM outbox WHERE granule_id = :id"), {"id": poison}
            ).one()
        assert attempts == 1 and "refused by the fake" in error


def test_crash_window_repeats_one_batch_and_consumers_keyed_on_id_absorb_it(engine, aws_env) -> None:
    ids = record(engine, 30, ["sqs"])
    with SqsEndpoint() as endpoint:
        sink = _sqs_sink(endpoint.url, endpoint.queue_url("q"))
        with pytest.raises(SimulatedCrash):
            relay(engine, [_Wrapped(sink, after=_crash_on(2))])
        assert _outbox(engine) == {("sqs", "sent"): 10, ("sqs", "pending"): 20}
        relay(engine, [sink])
        sent = [body["id"] for body in _bodies(endpoint)]
        assert len(sent) == 40 and set(sent) == set(ids)
        repeated = {granule_id for granule_id in sent if sent.count(granule_id) > 1}
        assert len(repeated) == 10  # exactly the batch in flight
        client = boto3.client("sqs", endpoint_url=endpoint.url, region_name="us-east-1")
        handled: list[str] = []
        handle = consume_sqs.once_per_id(lambda body: handled.append(body["id"]))
        while consume_sqs.consume_once(client, endpoint.queue_url("q"), handle, wait_seconds=0):
            pass
    assert sorted(handled) == sorted(ids)


def test_crash_window_on_a_fifo_queue_is_absorbed_by_deduplication(engine, aws_env) -> None:
    ids = record(engine, 30, ["sqs"])
    with mock_aws():
        client = boto3.client("sqs", region_name="us-east-1")
        queue_url = client.create_queue(QueueName="to-download.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        sink = SqsSink(queue_url, client=client)
        with pytest.raises(SimulatedCrash):
            relay(engine, [_Wrapped(sink, after=_crash_on(2))])
        relay(engine, [sink])
        messages = []
        while batch := client.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=0
        ).get("Messages"):
            messages += batch
            client.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
            )
    assert sorted(m["Attributes"]["MessageDeduplicationId"] for m in messages) == sorted(ids)
    for message in messages:
        body = json.loads(message["Body"])
        assert_valid_message(body)
        assert message["Attributes"]["MessageGroupId"] == body["tile_id"]


def test_redis_consumer_group_reclaims_what_a_crashed_consumer_left(engine, make_settings, redis_url, stream):
    client, name = stream
    ids = record(engine, 12, ["redis"])
    relay(engine, [_redis_sink(make_settings, redis_url, name)])
    consume_redis.ensure_group(client, name, "workers")
    consume_redis.ensure_group(client, name, "workers")  # idempotent

    def crash(event) -> None:
        raise SimulatedCrash("consumer died before XACK")

    with pytest.raises(SimulatedCrash):
        consume_redis.consume_once(client, name, "workers", "a", crash, count=5)
    assert client.xpending(name, "workers")["pending"] == 5
    handled = []

    def handle(event) -> None:
        assert_valid_message(event.get_data())
        handled.append(event.get_id())

    while consume_redis.consume_once(client, name, "workers", "b", consume_redis.once_per_id(handle), min_idle_ms=0):
        pass
    assert sorted(handled) == sorted(ids)
    assert client.xpending(name, "workers")["pending"] == 0


def test_sqs_consumer_leaves_a_failed_message_for_later(engine, aws_env) -> None:
    ids = record(engine, 12, ["sqs"])
    with mock_aws():
        client = boto3.client("sqs", region_name="us-east-1")
        queue_url = client.create_queue(QueueName="to-download", Attributes={"VisibilityTimeout": "0"})["QueueUrl"]
        relay(engine, [SqsSink(queue_url, client=client)])
        handled: list[str] = []
        failures = {ids[0]: 1}

        def handle(body: dict) -> None:
            assert_valid_message(body)
            if failures.get(body["id"]):
                failures[body["id"]] -= 1
                raise RuntimeError("downstream hiccup")
            handled.append(body["id"])

        while consume_sqs.consume_once(client, queue_url, handle, wait_seconds=0):
            pass
    assert sorted(handled) == sorted(ids)


@pytest.fixture
def cli_env(cli_env: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    cli_env.setenv("RELAY_MAX_ATTEMPTS", "2")
    return cli_env


def test_cli_sqs_down_pending_relay_retry_failed(cli_env, engine, monkeypatch, capsys) -> None:
    ids = record(engine, 15, ["sqs"])
    monkeypatch.setenv("AWS_ENDPOINT_URL", DEAD_URL)
    monkeypatch.setenv("TO_DOWNLOAD_QUEUE_URL", f"{DEAD_URL}/000000000000/q")
    assert main(["relay"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "15 deliveries pending" in err and "sqs unavailable" in err
    assert "Traceback" not in err

    assert main(["pending"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sorted(line["id"] for line in lines) == sorted(ids)
    assert all(line["sink"] == "sqs" and line["attempts"] == 0 for line in lines)
    assert any("SQS" in (line["last_error"] or "") for line in lines)

    with SqsEndpoint() as endpoint:
        endpoint.fake.refuse = lambda entry: json.loads(entry["MessageBody"])["id"] == ids[0]
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint.url)
        monkeypatch.setenv("TO_DOWNLOAD_QUEUE_URL", endpoint.queue_url("q"))
        for _ in range(2):  # RELAY_MAX_ATTEMPTS=2 refusals: the delivery is marked failed
            assert main(["relay"]) == 1
        err = capsys.readouterr().err
        assert "0 deliveries pending, 1 failed" in err and "--retry-failed" in err
        assert main(["status"]) == 0
        assert "failed" in capsys.readouterr().out
        assert main(["pending"]) == 0
        assert capsys.readouterr().out == ""
        assert main(["pending", "--include-failed"]) == 0
        (failed,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert failed["id"] == ids[0] and failed["status"] == "failed" and failed["attempts"] == 2
        endpoint.fake.refuse = lambda entry: False
        assert main(["relay", "--retry-failed"]) == 0
        assert "delivered: sqs 1" in capsys.readouterr().err
        assert main(["relay"]) == 0
        assert sorted(body["id"] for body in _bodies(endpoint)) == sorted(ids)


@pytest.fixture
def relay_lambda(monkeypatch):
    from lambdas.relay import handler

    handler.metrics.clear_metrics()  # powertools keeps metrics at class level: other tests' may be there
    return handler


def test_relay_lambda_returns_the_report(cli_env, engine, monkeypatch, relay_lambda, capsys) -> None:
    published = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30)
    with engine.begin() as conn:
        ids = record_granules(conn, [granule_record(i, published=published) for i in range(12)], ["sqs"])
    context = types.SimpleNamespace(
        function_name="relay", memory_limit_in_mb=256, invoked_function_arn="arn:aws:lambda:x", aws_request_id="r1"
    )
    with SqsEndpoint() as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint.url)
        monkeypatch.setenv("TO_DOWNLOAD_QUEUE_URL", endpoint.queue_url("q"))
        result = relay_lambda.handler({}, context)
        # Each first delivery's freshness, published per source for the stack's alarm.
        freshness = result.pop("freshness")
        assert freshness.keys() == {"search"} and freshness["search"]["count"] == 12
        assert 1800 <= freshness["search"]["max_seconds"] < 1800 + 60
        documents = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
        (fresh,) = [document for document in documents if Metric.FRESHNESS in document]
        assert fresh["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["source"]] and fresh["source"] == "search"
        assert len(fresh[Metric.FRESHNESS]) == 12 and all(1800 <= s < 1860 for s in fresh[Metric.FRESHNESS])
        assert result == {
            "sent": {"sqs": 12},
            "refused": {"sqs": 0},
            "unavailable": {},
            "pending": 0,
            "failed": 0,
            "oldest_pending_seconds": 0,
        }
        assert sorted(body["id"] for body in _bodies(endpoint)) == sorted(ids)
        assert relay_lambda.handler({}, context)["sent"] == {"sqs": 0}
    # The queue is gone: the deliveries wait, and the metric the stack alarms on says for how long.
    with engine.begin() as conn:
        record_granules(conn, [granule_record(100 + i) for i in range(3)], ["sqs"])
        conn.execute(text("UPDATE outbox SET created_at = now() - interval '2 hours' WHERE status = 'pending'"))
        # One delivery that ran out of attempts earlier: the other metric the stack alarms on counts it.
        record_granules(conn, [granule_record(200)], ["sqs"])
        conn.execute(text("UPDATE outbox SET status = 'failed' WHERE granule_id = :id"), {"id": granule_record(200).id})
    capsys.readouterr()
    result = relay_lambda.handler({}, context)
    assert result["pending"] == 3 and "sqs" in result["unavailable"] and 7200 <= result["oldest_pending_seconds"] < 7300
    assert result["failed"] == 1
    (emf,) = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert emf["_aws"]["CloudWatchMetrics"][0]["Namespace"] == NAMESPACE == "LinkFetcher"
    assert emf["service"] == Service.RELAY == "link-fetcher-relay"
    assert 7200 <= min(emf[Metric.OLDEST_PENDING_DELIVERY]) < 7300
    assert emf[Metric.FAILED_DELIVERIES] == [1]


def test_relay_gives_connections_back_with_synchronous_commit(engine, aws_env) -> None:
    record(engine, 40, ["sqs"])
    with SqsEndpoint() as endpoint:
        sink = _sqs_sink(endpoint.url, endpoint.queue_url("q"))
        with pytest.raises(SimulatedCrash):
            relay(engine, [_Wrapped(sink, after=_crash_on(2))], workers=2)
        relay(engine, [sink], workers=2)
    # The relay's own commits skip the WAL flush wait; recording, which shares the pool, must not.
    pooled = [engine.connect() for _ in range(engine.pool.checkedin())]
    assert len(pooled) >= 2
    assert [conn.exec_driver_sql("SHOW synchronous_commit").scalar() for conn in pooled] == ["on"] * len(pooled)
    for conn in pooled:
        conn.close()


def test_lost_database_connection_mid_batch_repeats_only_that_batch(engine, aws_env) -> None:
    ids = record(engine, 30, ["sqs"])

    def drop_relay_connection(batch: int) -> None:
        # The sink accepted batch 2 and the relay is about to mark it; batch 3 is leased, not sent. The database
        # drops the sessions holding a lease token (the relay's, and pooled ones of earlier relays) and waits
        # until they are gone.
        if batch == 2:
            with engine.connect() as conn:
                dropped = conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid, 10000) FROM pg_locks WHERE locktype = 'advisory' "
                        "AND classid = :lock_class AND pid <> pg_backend_pid() "
                        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                    ),
                    {"lock_class": LEASE_LOCK_CLASS},
                ).all()
            assert dropped and all(ended for (ended,) in dropped)

    with SqsEndpoint() as endpoint:
        sink = _sqs_sink(endpoint.url, endpoint.queue_url("q"))
        with pytest.raises(DBAPIError):
            relay(engine, [_Wrapped(sink, after=drop_relay_connection)])
        assert _outbox(engine) == {("sqs", "sent"): 10, ("sqs", "pending"): 20}
        assert relay(engine, [sink]).sent == {"sqs": 20}
        sent = [body["id"] for body in _bodies(endpoint)]
    assert set(sent) == set(ids) and len(sent) == 40  # the batch in flight, and only it, went twice

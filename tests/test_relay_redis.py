"""Redis Streams sink against the real Redis: CloudEvent entries, MAXLEN, outages at the start and mid-run."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from urllib.parse import urlsplit

import pytest
import redis
from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

from db.outbox import LEASE_LOCK_CLASS
from link_fetcher.relay import relay
from link_fetcher.sinks import BeforeSend, Message
from link_fetcher.sinks.redis_stream import RedisStreamSink, event_from_fields
from tests.factories import record
from tests.fakes.tcp_proxy import TcpProxy
from tests.schema import assert_valid_message

CLOUDEVENT_FIELDS = {
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "data",
    "producer",
    "href",
}


@pytest.fixture
def redis_client(redis_url: str, unique_name: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.delete(unique_name, f"{unique_name}:relayed")
    client.close()


def _sink(make_settings, url: str, stream: str, maxlen: int = 0) -> RedisStreamSink:
    return RedisStreamSink.from_settings(make_settings(redis_url=url, redis_stream=stream, redis_stream_maxlen=maxlen))


def _stream_ids(client: redis.Redis, stream: str) -> list[str]:
    return [fields[b"id"].decode() for _, fields in client.xrange(stream)]


def _pending_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM outbox WHERE status = 'pending'")).scalar_one()


def test_one_cloudevent_entry_per_granule(engine, make_settings, redis_url, redis_client, unique_name) -> None:
    ids = record(engine, 25, ["redis"])
    sink = _sink(make_settings, redis_url, unique_name)
    report = relay(engine, [sink])
    assert report.sent == {"redis": 25} and report.pending == 0
    entries = redis_client.xrange(unique_name)
    assert sorted(fields[b"id"].decode() for _, fields in entries) == sorted(ids)
    with engine.connect() as conn:
        first_seen = dict(conn.execute(text("SELECT id, first_seen FROM granule")).all())
    for _, fields in entries:
        assert {name.decode() for name in fields} == CLOUDEVENT_FIELDS
        event = event_from_fields(fields)
        body = json.loads(fields[b"data"])
        assert_valid_message(body)
        assert event.get_data() == body and body["id"] == event.get_id()
        assert event.get_specversion() == "1.0"
        assert event.get_type() == "link-fetcher.granule.found"
        assert event.get_source() == "/link-fetcher/search"
        assert event.get_subject() == body["filename"]
        assert event.get_datacontenttype() == "application/json"
        assert event.get_extension("producer") == "link-fetcher"
        assert event.get_extension("href") == body["download_url"]
        # The event time is when the granule was recorded, so a repeated delivery is the same event.
        assert event.get_time() == first_seen[body["id"]]
        assert fields[b"time"].decode().endswith("Z")
    # Nothing is left to send: a second relay adds nothing.
    assert relay(engine, [sink]).sent == {"redis": 0}
    assert redis_client.xlen(unique_name) == 25


def test_approximate_maxlen_bounds_the_stream(engine, make_settings, redis_url, redis_client, unique_name) -> None:
    record(engine, 1000, ["redis"])
    relay(engine, [_sink(make_settings, redis_url, unique_name, maxlen=100)], workers=2)
    # "~" trims whole macro-nodes only, so the stream keeps at least MAXLEN entries and a node's worth more.
    assert 100 <= redis_client.xlen(unique_name) < 1000


def test_redis_down_at_start_then_relay_delivers_each_once(
    engine, make_settings, redis_url, redis_client, unique_name
) -> None:
    ids = record(engine, 15, ["redis"])
    down = _sink(make_settings, "redis://127.0.0.1:1/0", unique_name)
    started = time.monotonic()
    report = relay(engine, [down])
    assert time.monotonic() - started < 5, "a Redis that is down must fail fast"
    assert report.sent == {"redis": 0} and "Redis stream" in report.unavailable["redis"]
    assert report.pending == 15
    report = relay(engine, [_sink(make_settings, redis_url, unique_name)])
    assert report.sent == {"redis": 15} and report.pending == 0 and not report.unavailable
    assert sorted(_stream_ids(redis_client, unique_name)) == sorted(ids)


class _StopsBeforeBatch:
    """Delegates to a sink, cutting the connection to Redis just before the n-th batch."""

    def __init__(self, sink: RedisStreamSink, proxy: TcpProxy, batch: int) -> None:
        self.name = sink.name
        self._sink, self._proxy, self._batch, self._calls = sink, proxy, batch, 0

    def send(self, messages: Sequence[Message], before_send: BeforeSend | None = None) -> dict[str, str]:
        self._calls += 1
        if self._calls == self._batch:
            self._proxy.stop()
        return self._sink.send(messages, before_send)


def test_redis_down_mid_run_keeps_the_rest_pending(engine, make_settings, redis_url, redis_client, unique_name) -> None:
    ids = record(engine, 60, ["redis"])
    target = urlsplit(redis_url)
    with TcpProxy(target.hostname, target.port or 6379) as proxy:
        proxied = _sink(make_settings, f"redis://127.0.0.1:{proxy.port}{target.path or '/0'}", unique_name)
        report = relay(engine, [_StopsBeforeBatch(proxied, proxy, batch=4)])
    assert report.sent == {"redis": 30} and "redis" in report.unavailable and report.pending == 30
    # One script per batch: the batch cut mid-way added nothing, so nothing is repeated afterwards.
    assert redis_client.xlen(unique_name) == 30
    report = relay(engine, [_sink(make_settings, redis_url, unique_name)])
    assert report.sent == {"redis": 30} and report.pending == 0
    assert sorted(_stream_ids(redis_client, unique_name)) == sorted(ids)


def test_wrong_key_type_is_an_outage_not_a_loss(engine, make_settings, redis_url, redis_client, unique_name) -> None:
    redis_client.set(unique_name, "not a stream")
    record(engine, 5, ["redis"])
    report = relay(engine, [_sink(make_settings, redis_url, unique_name)])
    assert "WRONGTYPE" in report.unavailable["redis"] and report.pending == 5
    assert _pending_count(engine) == 5


@pytest.mark.parametrize("poison", ["stream", "string"])
def test_a_poisoned_receipts_key_adds_nothing_then_delivery_resumes_once(
    engine, make_settings, redis_url, redis_client, unique_name, poison
) -> None:
    """Issue 26: the receipts key made a stream (as a gateway write key could) or a string. Under MULTI/EXEC the
    HSET failed while the XADDs applied, and every relay added the batch again. Now each relay adds nothing and
    leaves everything pending, saying why; once the key is gone, each granule lands exactly once."""
    ids = record(engine, 25, ["redis"])
    sink = _sink(make_settings, redis_url, unique_name)
    if poison == "stream":
        redis_client.xadd(sink.receipts_key, {"probe": "x"})
    else:
        redis_client.set(sink.receipts_key, "x")
    for _ in range(4):
        report = relay(engine, [sink])
        assert redis_client.xlen(unique_name) == 0
        assert report.sent == {"redis": 0} and report.pending == 25
        assert "WRONGTYPE" in report.unavailable["redis"] and "nothing added" in report.unavailable["redis"]
    assert _pending_count(engine) == 25
    redis_client.delete(sink.receipts_key)
    report = relay(engine, [sink])
    assert report.sent == {"redis": 25} and report.pending == 0
    assert sorted(_stream_ids(redis_client, unique_name)) == sorted(ids)  # each exactly once
    assert relay(engine, [sink]).sent == {"redis": 0} and redis_client.xlen(unique_name) == 25


def test_a_batch_without_receipt_is_one_script_too(redis_url, redis_client, unique_name, make_settings) -> None:
    sink = _sink(make_settings, redis_url, unique_name, maxlen=1000)
    messages = [Message(id=f"id-{i}", body={"id": f"id-{i}", "filename": "f"}, group="t") for i in range(3)]
    assert sink.send(messages) == {}
    assert [fields[b"data"] for _, fields in redis_client.xrange(unique_name)] == [
        json.dumps(message.body, separators=(",", ":")).encode() for message in messages
    ]
    assert not redis_client.exists(sink.receipts_key)


class SimulatedCrash(Exception):
    pass


class _CrashesAfter(RedisStreamSink):
    """The Redis sink; `after(n)` runs once Redis took the n-th batch (with its receipt)."""

    def __init__(self, sink: RedisStreamSink, after) -> None:
        super().__init__(sink._client, sink.stream, maxlen=sink.maxlen)
        self.after, self.batches = after, 0

    def send_with_receipt(
        self, messages: Sequence[Message], receipt: str | None, before_send: BeforeSend | None = None
    ) -> dict[str, str]:
        refused = super().send_with_receipt(messages, receipt, before_send)
        self.batches += 1
        self.after(self.batches)
        return refused


def _crash_after(batch: int):
    def after(n: int) -> None:
        if n == batch:
            raise SimulatedCrash("the relay died after Redis took the batch, before marking it sent")

    return after


def test_a_relay_marks_once_per_lease_and_a_crash_repeats_nothing(
    engine, make_settings, redis_url, redis_client, unique_name
) -> None:
    """The batches of a lease are marked sent together: Redis keeps each batch's receipt (the relay's token)
    with it. The first lease is one batch, the second two: a relay that dies after Redis took both batches of the
    second leaves them pending; the next relay finds their receipts, marks them sent without sending them again,
    and sends only the rest."""
    ids = record(engine, 50, ["redis"])
    sink = _sink(make_settings, redis_url, unique_name)
    with pytest.raises(SimulatedCrash):
        relay(engine, [_CrashesAfter(sink, _crash_after(3))])
    assert _pending_count(engine) == 40 and redis_client.xlen(unique_name) == 30
    assert redis_client.hlen(sink.receipts_key) == 20  # the first lease's went when it was marked
    report = relay(engine, [sink])
    assert report.sent == {"redis": 20} and report.pending == 0  # the 20 already in the stream are not sent again
    assert sorted(_stream_ids(redis_client, unique_name)) == sorted(ids)  # each once
    assert redis_client.hlen(sink.receipts_key) == 0  # receipts go once their deliveries are marked


def test_lost_database_connection_mid_lease_repeats_nothing(
    engine, make_settings, redis_url, redis_client, unique_name
) -> None:
    """The database ends the relay's session after Redis took batch 2: the relay sends nothing more (it checks
    its connection before each batch) and fails; the next relay finds the two batches' receipts."""
    ids = record(engine, 30, ["redis"])
    sink = _sink(make_settings, redis_url, unique_name)

    def drop_relay_sessions(batch: int) -> None:
        if batch == 2:
            with engine.connect() as conn:
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid, 10000) FROM pg_locks WHERE locktype = 'advisory' "
                        "AND classid = :lock_class AND pid <> pg_backend_pid() "
                        "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                    ),
                    {"lock_class": LEASE_LOCK_CLASS},
                )

    with pytest.raises(DBAPIError):
        relay(engine, [_CrashesAfter(sink, drop_relay_sessions)])
    assert redis_client.xlen(unique_name) == 20
    assert relay(engine, [sink]).sent == {"redis": 10}
    assert sorted(_stream_ids(redis_client, unique_name)) == sorted(ids)


@pytest.mark.unit
@pytest.mark.parametrize("name", ["to-download:relayed", "link-fetcher:consumers", "bad name", "x" * 257, ""])
def test_the_stream_setting_is_a_valid_name_the_relay_does_not_reserve(name: str) -> None:
    from pydantic import ValidationError

    from link_fetcher.settings import read_settings

    with pytest.raises(ValidationError, match="redis_stream"):
        read_settings(None, redis_url="redis://127.0.0.1:6379/0", redis_stream=name)

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence

import boto3
from sqlalchemy import Engine

from db import record_granules
from link_fetcher.background_relay import BackgroundRelay
from link_fetcher.recording import Recorder
from link_fetcher.sinks import BeforeSend, Message
from link_fetcher.sinks.sqs import SqsSink
from tests.factories import granule_record
from tests.fakes.sqs_endpoint import SqsEndpoint


def _recorder(engine: Engine, settings, sinks) -> Recorder:
    return Recorder.from_settings(settings, engine, sinks, publish=False)


def _wait_for(predicate, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)
    return predicate()


def _record(engine: Engine, indexes: range) -> list[str]:
    with engine.begin() as conn:
        return record_granules(conn, [granule_record(i) for i in indexes], ["sqs"])


def test_wakes_on_record_delivers_once_and_drains_on_stop(engine: Engine, make_settings, aws_env) -> None:
    with SqsEndpoint() as endpoint:
        client = boto3.client("sqs", endpoint_url=endpoint.url, region_name="us-east-1")
        sink = SqsSink(endpoint.queue_url("q"), client=client)
        background = BackgroundRelay(_recorder(engine, make_settings(), [sink]), interval=60)
        background.start()
        sent = lambda: [json.loads(m["Body"])["id"] for m in endpoint.fake.messages("q")]  # noqa: E731
        try:
            first = _record(engine, range(25))
            background.wake(first)
            assert _wait_for(lambda: len(sent()) == 25)  # long before the 60 s interval
            second = _record(engine, range(25, 30))  # recorded without a wake-up: the final drain sends them
        finally:
            background.stop()
        assert sorted(sent()) == sorted(first + second)
        assert endpoint.fake.batch_calls == 4  # 25 + 5 in batches of 10: one sink call per ten granules


class _HeldSink:
    """Delegates to a sink; the first send waits until released (a pass caught mid-send)."""

    def __init__(self, sink: SqsSink) -> None:
        self.name = sink.name
        self._sink = sink
        self.sending = threading.Event()
        self.release = threading.Event()

    def send(self, messages: Sequence[Message], before_send: BeforeSend | None = None) -> dict[str, str]:
        self.sending.set()
        assert self.release.wait(10)
        return self._sink.send(messages, before_send)


def test_a_stop_asked_during_a_pass_still_drains_what_was_recorded_meanwhile(
    engine: Engine, make_settings, aws_env
) -> None:
    with SqsEndpoint() as endpoint:
        client = boto3.client("sqs", endpoint_url=endpoint.url, region_name="us-east-1")
        held = _HeldSink(SqsSink(endpoint.queue_url("q"), client=client))
        background = BackgroundRelay(_recorder(engine, make_settings(), [held]), interval=60, linger=0)
        background.start()
        first = _record(engine, range(5))  # a short batch: the pass ends after it, caught up
        background.wake(first)
        assert held.sending.wait(5)
        second = _record(engine, range(5, 8))  # recorded after the pass leased: only a later pass sends them
        stopper = threading.Thread(target=background.stop)
        stopper.start()
        assert _wait_for(lambda: background._stopping.is_set())
        held.release.set()
        stopper.join(30)
        sent = sorted(json.loads(m["Body"])["id"] for m in endpoint.fake.messages("q"))
    assert not background.running
    assert sent == sorted(first + second)


def test_survives_a_database_outage(engine: Engine, make_settings, aws_env, caplog) -> None:
    broken = make_settings(database_url="postgresql://postgres@127.0.0.1:1/none")
    from link_fetcher.database import engine_for

    with SqsEndpoint() as endpoint:
        client = boto3.client("sqs", endpoint_url=endpoint.url, region_name="us-east-1")
        background = BackgroundRelay(
            _recorder(engine_for(broken), broken, [SqsSink(endpoint.queue_url("q"), client=client)])
        )
        background.start()
        background.wake()
        assert _wait_for(lambda: "background relay failed" in caplog.text, timeout=15)
        assert background.running  # still serving: the next wake-up tries again
        background.stop(timeout=15)
        assert not background.running


def test_a_burst_of_single_recordings_is_sent_in_full_batches(engine: Engine, make_settings, aws_env) -> None:
    """A busy endpoint records one granule per request and wakes the relay each time: the wake-up lingers, so
    the burst goes out ten to a sink call instead of one."""
    with SqsEndpoint() as endpoint:
        client = boto3.client("sqs", endpoint_url=endpoint.url, region_name="us-east-1")
        sinks = [SqsSink(endpoint.queue_url("q"), client=client)]
        background = BackgroundRelay(_recorder(engine, make_settings(), sinks), interval=60, linger=0.5)
        background.start()
        try:
            recorded = []
            for index in range(30):
                recorded += _record(engine, range(index, index + 1))
                background.wake(recorded[-1:])
            assert _wait_for(lambda: len(endpoint.fake.messages("q")) == 30)
        finally:
            background.stop()
        assert endpoint.fake.batch_calls <= 4  # 3 when the burst fits in the linger; never one call per granule

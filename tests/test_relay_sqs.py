from __future__ import annotations

import json
import socket

import boto3
import pytest
from moto import mock_aws
from sqlalchemy import Engine, text

from db import UNASSIGNED_SINK, record_granules
from link_fetcher.relay import relay
from link_fetcher.sinks.sqs import SqsSink
from tests.factories import granule_record, record
from tests.fakes.sqs_endpoint import SqsEndpoint
from tests.schema import assert_valid_message


def _outbox(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.execute(text("SELECT status, count(*) FROM outbox GROUP BY status")).all())


def _receive_all(client, queue_url: str) -> list[dict]:
    messages = []
    while batch := client.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=0
    ).get("Messages"):
        messages.extend(batch)
        client.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
        )
    return messages


@pytest.fixture
def moto_sqs(aws_env):
    with mock_aws():
        yield boto3.client("sqs", region_name="us-east-1")


def test_relay_to_moto_sqs_sends_each_once(engine: Engine, moto_sqs) -> None:
    queue_url = moto_sqs.create_queue(QueueName="to-download")["QueueUrl"]
    ids = record(engine, 25, ["sqs"])
    report = relay(engine, [SqsSink(queue_url, client=moto_sqs)])
    assert report.sent == {"sqs": 25} and report.pending == 0
    messages = _receive_all(moto_sqs, queue_url)
    bodies = [json.loads(m["Body"]) for m in messages]
    assert sorted(b["id"] for b in bodies) == sorted(ids)
    for body in bodies:
        assert_valid_message(body)
    body = bodies[0]
    assert set(body) == {
        "event",
        "id",
        "filename",
        "download_url",
        "checksum",
        "blake3",
        "size",
        "tile_id",
        "platform",
        "sensing_time",
        "published",
        "source",
        "online",
    }
    assert body["sensing_time"].endswith("Z") and body["source"] == "search"
    assert _outbox(engine) == {"sent": 25}
    # A second relay has nothing left to send.
    assert relay(engine, [SqsSink(queue_url, client=moto_sqs)]).sent == {"sqs": 0}
    assert _receive_all(moto_sqs, queue_url) == []


def test_fifo_queue_gets_group_and_dedup_ids(engine: Engine, moto_sqs) -> None:
    queue_url = moto_sqs.create_queue(QueueName="to-download.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
    ids = record(engine, 3, ["sqs"])
    relay(engine, [SqsSink(queue_url, client=moto_sqs)])
    messages = _receive_all(moto_sqs, queue_url)
    assert sorted(m["Attributes"]["MessageDeduplicationId"] for m in messages) == sorted(ids)
    for message in messages:
        assert message["Attributes"]["MessageGroupId"] == json.loads(message["Body"])["tile_id"]


def test_partially_refused_batch_keeps_only_refused_pending(engine: Engine, aws_env) -> None:
    ids = record(engine, 10, ["sqs"])
    refused_id = ids[3]
    with SqsEndpoint() as endpoint:
        endpoint.fake.refuse = lambda entry: json.loads(entry["MessageBody"])["id"] == refused_id
        client = boto3.client("sqs", endpoint_url=endpoint.url, region_name="us-east-1")
        sink = SqsSink(endpoint.queue_url("q"), client=client)
        report = relay(engine, [sink], max_attempts=2)
        assert report.sent == {"sqs": 9} and report.refused == {"sqs": 1} and report.pending == 1
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT status, attempts, last_error FROM outbox WHERE granule_id = :id"), {"id": refused_id}
            ).one()
        assert row.status == "pending" and row.attempts == 1 and "refused by the fake" in row.last_error
        # The second refusal reaches max_attempts: the delivery is marked failed, not retried forever.
        report = relay(engine, [sink], max_attempts=2)
        assert report.failed == 1 and report.pending == 0
        endpoint.fake.refuse = lambda entry: False
        report = relay(engine, [sink], max_attempts=2, retry_failed=True)
        assert report.sent == {"sqs": 1} and report.failed == 0
        assert sorted(json.loads(m["Body"])["id"] for m in endpoint.fake.messages("q")) == sorted(ids)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_endpoint_down_leaves_everything_pending(engine: Engine, aws_env) -> None:
    ids = record(engine, 15, ["sqs"])
    client = boto3.client("sqs", endpoint_url=f"http://127.0.0.1:{_closed_port()}", region_name="us-east-1")
    report = relay(engine, [SqsSink("http://127.0.0.1/000000000000/q", client=client)], workers=1)
    assert report.sent == {"sqs": 0} and "sqs" in report.unavailable and report.pending == 15
    # An outage costs no attempt (it is not the messages' fault); the batch in flight records the error.
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT attempts, last_error FROM outbox ORDER BY id")).all()
    assert {attempts for attempts, _ in rows} == {0}
    assert [error is not None for _, error in rows] == [True] * 10 + [False] * 5
    with SqsEndpoint() as endpoint:
        client = boto3.client("sqs", endpoint_url=endpoint.url, region_name="us-east-1")
        report = relay(engine, [SqsSink(endpoint.queue_url("q"), client=client)])
        assert report.sent == {"sqs": 15} and report.pending == 0
        assert sorted(json.loads(m["Body"])["id"] for m in endpoint.fake.messages("q")) == sorted(ids)


def test_unassigned_deliveries_are_bound_to_sinks_at_relay(engine: Engine, aws_env) -> None:
    ids = record(engine, 4, [UNASSIGNED_SINK])
    with SqsEndpoint() as endpoint:
        client = boto3.client("sqs", endpoint_url=endpoint.url, region_name="us-east-1")
        report = relay(engine, [SqsSink(endpoint.queue_url("q"), client=client)])
        assert report.sent == {"sqs": 4}
        assert sorted(json.loads(m["Body"])["id"] for m in endpoint.fake.messages("q")) == sorted(ids)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT DISTINCT sink FROM outbox")).scalars().all() == ["sqs"]


def test_backlog_of_a_sink_no_longer_configured_does_not_count(engine: Engine, aws_env) -> None:
    record(engine, 3, ["redis"])  # recorded while Redis was configured; Redis since removed
    ids = _record_more(engine, 2)
    with SqsEndpoint() as endpoint:
        client = boto3.client("sqs", endpoint_url=endpoint.url, region_name="us-east-1")
        report = relay(engine, [SqsSink(endpoint.queue_url("q"), client=client)])
        assert report.sent == {"sqs": 2} and report.pending == 0 and report.failed == 0
        assert sorted(json.loads(m["Body"])["id"] for m in endpoint.fake.messages("q")) == sorted(ids)
    assert _outbox(engine) == {"pending": 3, "sent": 2}


def _record_more(engine: Engine, count: int) -> list[str]:
    with engine.begin() as conn:
        return record_granules(conn, [granule_record(100 + i) for i in range(count)], ["sqs"])

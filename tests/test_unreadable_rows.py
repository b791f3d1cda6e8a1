"""No row can wedge the relay, the downloader or reconcile: a granule psycopg cannot read back (a timestamp
before year 1, written before migration 0005's range checks) fails alone and is reported; the rest goes on."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws
from sqlalchemy import Engine, text

from db import record_granules
from link_fetcher import relay_worker
from link_fetcher.cli import main
from link_fetcher.relay import relay
from link_fetcher.sinks.sqs import SqsSink
from tests.factories import granule_record, poison_granule
from tests.fakes.cdse_download import FakeCdseDownload
from tests.fakes.cdse_identity import FakeIdentity


def _record_with_one_poisoned(engine: Engine, count: int, poisoned: int, **record_args) -> tuple[list[str], str]:
    records = [granule_record(i, **record_args) for i in range(count)]
    with engine.begin() as conn:
        record_granules(conn, records, ["sqs"])
        poison_granule(conn, records[poisoned].id)
    bad = records[poisoned].id
    return [r.id for r in records if r.id != bad], bad


def _outbox(engine: Engine) -> dict[str, tuple[str, str | None]]:
    with engine.connect() as conn:
        return {r.granule_id: (r.status, r.last_error) for r in conn.execute(text("SELECT * FROM outbox"))}


def test_the_poisoned_row_is_unreadable_without_the_fix(engine: Engine) -> None:
    """The reproduction: reading the row back fails, so a relay that claims it as one batch would fail forever."""
    _, bad = _record_with_one_poisoned(engine, 1, 0)
    with engine.connect() as conn, pytest.raises(Exception, match="before year 1"):
        conn.execute(text("SELECT sensing_start FROM granule WHERE id = :id"), {"id": bad}).all()


def test_relay_fails_the_unreadable_delivery_and_sends_its_neighbours(engine: Engine, aws_env) -> None:
    good, bad = _record_with_one_poisoned(engine, 25, 12)
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        queue_url = sqs.create_queue(QueueName="to-download")["QueueUrl"]
        report = relay(engine, [SqsSink(queue_url, client=sqs)], batch_size=10)
        bodies = []
        while batch := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages"):
            bodies += [json.loads(m["Body"]) for m in batch]
            sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
            )
        assert sorted(b["id"] for b in bodies) == sorted(good)
        assert report.sent == {"sqs": 24} and report.pending == 0 and report.failed == 1
        status, error = _outbox(engine)[bad]
        assert status == "failed" and "granule row unreadable" in error and "before year 1" in error
        # Later relays (even one retrying failed deliveries) neither stop on it nor send anything twice.
        again = relay(engine, [SqsSink(queue_url, client=sqs)], retry_failed=True)
        assert again.total_sent == 0 and again.failed == 1
        assert sqs.receive_message(QueueUrl=queue_url).get("Messages") is None


def test_a_granule_that_cannot_become_a_message_fails_alone(engine: Engine, aws_env, monkeypatch) -> None:
    records = [granule_record(i) for i in range(5)]
    with engine.begin() as conn:
        record_granules(conn, records, ["sqs"])
    build = relay_worker.to_message

    def broken_for_one(granule: dict, event: str = "found") -> relay_worker.Message:
        if granule["id"] == records[2].id:
            raise ValueError("no usable filename")
        return build(granule, event)

    monkeypatch.setattr(relay_worker, "to_message", broken_for_one)
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        queue_url = sqs.create_queue(QueueName="to-download")["QueueUrl"]
        report = relay(engine, [SqsSink(queue_url, client=sqs)])
    assert report.sent == {"sqs": 4} and report.failed == 1
    status, error = _outbox(engine)[records[2].id]
    assert status == "failed" and error == "cannot build the message: ValueError: no usable filename"


def test_cli_relay_pending_and_status_show_the_failed_delivery(cli_env, engine: Engine, capsys) -> None:
    from tests.fakes.sqs_endpoint import SqsEndpoint

    good, bad = _record_with_one_poisoned(engine, 12, 0)
    with SqsEndpoint() as endpoint:
        cli_env.setenv("AWS_ENDPOINT_URL", endpoint.url)
        cli_env.setenv("TO_DOWNLOAD_QUEUE_URL", endpoint.queue_url("q"))
        assert main(["relay"]) == 1  # a delivery failed: the run says so
        err = capsys.readouterr().err
        assert "0 deliveries pending, 1 failed" in err and "Traceback" not in err
        assert main(["pending", "--include-failed"]) == 0
        (failed,) = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert failed["id"] == bad and failed["status"] == "failed" and "unreadable" in failed["last_error"]
        assert main(["status"]) == 0
        assert "failed" in capsys.readouterr().out
        sent = [json.loads(m["Body"])["id"] for m in endpoint.fake.messages("q")]
    assert sorted(sent) == sorted(good)


@pytest.fixture
def downloads(monkeypatch, tmp_path, database_url, aws_env):
    """The downloader's CLI environment: fake CDSE download and identity, files under a folder."""
    with FakeIdentity() as identity, FakeCdseDownload(identity) as cdse:
        monkeypatch.chdir(tmp_path)
        for key, value in {
            "DATABASE_URL": database_url,
            "CDSE_DOWNLOAD_URL": cdse.url,
            "CDSE_IDENTITY_URL": identity.url,
            "CDSE_USERNAME": identity.username,
            "CDSE_PASSWORD": identity.password,
            "DOWNLOAD_DIR": str(tmp_path / "downloads"),
        }.items():
            monkeypatch.setenv(key, value)
        for key in ("TO_DOWNLOAD_QUEUE_URL", "REDIS_URL", "UPLOAD_BUCKET"):
            monkeypatch.delenv(key, raising=False)
        yield cdse


def _record_products(engine: Engine, cdse: FakeCdseDownload, count: int) -> list[str]:
    products = [cdse.add_product(1000 + i) for i in range(count)]
    records = [granule_record(i, id=p.id, size=p.size, checksum=p.md5, blake3=p.blake3) for i, p in enumerate(products)]
    with engine.begin() as conn:
        record_granules(conn, records, ["sqs"])
    return [p.id for p in products]


def test_download_fails_the_unreadable_granule_and_stores_the_others(engine: Engine, downloads, capsys) -> None:
    ids = _record_products(engine, downloads, 4)
    with engine.begin() as conn:
        poison_granule(conn, ids[1])
    assert main(["download", *(arg for i in ids for arg in ("--id", i))]) == 1
    err = capsys.readouterr().err
    assert f"{ids[1]}: failed granule row unreadable" in err
    with engine.connect() as conn:
        downloaded = set(conn.execute(text("SELECT id FROM granule WHERE downloaded")).scalars())
    assert downloaded == {ids[0], ids[2], ids[3]}


def test_reconcile_reports_the_unreadable_row_and_checks_the_others(engine: Engine, downloads, capsys) -> None:
    ids = _record_products(engine, downloads, 3)
    assert main(["download", *(arg for i in ids for arg in ("--id", i))]) == 0
    with engine.begin() as conn:
        conn.execute(text("UPDATE outbox SET status = 'sent'"))
        poison_granule(conn, ids[0])
    capsys.readouterr()
    assert main(["reconcile"]) == 1
    out = capsys.readouterr().out
    assert f"unreadable: {ids[0]}: granule row unreadable" in out
    assert (
        "downloaded granules checked │     2" in out
        or "2" in out.split("downloaded granules checked")[1].split("\n")[0]
    )

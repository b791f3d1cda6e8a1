"""`download`, `reconcile` and the downloader / reconcile Lambdas, end to end: fake CDSE, moto S3 and SQS,
real Postgres. Includes the 300 MB product streamed by a separate process with its peak memory measured."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from sqlalchemy import Engine, text

from db import record_granules
from link_fetcher.cdse.products import CdseProduct, to_record
from link_fetcher.cli import main
from tests.factories import cdse_product, granule_record
from tests.fakes.cdse_download import FakeCdseDownload, FakeProduct
from tests.fakes.cdse_identity import FakeIdentity
from tests.process_memory import wait_with_peak_rss

ROOT = Path(__file__).resolve().parents[1]
CLI_PROCESS = [sys.executable, "-m", "link_fetcher"]


@pytest.fixture
def cdse():
    with FakeIdentity() as identity, FakeCdseDownload(identity) as fake:
        yield fake


@pytest.fixture
def cli_env(monkeypatch, tmp_path, database_url, cdse, aws_env) -> dict[str, str]:
    monkeypatch.chdir(tmp_path)  # no developer .env
    env = {
        "DATABASE_URL": database_url,
        "CDSE_DOWNLOAD_URL": cdse.url,
        "CDSE_IDENTITY_URL": cdse.identity.url,
        "CDSE_USERNAME": cdse.identity.username,
        "CDSE_PASSWORD": cdse.identity.password,
        "DOWNLOAD_DIR": str(tmp_path / "downloads"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in ("TO_DOWNLOAD_QUEUE_URL", "REDIS_URL", "UPLOAD_BUCKET"):
        monkeypatch.delenv(key, raising=False)
    return env


def record(engine: Engine, products: list[FakeProduct], *, delivered: bool = True) -> None:
    records = [granule_record(i, id=p.id, size=p.size, checksum=p.md5, blake3=p.blake3) for i, p in enumerate(products)]
    with engine.begin() as conn:
        record_granules(conn, records, ["sqs"])
        if delivered:  # as if an earlier relay had sent them
            conn.execute(text("UPDATE outbox SET status = 'sent', sent_at = now()"))


def bucket_objects(s3, bucket: str) -> dict[str, int]:
    return {o["Key"]: o["Size"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}


def test_download_reconcile_round_trip_with_s3_and_sqs(engine, cdse, cli_env, monkeypatch, unique_name, capsys):
    products = [cdse.add_product(20_000 + i * 1000) for i in range(19)]
    corrupt = cdse.add_product(30_000, corrupt=True)
    record(engine, [*products, corrupt])
    ids = [p.id for p in [*products, corrupt]]
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=unique_name)
        sqs = boto3.client("sqs")
        queue_url = sqs.create_queue(QueueName=unique_name)["QueueUrl"]
        monkeypatch.setenv("UPLOAD_BUCKET", unique_name)
        monkeypatch.setenv("TO_DOWNLOAD_QUEUE_URL", queue_url)

        assert main(["download", *(arg for i in ids for arg in ("--id", i))]) == 1  # the corrupt one failed
        stored = bucket_objects(s3, unique_name)
        assert len(stored) == 19 and sorted(stored.values()) == sorted(p.size for p in products)
        with engine.connect() as conn:
            state = dict(conn.execute(text("SELECT id, downloaded FROM granule")).all())
            corrupt_name = conn.execute(
                text("SELECT filename FROM granule WHERE id = :id"), {"id": corrupt.id}
            ).scalar()
        assert not any(corrupt_name in key for key in stored)
        assert state == {**{p.id: True for p in products}, corrupt.id: False}
        transfers = sum(p.transfers for p in cdse.products.values())

        # Again: nothing is downloaded (the corrupt one is tried and refused again, nothing stored).
        assert main(["download", *(arg for i in ids for arg in ("--id", i))]) == 1
        assert bucket_objects(s3, unique_name) == stored
        assert sum(p.transfers for p in products) == len(products)
        assert sum(p.transfers for p in cdse.products.values()) == transfers + 2
        capsys.readouterr()

        # An object deleted behind our back: reset and requeued (delivered to SQS), exit 1.
        lost = products[3]
        with engine.connect() as conn:
            lost_key = conn.execute(text("SELECT object_key FROM granule WHERE id = :id"), {"id": lost.id}).scalar()
        s3.delete_object(Bucket=unique_name, Key=lost_key)
        assert main(["reconcile"]) == 1
        out = capsys.readouterr().out
        assert "object missing" in out
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id FROM granule WHERE NOT downloaded ORDER BY id")).scalars().all() == (
                sorted([lost.id, corrupt.id])
            )
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
        assert [json.loads(m["Body"])["id"] for m in messages] == [lost.id]
        sqs.change_message_visibility(
            QueueUrl=queue_url, ReceiptHandle=messages[0]["ReceiptHandle"], VisibilityTimeout=0
        )

        # The queue is consumed; the object is back; reconcile finds everything consistent.
        assert main(["download", "--from-queue"]) == 0
        assert bucket_objects(s3, unique_name) == stored
        assert sqs.receive_message(QueueUrl=queue_url).get("Messages") is None
        assert main(["reconcile"]) == 0


def test_reconcile_in_a_folder_finds_wrong_sizes_orphans_and_stale_granules(engine, cdse, cli_env, capsys):
    products = [cdse.add_product(10_000 + i) for i in range(3)]
    stale = cdse.add_product(500)
    record(engine, [*products, stale])
    assert main(["download", *(arg for p in products for arg in ("--id", p.id))]) == 0
    root = Path(cli_env["DOWNLOAD_DIR"])
    with engine.begin() as conn:
        keys = dict(conn.execute(text("SELECT id, object_key FROM granule WHERE downloaded")).all())
        conn.execute(text("UPDATE granule SET first_seen = now() - interval '2 days' WHERE id = :id"), {"id": stale.id})
    (root / keys[products[0].id]).write_bytes(b"truncated")
    (root / "2024-01-01").mkdir()
    (root / "2024-01-01" / "stray.zip").write_bytes(b"x")
    (root / "leftover.zip.partial-abcd").write_bytes(b"in progress")  # a temporary file is not an object
    capsys.readouterr()

    assert main(["reconcile"]) == 1
    out = capsys.readouterr().out
    assert "orphan: 2024-01-01/stray.zip" in out and "partial" not in out
    with engine.connect() as conn:
        rows = {r.id: r for r in conn.execute(text("SELECT * FROM granule"))}
        pending = conn.execute(text("SELECT granule_id FROM outbox WHERE status = 'pending'")).scalars().all()
    assert not rows[products[0].id].downloaded and "wrong size" in rows[products[0].id].download_error
    assert rows[products[1].id].downloaded and rows[products[2].id].downloaded
    assert sorted(pending) == sorted([products[0].id, stale.id])
    # Already pending: the stale granule is not requeued twice; the orphan stays an orphan (never deleted).
    capsys.readouterr()
    assert main(["reconcile", "--since", "2020-01-01"]) == 1
    assert "stray.zip" in capsys.readouterr().out and (root / "2024-01-01" / "stray.zip").exists()
    assert main(["reconcile", "--since", "not-a-day"]) == 2


def test_download_usage_and_failures_exit_codes(engine, cdse, cli_env, monkeypatch, capsys) -> None:
    assert main(["download"]) == 2
    assert main(["download", "--id", "x", "--from-queue"]) == 2
    assert main(["download", "--id", "x", "--max", "3"]) == 2
    assert main(["download", "--from-queue"]) == 2
    assert "TO_DOWNLOAD_QUEUE_URL" in capsys.readouterr().err
    assert main(["download", "--id", "not-recorded"]) == 1
    assert "not-recorded: unknown" in capsys.readouterr().err
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:pw@127.0.0.1:1/x")
    assert main(["download", "--id", "x"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot connect" in err and "Traceback" not in err


def test_unreachable_queue_missing_bucket_and_plain_http_are_one_line(cli_env, monkeypatch, capsys) -> None:
    with mock_aws():
        monkeypatch.setenv("TO_DOWNLOAD_QUEUE_URL", "https://sqs.us-east-1.amazonaws.com/000000000000/missing")
        assert main(["download", "--from-queue"]) == 1
        assert "queue https://sqs" in capsys.readouterr().err
        monkeypatch.setenv("UPLOAD_BUCKET", "missing-bucket")
        monkeypatch.delenv("TO_DOWNLOAD_QUEUE_URL")
        assert main(["reconcile"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "s3://missing-bucket" in err and "NoSuchBucket" in err
    monkeypatch.setenv("CDSE_DOWNLOAD_URL", "http://download.example.com")
    assert main(["download", "--id", "x"]) == 2
    assert "https only" in capsys.readouterr().err


def _load_handler(name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(f"{name}_handler", ROOT / "lambdas" / name / "handler.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LAMBDA_CONTEXT = types.SimpleNamespace(
    function_name="downloader",
    memory_limit_in_mb=512,
    invoked_function_arn="arn:aws:lambda:us-east-1:000000000000:function:downloader",
    aws_request_id="req-1",
)


def _sqs_record(message_id: str, body: str) -> dict:
    return {
        "messageId": message_id,
        "receiptHandle": f"rh-{message_id}",
        "body": body,
        "attributes": {},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:to-download",
        "awsRegion": "us-east-1",
    }


def test_downloader_lambda_reports_only_the_failed_records(engine, cdse, cli_env) -> None:
    good, corrupt = cdse.add_product(5000), cdse.add_product(6000, corrupt=True)
    record(engine, [good, corrupt])
    handler = _load_handler("downloader")
    event = {
        "Records": [
            _sqs_record("m1", json.dumps({"id": good.id, "filename": "x"})),
            _sqs_record("m2", json.dumps({"id": corrupt.id})),
            _sqs_record("m3", "not json"),
            _sqs_record("m4", json.dumps({"id": good.id})),  # a duplicate delivery: acked, not downloaded
        ]
    }
    response = handler.handler(event, LAMBDA_CONTEXT)
    assert response == {"batchItemFailures": [{"itemIdentifier": "m2"}, {"itemIdentifier": "m3"}]}
    assert good.transfers == 1
    assert len(list(Path(cli_env["DOWNLOAD_DIR"]).rglob("*.zip"))) == 1


def test_reconcile_lambda_returns_counts(engine, cdse, cli_env) -> None:
    product = cdse.add_product(1000)
    record(engine, [product])
    assert main(["download", "--id", product.id]) == 0
    handler = _load_handler("reconcile")
    assert handler.handler({}, LAMBDA_CONTEXT)["consistent"] is True
    for path in Path(cli_env["DOWNLOAD_DIR"]).rglob("*.zip"):
        path.unlink()
    result = handler.handler({"since": "2020-01-01"}, LAMBDA_CONTEXT)
    assert result["consistent"] is False and result["missing"] == 1 and result["checked"] == 1


@pytest.mark.slow
def test_300_mb_product_streams_with_bounded_memory(engine, cdse, cli_env) -> None:
    product = cdse.add_product(300 * 1024 * 1024)
    record(engine, [product])
    process = subprocess.Popen(
        [*CLI_PROCESS, "download", "--id", product.id],
        env={**os.environ, **cli_env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    peak_mb = wait_with_peak_rss(process)
    assert process.returncode == 0, process.stderr.read().decode()
    print(f"300 MB product: peak RSS {peak_mb:.0f} MB")
    assert 0 < peak_mb < 150
    (stored,) = Path(cli_env["DOWNLOAD_DIR"]).rglob("*.zip")
    assert stored.stat().st_size == product.size


def test_products_sharing_a_name_keep_their_own_objects_and_reconcile_reads_both_layouts(
    engine, cdse, cli_env, capsys
) -> None:
    first, second, legacy = (cdse.add_product(5_000 + i) for i in range(3))
    # Push allows any Name; the same product name is one granule (SPEC §11), so these two are names the mission
    # does not read as product names (no product_name): two granules, one filename.
    name = "S2A_MSIL1C_20240912T112541_N0511_R137_T28PHQ_20240912T133420.SAFE"
    records = [
        granule_record(i, id=p.id, size=p.size, checksum=p.md5, blake3=p.blake3, filename=name, product_name=None)
        for i, p in enumerate((first, second))
    ] + [granule_record(2, id=legacy.id, size=legacy.size, checksum=legacy.md5, blake3=legacy.blake3)]
    with engine.begin() as conn:
        record_granules(conn, records, ["sqs"])
        conn.execute(text("UPDATE outbox SET status = 'sent', sent_at = now()"))
    ids = [first.id, second.id, legacy.id]
    assert main(["download", *(arg for i in ids for arg in ("--id", i))]) == 0
    root = Path(cli_env["DOWNLOAD_DIR"])
    with engine.connect() as conn:
        keys = dict(conn.execute(text("SELECT id, object_key FROM granule")).all())
    assert keys[first.id] == f"2024-09-12/{first.id}/{name}.zip" and keys[second.id] != keys[first.id]
    assert (root / keys[first.id]).stat().st_size == first.size and (
        root / keys[second.id]
    ).stat().st_size == second.size

    # An object stored before keys held the Id (`<day>/<name>.zip`) stays where its row says it is.
    old_key = f"2024-09-12/{records[2].filename}.zip"
    (root / keys[legacy.id]).rename(root / old_key)
    with engine.begin() as conn:
        conn.execute(text("UPDATE granule SET object_key = :key WHERE id = :id"), {"key": old_key, "id": legacy.id})
    capsys.readouterr()
    assert main(["reconcile"]) == 0
    assert "orphan:" not in capsys.readouterr().out
    assert main(["download", "--id", legacy.id]) == 0
    assert f"{legacy.id}: skipped {old_key}" in " ".join(capsys.readouterr().err.split())  # rich wraps lines
    (root / old_key).unlink()  # lost: reconcile resets it, and the next download uses the new layout
    assert main(["reconcile"]) == 1
    assert main(["download", "--id", legacy.id]) == 0
    with engine.connect() as conn:
        new_key = conn.execute(text("SELECT object_key FROM granule WHERE id = :id"), {"id": legacy.id}).scalar()
    assert new_key == f"2024-09-12/{legacy.id}/{records[2].filename}.zip" and (root / new_key).exists()


def test_a_product_of_unknown_size_and_checksum_downloads_unverified(engine, cdse, cli_env, capsys) -> None:
    """CDSE's shape for a product it has not measured: `ContentLength: 0`, `Checksum: []`, recorded as unknown."""
    product = cdse.add_product(12_345)
    value = cdse_product(product_id=product.id)
    value.update(ContentLength=0, Checksum=[])
    record = to_record(CdseProduct.model_validate(value), source="search", download_base_url=cdse.url)
    assert record.size is None and record.checksum is None and record.blake3 is None
    with engine.begin() as conn:
        record_granules(conn, [record], ["sqs"])
    assert main(["download", "--id", product.id]) == 0
    with engine.connect() as conn:
        key = conn.execute(text("SELECT object_key FROM granule WHERE downloaded")).scalar_one()
    assert (Path(cli_env["DOWNLOAD_DIR"]) / key).stat().st_size == 12_345

"""Downloader against a fake CDSE (token, faults) into a local folder and moto S3; rows and status in Postgres."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import boto3
import pytest
from moto import mock_aws
from pydantic import SecretStr
from sqlalchemy import Engine, text

from db import record_granules
from link_fetcher.downloader import objects
from link_fetcher.downloader.service import Result, build_downloader
from link_fetcher.downloader.storage import PART_SIZE, LocalStorage, S3Storage
from link_fetcher.http import check_url
from tests.factories import granule_record
from tests.fakes.cdse_download import FakeCdseDownload, FakeProduct, synthetic_bytes
from tests.fakes.cdse_identity import FakeIdentity


@pytest.fixture
def identity():
    with FakeIdentity() as fake:
        yield fake


@pytest.fixture
def cdse(identity):
    with FakeCdseDownload(identity) as fake:
        yield fake


@pytest.fixture
def settings(make_settings, cdse, tmp_path):
    return make_settings(
        cdse_download_url=cdse.url,
        cdse_identity_url=cdse.identity.url,
        cdse_username=cdse.identity.username,
        cdse_password=cdse.identity.password,
        download_dir=tmp_path / "downloads",
    )


def record(engine: Engine, products: list[FakeProduct]) -> None:
    records = [
        granule_record(index, id=p.id, size=p.size, checksum=p.md5, blake3=p.blake3) for index, p in enumerate(products)
    ]
    with engine.begin() as conn:
        record_granules(conn, records, ["sqs"])


def rows(engine: Engine) -> dict[str, dict]:
    with engine.connect() as conn:
        return {row["id"]: dict(row) for row in conn.execute(text("SELECT * FROM granule")).mappings()}


def md5_of(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def all_files(root: Path) -> list[str]:
    return sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())


def test_downloads_verify_and_survive_faults_into_a_folder(engine, cdse, settings) -> None:
    good = cdse.add_product(3 * 1024 * 1024 + 17)
    throttled = cdse.add_product(200_000, throttle_once=True)
    dropped = cdse.add_product(2 * 1024 * 1024, drop_at=1024 * 1024 + 5)
    corrupt = cdse.add_product(150_000, corrupt=True)
    record(engine, [good, throttled, dropped, corrupt])
    downloader = build_downloader(settings, engine)

    outcomes = {o.granule_id: o for o in downloader.download([good.id, throttled.id, dropped.id, corrupt.id])}

    assert {i: o.result for i, o in outcomes.items()} == {
        good.id: Result.DOWNLOADED,
        throttled.id: Result.DOWNLOADED,
        dropped.id: Result.DOWNLOADED,
        corrupt.id: Result.FAILED,
    }
    assert "MD5" in outcomes[corrupt.id].error
    root = settings.downloader.download_dir
    state = rows(engine)
    for product in (good, throttled, dropped):
        row = state[product.id]
        assert row["downloaded"] and row["downloaded_at"] and row["download_error"] is None
        assert product.id in row["object_key"] or row["filename"] in row["object_key"]
        assert md5_of((root / row["object_key"]).read_bytes()) == product.md5
    assert dropped.transfers == 2  # cut off once, then transferred again
    assert corrupt.transfers == 2  # a mismatch is transferred once more before giving up
    failed = state[corrupt.id]
    assert not failed["downloaded"] and failed["download_retries"] == 1 and "MD5" in failed["download_error"]
    # Nothing half-written stays: exactly the three verified objects.
    assert all_files(root) == sorted(state[p.id]["object_key"] for p in (good, throttled, dropped))
    with engine.connect() as conn:
        assert conn.execute(text("SELECT value FROM status WHERE key = 'last_file_downloaded_time'")).scalar()

    # Again: the stored ones are skipped without a transfer; the corrupt one fails again.
    transfers_before = sum(p.transfers for p in cdse.products.values())
    again = {o.granule_id: o.result for o in downloader.download([good.id, throttled.id, dropped.id, corrupt.id])}
    assert again == {good.id: "skipped", throttled.id: "skipped", dropped.id: "skipped", corrupt.id: "failed"}
    assert sum(p.transfers for p in cdse.products.values()) == transfers_before + 2
    assert rows(engine)[corrupt.id]["download_retries"] == 2


def test_a_downloaded_granule_whose_object_vanished_is_downloaded_again(engine, cdse, settings) -> None:
    product = cdse.add_product(50_000)
    record(engine, [product])
    downloader = build_downloader(settings, engine)
    (first,) = downloader.download([product.id])
    (settings.downloader.download_dir / first.object_key).unlink()
    (second,) = downloader.download([product.id])
    assert second.result == Result.DOWNLOADED and product.transfers == 2


def test_unknown_ids_and_missing_credentials(engine, cdse, settings, make_settings) -> None:
    product = cdse.add_product(1000)
    record(engine, [product])
    (unknown,) = build_downloader(settings, engine).download(["no-such-id"])
    assert unknown.result == Result.UNKNOWN
    no_account = make_settings(cdse_download_url=cdse.url, download_dir=settings.downloader.download_dir)
    (outcome,) = build_downloader(no_account, engine).download([product.id])
    assert outcome.result == Result.FAILED and "CDSE_USERNAME" in outcome.error
    wrong = settings.model_copy(update={"cdse": settings.cdse.model_copy(update={"password": SecretStr("wrong")})})
    (refused,) = build_downloader(wrong, engine).download([product.id])
    assert refused.result == Result.FAILED and "credentials refused" in refused.error
    assert product.transfers == 0


def test_a_revoked_token_is_renewed_once(engine, cdse, settings) -> None:
    first, second = cdse.add_product(1000), cdse.add_product(2000)
    record(engine, [first, second])
    downloader = build_downloader(settings, engine)
    assert downloader.download([first.id])[0].result == Result.DOWNLOADED
    cdse.identity.revoke_all()
    assert downloader.download([second.id])[0].result == Result.DOWNLOADED
    assert cdse.identity.password_grants == 2


def test_the_token_never_leaves_the_download_host(engine, identity, cdse, settings) -> None:
    with FakeCdseDownload(identity) as elsewhere:
        # CDSE answering with a redirect to another host (here: same bytes, public): the token stays behind.
        product = cdse.add_product(4096, seed=42)
        target = elsewhere.add_public("copy.zip", 4096, seed=42)
        product.redirect_to = target.replace("127.0.0.1", "localhost")
        record(engine, [product])
        (outcome,) = build_downloader(settings, engine).download([product.id])
        assert outcome.result == Result.DOWNLOADED
        assert cdse.authorizations[-1].startswith("Bearer ")
        assert elsewhere.authorizations == [None]


def test_a_redirect_to_a_host_that_wants_a_token_fails_clearly(engine, identity, cdse, settings) -> None:
    with FakeCdseDownload(identity) as elsewhere:
        guarded = elsewhere.add_product(4096)
        product = cdse.add_product(4096, redirect_to=f"{elsewhere.url}/odata/v1/Products({guarded.id})/$value")
        record(engine, [product])
        (outcome,) = build_downloader(settings, engine).download([product.id])
        assert outcome.result == Result.FAILED and "redirected to" in outcome.error
        assert elsewhere.authorizations == [None]  # the token stayed behind; a refusal is not retried


def test_a_size_contradicting_the_record_fails_before_any_byte_is_stored(engine, cdse, settings) -> None:
    product = cdse.add_product(10_000)
    with engine.begin() as conn:
        record_granules(conn, [granule_record(0, id=product.id, size=10_001, checksum=product.md5)], ["sqs"])
    (outcome,) = build_downloader(settings, engine).download([product.id])
    assert outcome.result == Result.FAILED and "announces 10000 bytes, expected 10001" in outcome.error
    assert not settings.downloader.download_dir.exists() or all_files(settings.downloader.download_dir) == []


def test_plain_http_is_refused_for_remote_hosts(engine, make_settings, tmp_path) -> None:
    settings = make_settings(cdse_download_url="http://download.example.com", download_dir=tmp_path)
    with pytest.raises(ValueError, match="https only"):
        build_downloader(settings, engine)


def test_stac_item_stores_selected_bands_and_rewritten_item(engine, cdse, settings) -> None:
    b04 = cdse.add_public("B04.tif", 70_000, seed=4)
    b08 = cdse.add_public("B08.tif", 90_000, seed=8)
    item = {
        "type": "Feature",
        "id": "S2B_33UUP_20240912_0_L2A",
        "collection": "sentinel-2-l2a",
        "assets": {
            "red": {"href": b04, "type": "image/tiff; application=geotiff"},
            "nir": {"href": b08},
            "visual": {"href": "https://example.com/TCI.tif"},
        },
    }
    granule = granule_record(
        0,
        id="sentinel-2-l2a/S2B_33UUP_20240912_0_L2A",
        source="stac",
        filename="S2B_33UUP_20240912_0_L2A",
        download_url="https://example.com/item",
        size=None,
        checksum=None,
        blake3=None,
        collection="sentinel-2-l2a",
        assets={"red": b04, "nir": b08},
        item=item,
    )
    with engine.begin() as conn:
        record_granules(conn, [granule], ["sqs"])
    (outcome,) = build_downloader(settings, engine).download([granule.id])
    assert outcome.result == Result.DOWNLOADED, outcome.error
    root = settings.downloader.download_dir
    prefix = "sentinel-2-l2a/S2B_33UUP_20240912_0_L2A"
    assert all_files(root) == [f"{prefix}/S2B_33UUP_20240912_0_L2A.json", f"{prefix}/nir.tif", f"{prefix}/red.tif"]
    assert (root / prefix / "red.tif").read_bytes() == b"".join(synthetic_bytes(4, 70_000))
    stored = json.loads((root / prefix / "S2B_33UUP_20240912_0_L2A.json").read_text())
    assert stored["assets"]["red"]["href"] == (root / prefix / "red.tif").as_uri()
    assert stored["assets"]["nir"]["href"] == (root / prefix / "nir.tif").as_uri()
    assert stored["assets"]["visual"]["href"] == "https://example.com/TCI.tif"  # not selected: untouched
    assert rows(engine)[granule.id]["object_key"] == f"{prefix}/S2B_33UUP_20240912_0_L2A.json"
    # No token is sent for public assets.
    assert all(auth is None for auth in cdse.authorizations)


def test_stac_asset_that_fails_leaves_no_item(engine, cdse, settings) -> None:
    granule = granule_record(
        0,
        id="c/item-1",
        source="stac",
        collection="c",
        assets={"red": f"{cdse.url}/public/missing.tif"},
        item={"id": "item-1", "assets": {}},
    )
    with engine.begin() as conn:
        record_granules(conn, [granule], ["sqs"])
    (outcome,) = build_downloader(settings, engine).download([granule.id])
    assert outcome.result == Result.FAILED and "404" in outcome.error
    assert not settings.downloader.download_dir.exists() or all_files(settings.downloader.download_dir) == []


@pytest.fixture
def s3(aws_env, unique_name):
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=unique_name)
        yield client


def test_s3_multipart_upload_is_verified_and_aborted_on_mismatch(engine, cdse, settings, s3, unique_name) -> None:
    large = cdse.add_product(2 * PART_SIZE + 12345)  # three parts
    empty = cdse.add_product(0)
    corrupt = cdse.add_product(PART_SIZE + 1, corrupt=True)
    dropped = cdse.add_product(PART_SIZE + 100, drop_at=PART_SIZE + 50)  # after one part was uploaded
    record(engine, [large, empty, corrupt, dropped])
    downloader = build_downloader(settings, engine, storage=S3Storage(unique_name, client=s3))
    outcomes = {o.granule_id: o for o in downloader.download([large.id, empty.id, corrupt.id, dropped.id])}
    assert outcomes[large.id].result == outcomes[empty.id].result == outcomes[dropped.id].result == Result.DOWNLOADED
    assert outcomes[corrupt.id].result == Result.FAILED
    body = s3.get_object(Bucket=unique_name, Key=outcomes[large.id].object_key)["Body"].read()
    assert len(body) == large.size and md5_of(body) == large.md5
    assert s3.head_object(Bucket=unique_name, Key=outcomes[empty.id].object_key)["ContentLength"] == 0
    keys = [obj["Key"] for obj in s3.list_objects_v2(Bucket=unique_name).get("Contents", [])]
    assert sorted(keys) == sorted(outcomes[p.id].object_key for p in (large, empty, dropped))
    assert s3.head_object(Bucket=unique_name, Key=outcomes[dropped.id].object_key)["ContentLength"] == dropped.size
    assert s3.list_multipart_uploads(Bucket=unique_name).get("Uploads", []) == []
    # Already stored: one HEAD, no transfer.
    assert downloader.download([large.id])[0].result == Result.SKIPPED and large.transfers == 1


def test_s3_unavailable_fails_the_granule_not_the_run(engine, cdse, settings, s3) -> None:
    product = cdse.add_product(1000)
    record(engine, [product])
    (outcome,) = build_downloader(settings, engine, storage=S3Storage("no-such-bucket", client=s3)).download(
        [product.id]
    )
    assert outcome.result == Result.FAILED and "NoSuchBucket" in outcome.error
    assert rows(engine)[product.id]["download_error"] == outcome.error


@pytest.mark.unit
def test_object_keys_are_safe_paths() -> None:
    assert objects.object_key({"id": "abc", "filename": "S2A_X.SAFE", "sensing_start": None}) == "abc/S2A_X.SAFE.zip"
    for bad in ("..", "a/b", ""):
        with pytest.raises(ValueError):
            objects.object_key({"id": "abc", "filename": bad, "sensing_start": None})
        with pytest.raises(ValueError):
            objects.object_key({"id": bad, "filename": "S2A_X.SAFE", "sensing_start": None})
    with pytest.raises(ValueError):
        objects.asset_keys({"id": "c/../x", "source": "stac", "collection": "c", "assets": {"b": "https://x/y"}})
    with pytest.raises(ValueError):
        LocalStorage(Path("/tmp/root")).writer("../escape", "text/plain")
    assert check_url("http://127.0.0.1:9/x", "t") == "http://127.0.0.1:9/x"
    for refused in ("http://example.com/x", "ftp://example.com/x", "/relative"):
        with pytest.raises(ValueError):
            check_url(refused, "t")


@pytest.mark.parametrize("remove", [False, True])
def test_a_deleted_granule_is_not_downloaded_and_optionally_removed(
    engine, cdse, settings, make_settings, remove
) -> None:
    import datetime as dt

    from db import DeletionRecord, record_deletions
    from link_fetcher.downloader.reconcile import reconcile

    stored, never = cdse.add_product(100_000), cdse.add_product(100_000)
    record(engine, [stored, never])
    downloader = build_downloader(
        settings.model_copy(
            update={"downloader": settings.downloader.model_copy(update={"delete_downloaded_on_deletion": remove})}
        ),
        engine,
    )
    assert downloader.download([stored.id])[0].result == Result.DOWNLOADED
    key = rows(engine)[stored.id]["object_key"]
    cdse_requests = len(cdse.requests)
    recorded = rows(engine)
    with engine.begin() as conn:
        deletions = [
            DeletionRecord(
                id=p.id,
                filename=recorded[p.id]["filename"],  # the recorded name, or the deletion is not believed
                deleted_at=dt.datetime(2024, 9, 14, tzinfo=dt.UTC),
                deletion_cause="Corrupted product",
                download_url="https://d",
            )
            for p in (stored, never)
        ]
        record_deletions(conn, deletions, ["sqs"])

    outcomes = downloader.download([stored.id, never.id])

    assert [o.result for o in outcomes] == [Result.DELETED, Result.DELETED] and all(o.ok for o in outcomes)
    assert len(cdse.requests) == cdse_requests  # nothing fetched from CDSE
    assert (settings.downloader.download_dir / key).exists() is not remove
    assert rows(engine)[stored.id]["downloaded"] is not remove
    assert not rows(engine)[never.id]["downloaded"]
    # Reconcile knows a deleted granule is not missing, whether its object was removed or not.
    report = reconcile(
        engine, downloader.storage, sink_names=["sqs"], requeue_after=dt.timedelta(0), now=dt.datetime.now(dt.UTC)
    )
    assert (report.missing, report.stale) == ([], [])

"""Real CDSE payloads (tests/fixtures/sources.md) and their one-field variants seen in the wild, through every
source: a search page (`fetch`), a push notification (`serve`/Lambda) and a STAC page (`stac-fetch`). The
invariant everywhere: the good neighbours are recorded (and delivered), the bad one is reported, and nothing
stored breaks a reader."""

from __future__ import annotations

import copy
import datetime as dt
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, text

from link_fetcher.cdse.products import load_allowed_tiles
from link_fetcher.cdse.search import CdseCatalogue
from link_fetcher.cli import main
from link_fetcher.fetching import DayFetcher
from link_fetcher.http import make_session
from link_fetcher.push import PushEndpoint
from link_fetcher.recording import Recorder
from link_fetcher.settings import PACKAGED_TILES_FILE, Settings
from tests.factories import FIXTURES
from tests.fakes.cdse_catalogue import FakeCatalogue, day_products
from tests.fakes.sqs_endpoint import SqsEndpoint
from tests.fakes.stac_api import FakeStacApi
from tests.push_support import PASSWORD, USERNAME, basic, encode, notification
from tests.schema import assert_valid_message

DAY = dt.date(2024, 9, 12)
TEST_NOTIFICATION = json.loads((FIXTURES / "cdse" / "push-test-notification.json").read_text())
CDSE_STAC_ITEMS = json.loads((FIXTURES / "cdse" / "stac-sentinel-2-l2a-items.json").read_text())["features"]


def granules(engine: Engine) -> dict[str, dict[str, Any]]:
    with engine.connect() as conn:
        return {row["id"]: dict(row) for row in conn.execute(text("SELECT * FROM granule")).mappings()}


def outbox_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(text("SELECT count(*) FROM outbox")).scalar_one()


def _at_plus_14(instant: str) -> str:
    """The same instant written at +14:00 (the end of a sensing interval that ends as it starts)."""
    value = dt.datetime.fromisoformat(instant).astimezone(dt.timezone(dt.timedelta(hours=14)))
    return value.isoformat(timespec="milliseconds")


# --- one-field variants of a real product ---------------------------------------------------------------
# Real shapes: recorded, read the way CDSE means them.
REAL_SHAPES: dict[str, Callable[[dict[str, Any]], None]] = {
    "empty checksum entry": lambda p: p.update(Checksum=[{}]),
    "checksum entry without Value": lambda p: p.update(Checksum=[{"Algorithm": "MD5"}]),
    "checksum entry without Algorithm": lambda p: p.update(Checksum=[{"Value": "700a3f2014ab3670408b94e4310924dd"}]),
    "not measured": lambda p: p.update(ContentLength=0, Checksum=[]),
    "no ContentLength": lambda p: p.pop("ContentLength"),
    "offline": lambda p: p.update(Online=False),
    "upper-case Id": lambda p: p.update(Id=p["Id"].upper()),
    "offset +14:00": lambda p: p["ContentDate"].update(End=_at_plus_14(p["ContentDate"]["Start"])),
}
# Malformed: skipped (polling), 400 naming the field (push); the field is the last part of the id.
MALFORMED: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "year 1 at +14:00": (lambda p: p["ContentDate"].update(End="0001-01-01T00:00:00+14:00"), "ContentDate.End"),
    "year 2400": (lambda p: p["ContentDate"].update(Start="2400-01-01T00:00:00Z"), "ContentDate.Start"),
    "no offset": (lambda p: p["ContentDate"].update(Start="2024-09-12T11:25:41.024"), "ContentDate.Start"),
    "offset +16:00": (lambda p: p.update(PublicationDate="2024-09-13T06:00:00+16:00"), "PublicationDate"),
    "Name null": (lambda p: p.update(Name=None), "Name"),
    "negative ContentLength": (lambda p: p.update(ContentLength=-1), "ContentLength"),
    "checksum Value a number": (lambda p: p.update(Checksum=[{"Algorithm": "MD5", "Value": 5}]), "Checksum[0].Value"),
    "Id with a slash": (lambda p: p.update(Id="../../etc/passwd"), "Id"),
}


def variant(product: dict[str, Any], change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    changed = copy.deepcopy(product)
    change(changed)
    return changed


# --- polling: one search page ---------------------------------------------------------------------------


def test_search_page_with_every_variant_records_the_rest_and_completes_the_day(engine: Engine, caplog) -> None:
    base = day_products(DAY, "S2A", len(REAL_SHAPES) + len(MALFORMED) + 4, allowed_share=1.0)
    changes = [*REAL_SHAPES.values(), *(change for change, _ in MALFORMED.values())]
    products = [variant(p, changes[i]) if i < len(changes) else p for i, p in enumerate(base)]
    good = products[: len(REAL_SHAPES)] + products[len(changes) :]
    with FakeCatalogue() as catalogue:
        catalogue.add(products)
        fetcher = DayFetcher(
            Recorder(engine),
            CdseCatalogue(catalogue.url, session=make_session(backoff=0.01, attempts=2)),
            allowed_tiles=load_allowed_tiles(PACKAGED_TILES_FILE),
            product_type="S2MSI1C",
            max_acquisition_age_days=30,
            download_url="https://download.example",
            page_size=7,  # several pages, the malformed ones among them
        )
        report = fetcher.fetch(DAY, "S2A")
    assert report.completed and report.fetched == len(products)
    # (a product at the paging cursor's instant is read twice, so counts may exceed the products)
    assert report.skipped_because["malformed"] >= len(MALFORMED)
    rows = granules(engine)
    assert set(rows) == {p["Id"].lower() for p in good}
    by_shape = dict(zip(REAL_SHAPES, (rows[p["Id"].lower()] for p in good), strict=False))
    assert by_shape["empty checksum entry"]["checksum"] is None and by_shape["empty checksum entry"]["blake3"] is None
    assert by_shape["checksum entry without Value"]["checksum"] is None
    assert by_shape["checksum entry without Algorithm"]["checksum"] is None
    assert by_shape["not measured"]["size"] is None and by_shape["no ContentLength"]["size"] is None
    assert by_shape["offline"]["online"] is False and by_shape["upper-case Id"]["online"] is True
    at_plus_14 = by_shape["offset +14:00"]
    assert at_plus_14["sensing_end"] == at_plus_14["sensing_start"]
    for name, (_, field) in MALFORMED.items():
        bad = products[len(REAL_SHAPES) + list(MALFORMED).index(name)]
        assert f"skipped malformed product {bad['Id']}: {field}: " in caplog.text, name


def test_fetch_cli_same_product_in_another_case_is_one_granule_and_a_malformed_one_is_reported(
    engine: Engine, cli_env, capsys
) -> None:
    products = day_products(DAY, "S2A", 3, allowed_share=1.0)
    shouted = variant(
        products[0], lambda p: p.update(Id=p["Id"].upper(), PublicationDate=products[2]["PublicationDate"])
    )
    nameless = variant(products[1], lambda p: p.update(Id=str(uuid.uuid4()), Name=None))
    with FakeCatalogue() as catalogue:
        catalogue.add([*products, shouted, nameless])
        cli_env.setenv("CDSE_CATALOGUE_URL", catalogue.url)
        assert main(["fetch", "--day", DAY.isoformat(), "--platform", "S2A"]) == 0
    assert set(granules(engine)) == {p["Id"] for p in products} and outbox_count(engine) == 3
    assert "2024-09-12 S2A: 1 of the skipped were malformed" in capsys.readouterr().out


# --- push --------------------------------------------------------------------------------------------------

AUTH = {"Authorization": basic()}


@pytest.fixture
def sqs(aws_env, monkeypatch: pytest.MonkeyPatch):
    with SqsEndpoint() as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint.url)
        yield endpoint


@pytest.fixture
def endpoint(engine: Engine, make_settings, sqs: SqsEndpoint) -> PushEndpoint:
    settings: Settings = make_settings(
        subscription_username=USERNAME,
        subscription_password=PASSWORD,
        to_download_queue_url=sqs.queue_url("q"),
        platforms="S2A,S2B",
    )
    endpoint = PushEndpoint.from_settings(settings, lambda: engine)
    endpoint.metrics.clear_metrics()
    return endpoint


def sent_bodies(sqs: SqsEndpoint) -> list[dict[str, Any]]:
    return [json.loads(message["Body"]) for message in sqs.fake.messages("q")]


@pytest.mark.parametrize("name", list(REAL_SHAPES))
def test_push_records_and_delivers_each_real_shape(engine, endpoint, sqs, name: str) -> None:
    body = notification()
    body["value"] = variant(body["value"], REAL_SHAPES[name])
    assert endpoint.handle(AUTH, encode(body)).status == 204
    (row,) = granules(engine).values()
    (message,) = sent_bodies(sqs)
    assert_valid_message(message)
    assert row["id"] == message["id"] == body["value"]["Id"].lower()
    assert message["online"] is body["value"].get("Online", True)
    assert message["size"] == (body["value"].get("ContentLength") or None)


@pytest.mark.parametrize("name", list(MALFORMED))
def test_push_of_a_malformed_product_is_a_400_naming_the_field(engine, endpoint, name: str) -> None:
    change, field = MALFORMED[name]
    body = notification()
    body["value"] = variant(body["value"], change)
    reply = endpoint.handle(AUTH, encode(body))
    assert reply.status == 400 and json.loads(reply.content())["error"].startswith(f"value.{field}: ")
    assert granules(engine) == {}


def test_push_array_records_the_good_neighbours_of_a_malformed_one(engine, endpoint, sqs, caplog) -> None:
    first, bad, last = notification(), notification(), notification()
    bad["value"]["ContentDate"]["End"] = "0001-01-01T00:00:00+14:00"
    reply = endpoint.handle(AUTH, encode([first, bad, last]))
    assert reply.status == 400
    assert json.loads(reply.content())["error"].startswith("[1].value.ContentDate.End: Value error, year 1 is outside")
    assert set(granules(engine)) == {first["value"]["Id"], last["value"]["Id"]}
    assert sorted(b["id"] for b in sent_bodies(sqs)) == sorted([first["value"]["Id"], last["value"]["Id"]])
    assert bad["value"]["Id"] in caplog.text or "malformed" in caplog.text
    # CDSE retries the array: nothing is recorded or delivered twice.
    assert endpoint.handle(AUTH, encode([first, bad, last])).status == 400
    assert len(sent_bodies(sqs)) == 2


def test_cdse_test_notification_is_accepted_and_filtered(engine, endpoint) -> None:
    """What CDSE sends when a subscription is created: `Value`, a non-UUID Id, `Checksum: [{}]`, Sentinel-1."""
    assert endpoint.handle(AUTH, encode(TEST_NOTIFICATION)).status == 204
    assert granules(engine) == {}


def test_push_then_poll_in_other_cases_is_one_granule(engine, endpoint, sqs) -> None:
    body = notification()
    upper = copy.deepcopy(body)
    upper["value"]["Id"] = body["value"]["Id"].upper()
    assert endpoint.handle(AUTH, encode(upper)).status == 204
    assert endpoint.handle(AUTH, encode(body)).status == 204
    assert list(granules(engine)) == [body["value"]["Id"].lower()] and len(sent_bodies(sqs)) == 1


# --- STAC (CDSE's STAC 1.1 items) -------------------------------------------------------------------------

STAC_COLLECTION = "sentinel-2-l2a"
STAC_BBOX = "-8.5,52.0,-8.0,52.5"
STAC_RANGE = "2026-06-28/2026-06-28"


def stac_variant(index: int, suffix: str, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    item = copy.deepcopy(CDSE_STAC_ITEMS[index])
    item["id"] = f"{item['id']}{suffix}"
    change(item)
    return item


@pytest.fixture
def stac_env(monkeypatch: pytest.MonkeyPatch, database_url: str, tmp_path: Path) -> pytest.MonkeyPatch:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("STAC_HTTP_ATTEMPTS", "2")
    for key in ("TO_DOWNLOAD_QUEUE_URL", "REDIS_URL", "STAC_WATCHES_FILE", "STAC_KEEP_UNKNOWN_CLOUD"):
        monkeypatch.delenv(key, raising=False)
    return monkeypatch


def test_stac_reads_cdse_items_and_skips_malformed_ones(engine: Engine, stac_env, caplog, capsys) -> None:
    no_platform = stac_variant(0, "_NOPLATFORM", lambda i: i["properties"].pop("platform"))
    no_cover = stac_variant(1, "_NOCOVER", lambda i: i["properties"].pop("eo:cloud_cover"))
    malformed = [
        (
            stac_variant(0, "_PUBLISHED2400", lambda i: i["properties"].update(published="2400-01-01T00:00:00Z")),
            "properties.published: year 2400 is outside 1900..2200",
        ),
        (
            stac_variant(0, "_OFFSET16", lambda i: i["properties"].update(end_datetime="2026-06-28T11:54:21+16:00")),
            "properties.end_datetime: UTC offset +16:00 is beyond ±14:00",
        ),
        (
            stac_variant(1, "_BADCREATED", lambda i: i["properties"].update(created="yesterday")),
            "properties.created: not an RFC 3339 timestamp",
        ),
        (stac_variant(1, "_ASSETS", lambda i: i.update(assets=["B04"])), "assets: not an object"),
    ]
    items = [*CDSE_STAC_ITEMS, no_platform, no_cover, *(item for item, _ in malformed)]
    with FakeStacApi(items, collections=(STAC_COLLECTION,)) as fake:
        argv = ["stac-fetch", "--api", fake.url, "--collection", STAC_COLLECTION, "--bbox", STAC_BBOX]
        assert main([*argv, "--datetime", STAC_RANGE, "--max-cloud", "90"]) == 0
    rows = {row["filename"]: row for row in granules(engine).values()}
    assert set(rows) == {item["id"] for item in [*CDSE_STAC_ITEMS, no_platform, no_cover]}
    assert {row["product_type"] for row in rows.values()} == {"S2MSI2A"}
    assert rows[no_platform["id"]]["platform"] == "S2A" and rows[CDSE_STAC_ITEMS[1]["id"]]["platform"] == "S2B"
    assert rows[no_cover["id"]]["cloud_cover"] is None  # unknown: kept by default
    assert rows[CDSE_STAC_ITEMS[0]["id"]]["tile_id"] == "29UNU"
    assert f"skipped {len(malformed)} malformed" in capsys.readouterr().out
    for item, problem in malformed:
        assert f"skipped malformed item {item['id']}: {problem}" in caplog.text


def test_stac_unknown_cloud_cover_dropped_when_configured(engine: Engine, stac_env) -> None:
    stac_env.setenv("STAC_KEEP_UNKNOWN_CLOUD", "false")
    no_cover = stac_variant(1, "_NOCOVER", lambda i: i["properties"].pop("eo:cloud_cover"))
    with FakeStacApi([*CDSE_STAC_ITEMS, no_cover], collections=(STAC_COLLECTION,)) as fake:
        argv = ["stac-fetch", "--api", fake.url, "--collection", STAC_COLLECTION, "--bbox", STAC_BBOX]
        assert main([*argv, "--datetime", STAC_RANGE, "--max-cloud", "90"]) == 0
    assert {row["filename"] for row in granules(engine).values()} == {item["id"] for item in CDSE_STAC_ITEMS}

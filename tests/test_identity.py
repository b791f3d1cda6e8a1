"""One product, one granule (SPEC §11) and the mission profile: a product's name from any source is one product;
products of another mission are filtered, never relabelled."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import threading
from typing import Any

import msgspec
import pytest
from sqlalchemy import Engine, text

from db import DeletionRecord, Source, record_deletions, record_granules
from db.status import status_document
from link_fetcher.cdse.deleted_products import DeletedProduct, to_deletion
from link_fetcher.cdse.notifications import InvalidNotification, parse_notifications
from link_fetcher.cdse.products import (
    CdseProduct,
    Criteria,
    ListedProduct,
    decode_listed_product,
    platform_of,
    to_record,
)
from link_fetcher.fetching.fetch import select_records
from link_fetcher.mission import MISSION, OTHER_MISSION
from link_fetcher.push import PushEndpoint
from link_fetcher.push.decisions import decide
from link_fetcher.recording import Recorder
from link_fetcher.stac.area import parse_bbox
from link_fetcher.stac.fetching import StacQuery, fetch_items, open_and_check
from link_fetcher.stac.items import to_record as stac_to_record
from link_fetcher.stac.timerange import TimeRange
from link_fetcher.timestamps import MALFORMED
from tests.factories import FIXTURES, PUSH_FIXTURE, cdse_product
from tests.fakes.stac_api import FakeStacApi, stac_item

NAME = "S2B_MSIL2A_20240901T100559_N0511_R022_T33UUP_20240901T145036"
SENSING = dt.datetime(2024, 9, 12, 11, 25, 41, tzinfo=dt.UTC)
NOW = SENSING + dt.timedelta(days=1)
CRITERIA = Criteria(
    allowed_tiles={"28PHQ"}, platforms={"S2A", "S2B", "S2C"}, product_type="S2MSI1C", max_acquisition_age=None
)
TEST_NOTIFICATION = json.loads((FIXTURES / "cdse" / "push-test-notification.json").read_text())


def sentinel_1_product() -> dict:
    """A Sentinel-1A product (CDSE's own test notification's) given every field the filters look at: an allowed
    tileId, the configured product type and serial `A`."""
    product = copy.deepcopy(TEST_NOTIFICATION["Value"])
    product["Name"] = product["Name"].removeprefix("test-notification-")
    product["Id"] = "0dd083d4-360e-4693-9791-1215da02c3a3"
    product["Attributes"] = [a for a in product["Attributes"] if a["Name"] != "productType"] + [
        {"Name": "productType", "Value": "S2MSI1C"},
        {"Name": "tileId", "Value": "28PHQ"},
    ]
    return product


# --- the mission profile ---------------------------------------------------------------------------------


@pytest.mark.unit
@pytest.mark.parametrize(
    ("value", "name"),
    [
        (NAME + ".SAFE", NAME),  # OData / push / pull `Name`, Earth Search `s2:product_uri`
        (NAME, NAME),  # a CDSE STAC item `id`
        ("S2B_33UUP_20240901_0_L2A", None),  # an Earth Search item id names no product
        ("S1A_IW_GRDH_1SDV_20240901T100559_20240901T100624_055000_06B3A1_1234.SAFE", None),
        ("S2A_MSIL1C_20200808T010311_N05_R045_T54PXA_20230413T212505.SAFE", None),
        ("S2A_MSIL1C_20200808T010311_N0500_R045_T54PXA", None),  # no discriminator
        (None, None),
        (42, None),
    ],
)
def test_the_product_name_from_every_source_form(value: object, name: str | None) -> None:
    assert MISSION.product_name_of(value) == name


@pytest.mark.unit
def test_a_names_parts_and_identity() -> None:
    parsed = MISSION.parse(NAME + ".SAFE")
    assert parsed is not None
    assert (parsed.platform, parsed.level, parsed.tile, parsed.baseline, parsed.orbit) == (
        "S2B",
        "L2A",
        "33UUP",
        "N0511",
        "R022",
    )
    assert parsed.identity == "S2B_MSIL2A_20240901T100559_R022_T33UUP"
    assert MISSION.identity(NAME) == parsed.identity
    reprocessed = "S2B_MSIL2A_20240901T100559_N0500_R022_T33UUP_20250101T000000"
    assert MISSION.identity(reprocessed) == parsed.identity and reprocessed != NAME
    assert MISSION.identity(None) is None and MISSION.identity("S2B_33UUP_20240901_0_L2A") is None


@pytest.mark.unit
def test_a_stac_items_product_name() -> None:
    earth_search = {"id": "S2B_33UUP_20240901_0_L2A", "properties": {"s2:product_uri": NAME + ".SAFE"}}
    cdse = {"id": NAME, "properties": {}}
    assert MISSION.product_name_of_item(earth_search) == NAME == MISSION.product_name_of_item(cdse)
    assert MISSION.product_name_of_item({"id": "LC08_L2SP_196027_20240901_02_T1", "properties": None}) is None


@pytest.mark.unit
def test_platforms_are_checked_in_one_place() -> None:
    assert MISSION.known_platforms([" s2b", "S2A", "s2b"]) == ["S2B", "S2A"]
    with pytest.raises(ValueError, match=r"^unknown platform\(s\) S2Z, S3A; expected some of S2A, S2B, S2C$"):
        MISSION.known_platforms(["S3A", "S2A", "s2z"])
    with pytest.raises(ValueError, match="at least one platform"):
        MISSION.known_platforms([])


@pytest.mark.unit
def test_platforms_serials_and_stac_forms() -> None:
    assert MISSION.platforms == ("S2A", "S2B", "S2C")
    assert MISSION.serial("S2C") == "C" and MISSION.platform("B") == "S2B"
    assert MISSION.stac_platform("sentinel-2a") == "S2A" and MISSION.stac_platform("Sentinel2C") == "S2C"
    assert MISSION.stac_platform("sentinel-1a") is None and MISSION.stac_platform("landsat-8") is None
    assert MISSION.stac_product_type("sentinel-2-l2a") == "S2MSI2A"
    assert MISSION.stac_product_type("sentinel-2-l1c") == "S2MSI1C"
    assert MISSION.stac_product_type("landsat-c2-l2") is None
    assert MISSION.platform_in_name("S2B_33UUP_20240901_0_L2A") == "S2B"
    assert MISSION.platform_in_name("S1A_IW_GRDH_x") is None


@pytest.mark.unit
@pytest.mark.parametrize(
    ("short_name", "name", "other"),
    [
        ("SENTINEL-1", NAME, True),  # the attribute decides
        ("SENTINEL-2", NAME, False),
        ("sentinel-2", "anything", False),
        (None, "S1C_IW_SLC__1SDV_20250101T000000_x.SAFE", True),  # without it, the name's platform
        (None, "S5P_OFFL_L2__NO2____20240901T000000_x.nc", True),
        (None, NAME, False),
        (None, "a-name-without-platform", False),
    ],
)
def test_another_missions_product(short_name: str | None, name: str, other: bool) -> None:
    assert MISSION.is_other_mission(short_name, name) is other


# --- another mission is filtered, never relabelled -------------------------------------------------------


@pytest.mark.unit
def test_a_sentinel_1_product_gets_no_sentinel_2_platform() -> None:
    product = CdseProduct.model_validate(sentinel_1_product())
    assert platform_of(product) is None  # serial `A` of SENTINEL-1 is not S2A


@pytest.mark.unit
def test_a_sentinel_1_product_is_filtered_on_poll_with_its_own_reason() -> None:
    raw = json.dumps(sentinel_1_product()).encode()
    products = [decode_listed_product(raw)]
    assert isinstance(products[0], ListedProduct)
    kept, rejected = select_records(products, CRITERIA, "https://download.example", NOW)
    assert kept == [] and rejected == {OTHER_MISSION: 1}


@pytest.mark.unit
def test_a_sentinel_1_notification_is_filtered_on_push_with_its_own_reason() -> None:
    body = dict(PUSH_FIXTURE, value=sentinel_1_product())
    notification = parse_notifications(json.dumps(body).encode()).notifications[0]
    decision = decide(notification, CRITERIA, NOW, "https://download.example")
    assert decision.reason == OTHER_MISSION
    test = parse_notifications(json.dumps(TEST_NOTIFICATION).encode()).notifications[0]
    assert decide(test, CRITERIA, NOW, "https://download.example").reason == OTHER_MISSION


# --- sensing start after end is malformed ----------------------------------------------------------------


def _reversed_sensing() -> dict:
    product = cdse_product(tile="28PHQ")
    product["ContentDate"] = {"Start": "2024-09-12T11:25:41.024Z", "End": "2024-09-12T11:25:40.000Z"}
    return product


@pytest.mark.unit
def test_sensing_start_after_end_is_malformed_on_poll() -> None:
    decoded = decode_listed_product(json.dumps(_reversed_sensing()).encode())
    assert not isinstance(decoded, ListedProduct)
    assert decoded.field == "ContentDate.End" and "before its start" in decoded.error
    _, rejected = select_records([decoded], CRITERIA, "https://download.example", NOW)
    assert rejected == {MALFORMED: 1}
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(json.dumps(_reversed_sensing()), type=ListedProduct)


@pytest.mark.unit
def test_sensing_start_after_end_is_a_bad_push() -> None:
    body = dict(PUSH_FIXTURE, value=_reversed_sensing())
    with pytest.raises(InvalidNotification, match=r"value\.ContentDate.*before its start"):
        parse_notifications(json.dumps(body).encode())
    equal = cdse_product()
    equal["ContentDate"]["End"] = equal["ContentDate"]["Start"]
    assert parse_notifications(json.dumps(dict(PUSH_FIXTURE, value=equal)).encode()).notifications


# --- one product, one granule, whichever sources bring it (against PostgreSQL) ------------------------------

SINKS = ["sqs", "redis"]
POLICIES = ("deliver", "skip", "replace")
SENSED = dt.datetime(2024, 9, 12, 11, 25, 41, 24000, tzinfo=dt.UTC)
WINDOW = TimeRange(SENSED - dt.timedelta(hours=1), SENSED + dt.timedelta(hours=1))


def odata_product(**changes: Any) -> dict[str, Any]:
    """One L2A product as the OData search (and push, and PULL) give it."""
    return cdse_product(**{"product_type": "S2MSI2A", "sensing": SENSED, **changes})


def record_odata(engine: Engine, product: dict[str, Any], policy: str) -> list[str]:
    """What the poller does with a page holding `product` (select, then one recording statement)."""
    decoded = decode_listed_product(json.dumps(product).encode())
    records, rejected = select_records([decoded], POLL_CRITERIA, "https://download.example", NOW)
    assert rejected == {}
    with engine.begin() as conn:
        return record_granules(conn, records, SINKS, reprocessed_policy=policy)


def cdse_stac_item(name: str) -> dict[str, Any]:
    """The product as CDSE's STAC API gives it: the item id is the product name without `.SAFE`."""
    item = stac_item("sentinel-2-l2a", sensed=SENSED, tile="28PHQ", platform="sentinel-2a")
    item["id"] = name.removesuffix(".SAFE")
    del item["properties"]["s2:product_type"]
    item["properties"]["product:type"] = "S2MSI2A"
    return item


def earth_search_item(name: str) -> dict[str, Any]:
    """The product as Earth Search (or Planetary Computer) gives it: its own id, the name in `s2:product_uri`."""
    item = stac_item("sentinel-2-l2a", sensed=SENSED, tile="28PHQ", platform="sentinel-2a", sequence=0)
    item["properties"]["s2:product_uri"] = name
    return item


def record_stac(engine: Engine, item: dict[str, Any], policy: str, *, own_deliveries: bool = False) -> int:
    """What a STAC watch does with an area holding `item`; how many granules it recorded."""
    with FakeStacApi([item], collections=("sentinel-2-l2a",)) as fake:
        query = StacQuery(
            fake.url, ("sentinel-2-l2a",), parse_bbox("10,45,11,46"), WINDOW, own_deliveries=own_deliveries
        )
        (checked,) = open_and_check([("", query)], attempts=1)
        recorder = Recorder(engine, sink_names=SINKS, reprocessed_policy=policy)
        (summary,) = fetch_items(recorder, checked.api, query, page_size=10)
    return summary.recorded


def rows(engine: Engine) -> list[dict[str, Any]]:
    columns = "id, source, other_sources, product_name, supersedes, deleted_at, own_deliveries"
    with engine.connect() as conn:
        return [
            dict(row) for row in conn.execute(text(f"SELECT {columns} FROM granule ORDER BY first_seen, id")).mappings()
        ]


def deliveries(engine: Engine) -> list[tuple[str, str, str]]:
    with engine.connect() as conn:
        result = conn.execute(text("SELECT granule_id, sink, event FROM outbox ORDER BY granule_id, sink, event"))
        return [tuple(row) for row in result]


POLL_CRITERIA = Criteria(allowed_tiles={"28PHQ"}, platforms=None, product_type="S2MSI2A", max_acquisition_age=None)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("odata_first", [True, False], ids=["odata-first", "stac-first"])
def test_one_product_from_odata_cdse_stac_and_earth_search_is_one_granule(
    engine: Engine, policy: str, odata_first: bool
) -> None:
    product = odata_product()
    name = product["Name"]
    steps = [
        lambda: record_odata(engine, product, policy),
        lambda: record_stac(engine, cdse_stac_item(name), policy),
        lambda: record_stac(engine, earth_search_item(name), policy),
    ]
    for step in steps if odata_first else steps[::-1]:
        step()
        step()  # seen again by the same source: nothing more
    (granule,) = rows(engine)
    first = "search" if odata_first else "stac"
    assert granule["product_name"] == name.removesuffix(".SAFE")
    assert granule["source"] == first and sorted(granule["other_sources"]) == sorted({"search", "stac"} - {first})
    assert granule["supersedes"] is None and granule["deleted_at"] is None
    assert deliveries(engine) == [(granule["id"], sink, "found") for sink in sorted(SINKS)]


def test_the_earth_search_item_of_a_product_recorded_from_odata_fills_in_nothing_else(engine: Engine) -> None:
    product = odata_product()
    record_odata(engine, product, "replace")
    assert record_stac(engine, earth_search_item(product["Name"]), "replace") == 0
    with engine.connect() as conn:
        status = status_document(conn)["sources"]
    assert status == [{"source": "search", "also": ["stac"], "granules": 1}]


def test_a_product_of_another_mission_is_never_recorded_from_push(engine: Engine, make_settings) -> None:
    settings = make_settings(subscription_username="u", subscription_password="p", platforms="S2A,S2B,S2C")
    endpoint = PushEndpoint.from_settings(settings, lambda: engine)
    endpoint.metrics.clear_metrics()
    product = sentinel_1_product()
    product["ContentDate"] = {"Start": NOW.isoformat(), "End": NOW.isoformat()}
    body = json.dumps(dict(PUSH_FIXTURE, value=product, ProductId=product["Id"])).encode()
    auth = {"Authorization": "Basic " + base64.b64encode(b"u:p").decode()}
    assert endpoint.handle(auth, body).status == 204
    assert rows(engine) == [] and deliveries(engine) == []
    assert OTHER_MISSION in endpoint.metrics.metric_set


# --- reprocessing across sources ---------------------------------------------------------------------------


def reprocessing_of(product: dict[str, Any]) -> str:
    """Another processing of the same acquisition: another baseline and discriminator, the same identity."""
    parts = product["Name"].split("_")
    parts[3], parts[6] = "N0599", "20250101T000000.SAFE"
    return "_".join(parts)


def test_a_reprocessing_from_stac_of_a_product_polled_replaces_it(engine: Engine) -> None:
    product = odata_product()
    (earlier,) = record_odata(engine, product, "replace")
    assert record_stac(engine, earth_search_item(reprocessing_of(product)), "replace") == 1
    by_id = {row["id"]: row for row in rows(engine)}
    (later,) = set(by_id) - {earlier}
    assert by_id[later]["supersedes"] == earlier
    assert by_id[earlier]["deleted_at"] is not None
    events = deliveries(engine)
    assert [(sink, event) for granule_id, sink, event in events if granule_id == earlier] == [
        ("redis", "deleted"),
        ("redis", "found"),
        ("sqs", "deleted"),
        ("sqs", "found"),
    ]


@pytest.mark.parametrize("policy", POLICIES)
def test_a_reprocessing_polled_of_a_product_from_stac_honours_the_policy(engine: Engine, policy: str) -> None:
    product = odata_product()
    record_stac(engine, cdse_stac_item(reprocessing_of(product)), policy)
    (earlier,) = [row["id"] for row in rows(engine)]
    (later,) = record_odata(engine, product, policy)
    by_id = {row["id"]: row for row in rows(engine)}
    assert by_id[later]["supersedes"] == earlier
    found_later = [sink for granule_id, sink, event in deliveries(engine) if granule_id == later]
    assert found_later == ([] if policy == "skip" else sorted(SINKS))
    assert (by_id[earlier]["deleted_at"] is not None) is (policy == "replace")


def test_a_watch_with_its_own_deliveries_delivers_its_item_beside_the_polled_granule(engine: Engine) -> None:
    product = odata_product()
    (polled,) = record_odata(engine, product, "replace")
    assert record_stac(engine, earth_search_item(product["Name"]), "replace", own_deliveries=True) == 1
    assert record_stac(engine, earth_search_item(product["Name"]), "replace", own_deliveries=True) == 0
    by_id = {row["id"]: row for row in rows(engine)}
    (own,) = set(by_id) - {polled}
    assert by_id[own]["own_deliveries"] and by_id[own]["product_name"] == by_id[polled]["product_name"]
    assert by_id[own]["supersedes"] is None and by_id[polled]["deleted_at"] is None  # not a reprocessing
    assert by_id[polled]["other_sources"] == []  # delivered on its own, not merged
    assert deliveries(engine) == sorted((granule, sink, "found") for granule in (polled, own) for sink in SINKS)
    with engine.connect() as conn:
        (assets,) = conn.execute(text("SELECT assets FROM granule WHERE id = :id"), {"id": own}).scalars()
    assert assets  # its message carries them


# --- two sources racing on the same products --------------------------------------------------------------


def test_two_sources_racing_on_the_same_products_make_one_granule_each(engine: Engine) -> None:
    products = [odata_product(tile="28PHQ", sensing=SENSED + dt.timedelta(minutes=i)) for i in range(200)]
    polled = [
        to_record(CdseProduct.model_validate(p), source=Source.SEARCH, download_base_url="https://d") for p in products
    ]
    from_stac = [
        stac_to_record(cdse_stac_item(p["Name"]), collection="sentinel-2-l2a", bands=(), api_url="https://stac")
        for p in products
    ]
    for round_ in range(3):
        batches = [polled[round_::3], from_stac[round_::3][::-1]]  # the second in the opposite order
        start = threading.Barrier(2)
        results: list[list[str]] = [[], []]

        def record(side: int, batches: list = batches, start: threading.Barrier = start, results=results) -> None:
            with engine.begin() as conn:  # each thread its own connection of the pool
                conn.execute(text("SELECT 1"))
                start.wait()
                results[side] = record_granules(conn, batches[side], SINKS)

        threads = [threading.Thread(target=record, args=(side,)) for side in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(results[0]) + len(results[1]) == len(batches[0])  # each product recorded by one side
    granules = rows(engine)
    assert len(granules) == len(products)
    assert all(sorted([g["source"], *g["other_sources"]]) == ["search", "stac"] for g in granules)
    assert len(deliveries(engine)) == len(products) * len(SINKS)
    assert {granule_id for granule_id, _, _ in deliveries(engine)} == {g["id"] for g in granules}


# --- deletions find the product whichever source recorded it ----------------------------------------------


def deletion_of(product: dict[str, Any]) -> DeletionRecord:
    """CDSE's deletion of `product` (its Id and Name), an hour after its publication."""
    deleted = DeletedProduct.model_validate(
        {
            "Id": product["Id"],
            "Name": product["Name"],
            "DeletionDate": dt.datetime.fromisoformat(product["PublicationDate"]) + dt.timedelta(hours=1),
            "DeletionCause": "Corrupted product",
        }
    )
    criteria = Criteria(allowed_tiles={"28PHQ"}, platforms={"S2A", "S2B", "S2C"}, product_type="S2MSI2A")
    return to_deletion(deleted, download_base_url="https://download.example", criteria=criteria)


def test_a_cdse_deletion_of_a_product_recorded_from_stac_deletes_that_granule(engine: Engine) -> None:
    product = odata_product()
    record_stac(engine, cdse_stac_item(product["Name"]), "deliver")
    record_odata(engine, product, "deliver")  # the same granule
    (granule,) = rows(engine)
    with engine.begin() as conn:
        outcome = record_deletions(conn, [deletion_of(product)], SINKS)
    assert outcome.announced == [granule["id"]] and outcome.remembered == []
    (deleted,) = rows(engine)
    assert deleted["deleted_at"] is not None
    assert [(sink, event) for _, sink, event in deliveries(engine)] == [
        ("redis", "deleted"),
        ("redis", "found"),
        ("sqs", "deleted"),
        ("sqs", "found"),
    ]


def test_a_remembered_deletion_keeps_the_products_stac_item_out(engine: Engine) -> None:
    product = odata_product()
    with engine.begin() as conn:
        outcome = record_deletions(conn, [deletion_of(product)], SINKS)
    assert outcome.remembered == [product["Id"]]
    assert record_stac(engine, earth_search_item(product["Name"]), "deliver") == 0
    assert deliveries(engine) == []

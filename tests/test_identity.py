"""One product, one granule (SPEC §11) and the mission profile: a product's name from any source is one product;
products of another mission are filtered, never relabelled."""

from __future__ import annotations

import copy
import datetime as dt
import json

import msgspec
import pytest

from link_fetcher.fetching.fetch import select_records
from link_fetcher.mission import MISSION, OTHER_MISSION
from link_fetcher.products import (
    MALFORMED,
    CdseProduct,
    Criteria,
    ListedProduct,
    decode_listed_product,
    platform_of,
)
from link_fetcher.push.decisions import decide
from link_fetcher.push.notifications import InvalidNotification, parse_notifications
from tests.factories import FIXTURES, PUSH_FIXTURE, cdse_product

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

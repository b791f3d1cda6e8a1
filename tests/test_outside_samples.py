"""Real payloads written by others (tests/fixtures/sources.md), read field by field as each source reads them:
an OData search page as the poller does, a push or PULL notification as the endpoint does, a STAC item as a
watch does. For each product: its ESA product name, platform, tile, product type, sensing start and end,
publication, whether it has a footprint, and whether it is kept or which reason filters it (SPEC §2, §3, §11)."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from db import GranuleRecord
from link_fetcher.cdse.notifications import parse_notifications
from link_fetcher.cdse.products import (
    Criteria,
    ListedProduct,
    decode_listed_product,
    load_allowed_tiles,
    to_record,
)
from link_fetcher.fetching.fetch import SOURCE as POLL_SOURCE
from link_fetcher.fetching.fetch import select_records
from link_fetcher.mission import MISSION, OTHER_MISSION
from link_fetcher.push.decisions import decide
from link_fetcher.settings import PACKAGED_TILES_FILE
from link_fetcher.stac import items as stac_items
from link_fetcher.stac.items import ItemCriteria, item_problem, rejection_reason, sensing_time
from link_fetcher.stac.timerange import TimeRange
from link_fetcher.timestamps import MALFORMED
from tests.factories import FIXTURES

pytestmark = pytest.mark.unit

DOWNLOAD = "https://download.dataspace.copernicus.eu"
API = "https://stac.example/v1"
TILES = load_allowed_tiles(PACKAGED_TILES_FILE)
PLATFORMS = ("S2A", "S2B", "S2C")
# The poller puts recency in its query; push and PULL check it (SPEC §3), here one hour after publication.
POLL = Criteria(allowed_tiles=TILES, platforms=PLATFORMS, product_type="S2MSI1C")
PUSH = Criteria(
    allowed_tiles=TILES, platforms=PLATFORMS, product_type="S2MSI1C", max_acquisition_age=dt.timedelta(days=30)
)


def utc(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def load(path: str) -> Any:
    return json.loads((FIXTURES / path).read_text(encoding="utf-8"))


@dataclasses.dataclass(frozen=True)
class Seen:
    """What a source makes of one product."""

    platform: str | None
    tile: str | None
    product_type: str | None
    sensing_start: dt.datetime | None
    sensing_end: dt.datetime | None
    published: dt.datetime | None
    footprint: bool
    reason: str | None  # None: kept

    @classmethod
    def of(cls, record: GranuleRecord, footprint: bool, reason: str | None) -> Seen:
        return cls(
            record.platform,
            record.tile_id,
            record.product_type,
            record.sensing_start,
            record.sensing_end,
            record.published,
            footprint,
            reason,
        )


def expected(
    platform: str | None,
    tile: str | None,
    product_type: str | None,
    sensing: tuple[str, str] | str,
    published: str | None,
    *,
    footprint: bool = True,
    reason: str | None = None,
) -> Seen:
    start, end = (sensing, sensing) if isinstance(sensing, str) else sensing
    return Seen(
        platform, tile, product_type, utc(start), utc(end), utc(published) if published else None, footprint, reason
    )


# --- OData search pages, as the poller reads them ----------------------------------------------------------


def odata_products(path: str) -> list[dict[str, Any]]:
    return list(load(path)["value"])


def polled(product: dict[str, Any], criteria: Criteria = POLL) -> Seen:
    listed = decode_listed_product(msgspec.json.encode(product))
    assert isinstance(listed, ListedProduct), listed
    records, rejected = select_records([listed], criteria, DOWNLOAD, utc(product["PublicationDate"]))
    record = to_record(listed, source=POLL_SOURCE, download_base_url=DOWNLOAD)
    reason = None if records else next(iter(rejected))
    return Seen.of(record, product.get("GeoFootprint") is not None, reason)


ODATA = "cdse/odata-products-s2-l1c.json"
S1_GRD = "cdse/odata-products-s1-grd.json"
S1_ORBIT = "cdse/odata-products-s1-aux-orbit.json"

POLLED: list[Any] = [
    # SPEC §9's reprocessing example: 54PXA is not one of the HLS tiles.
    pytest.param(
        ODATA,
        0,
        expected(
            "S2A",
            "54PXA",
            "S2MSI1C",
            "2020-08-08T01:03:11.024Z",
            "2023-08-23T09:26:23.105134Z",
            reason="tile_not_allowed",
        ),
        id="cdse-odata-s2-54PXA",
    ),
    pytest.param(
        ODATA,
        1,
        expected("S2A", "55PBR", "S2MSI1C", "2020-08-08T01:03:11.024Z", "2023-08-23T08:24:44.869562Z"),
        id="cdse-odata-s2-55PBR",
    ),
    # Sentinel-1C and Sentinel-1A: serial C / A must not make S2C / S2A.
    pytest.param(
        S1_GRD,
        0,
        expected(
            None,
            None,
            "IW_GRDH_1S",
            ("2026-01-01T00:10:52.074000Z", "2026-01-01T00:11:17.073000Z"),
            "2026-01-01T01:15:07.620991Z",
            reason=OTHER_MISSION,
        ),
        id="terradue-odata-s1c-grd",
    ),
    pytest.param(
        S1_GRD,
        1,
        expected(
            None,
            None,
            "IW_GRDH_1S",
            ("2026-01-01T01:25:08.378612Z", "2026-01-01T01:25:42.265663Z"),
            "2026-01-01T03:58:27.523638Z",
            reason=OTHER_MISSION,
        ),
        id="terradue-odata-s1a-grd",
    ),
    # An orbit file: no Attributes, null footprints, EvictionDate "".
    pytest.param(
        S1_ORBIT,
        0,
        expected(
            None,
            None,
            None,
            ("2019-12-30T22:59:42.000Z", "2020-01-01T00:59:42.000Z"),
            "2023-10-25T14:34:15.278Z",
            footprint=False,
            reason=OTHER_MISSION,
        ),
        id="sentineleof-odata-s1a-orbit",
    ),
]


@pytest.mark.parametrize(("path", "index", "seen"), POLLED)
def test_odata_search_page_products(path: str, index: int, seen: Seen) -> None:
    assert polled(odata_products(path)[index]) == seen


def test_sentinel_1_with_an_allowed_tile_and_a_configured_type_is_filtered_as_another_mission() -> None:
    """The issue's case: a Sentinel-1 product given a `tileId` on the allow-list and the configured product
    type (one-field variants of the real one) is filtered as another mission's, never recorded as S2C."""
    product = copy.deepcopy(odata_products(S1_GRD)[0])
    product["Attributes"] = [a for a in product["Attributes"] if a["Name"] != "productType"] + [
        {"Name": "tileId", "Value": "55PBR"},
        {"Name": "productType", "Value": "S2MSI1C"},
    ]
    assert (polled(product).platform, polled(product).reason) == (None, OTHER_MISSION)


# --- push and PULL notifications ---------------------------------------------------------------------------


def notified(body: bytes) -> list[Seen]:
    parsed = parse_notifications(body)
    assert parsed.malformed == []
    seen: list[Seen] = []
    for notification in parsed.notifications:
        assert notification.product is not None
        decision = decide(notification, PUSH, notification.product.publication_date + dt.timedelta(hours=1), DOWNLOAD)
        raw = json.loads(body)
        one = raw[len(seen)] if isinstance(raw, list) else raw
        value = one.get("value", one.get("Value"))
        footprint = value.get("GeoFootprint") is not None or bool(value.get("Footprint"))
        seen.append(Seen.of(decision.record, footprint, decision.reason))
    return seen


def test_cdse_push_notification() -> None:
    assert notified((FIXTURES / "push-granule-created.json").read_bytes()) == [
        expected("S2A", "28PHQ", "S2MSI1C", "2024-09-12T11:25:41.024Z", "2024-09-12T14:52:06.118Z")
    ]


def test_cdse_test_notification_is_sentinel_1() -> None:
    assert notified((FIXTURES / "cdse/push-test-notification.json").read_bytes()) == [
        expected(
            None,
            None,
            "S3_GRDH_1S-COG",
            ("2023-08-01T15:29:12.689Z", "2023-08-01T15:29:31.839Z"),
            "2023-08-04T06:44:27.481Z",
            reason=OTHER_MISSION,
        )
    ]


def test_cdse_documented_pull_read_of_sentinel_1() -> None:
    """CDSE's documented PULL answer: two Sentinel-1A SLC products without Attributes (only their names say
    Sentinel-1); the second's ProductName ends `.SAFEE`, which changes nothing: the product is `value`."""
    assert notified((FIXTURES / "cdse/pull-read-s1-slc.json").read_bytes()) == [
        expected(
            None,
            None,
            None,
            ("2024-03-13T05:46:26.715Z", "2024-03-13T05:46:53.707Z"),
            "2024-03-13T06:56:59.293Z",
            reason=OTHER_MISSION,
        ),
        expected(
            None,
            None,
            None,
            ("2024-03-13T09:27:16.441Z", "2024-03-13T09:27:32.471Z"),
            "2024-03-13T11:23:27.577Z",
            reason=OTHER_MISSION,
        ),
    ]


# --- STAC items, as a watch reads them --------------------------------------------------------------------


def stac_seen(item: dict[str, Any], collection: str) -> Seen:
    """The item searched in the day window that holds it, as a watch of `collection` would."""
    sensed = sensing_time(item)
    assert sensed is not None
    day = sensed.replace(hour=0, minute=0, second=0, microsecond=0)
    reason = rejection_reason(item, ItemCriteria(TimeRange(day, day + dt.timedelta(days=1))))
    record = stac_items.to_record(item, collection=collection, bands=(), api_url=API)
    return Seen.of(record, item.get("geometry") is not None, reason)


def first_feature(path: str) -> dict[str, Any]:
    document = load(path)
    return dict(document["features"][0] if document.get("type") == "FeatureCollection" else document)


STAC: list[Any] = [
    pytest.param(
        "cdse/stac-item-s2-l1c.json",
        "sentinel-2-l1c",
        "S2A_MSIL1C_20240116T000741_N0510_R130_T51CVP_20240116T010505",
        expected("S2A", "51CVP", "S2MSI1C", "2024-01-16T00:07:41.024Z", "2024-01-16T01:56:53.447035Z"),
        id="cdse-stac-s2-l1c",
    ),
    pytest.param(
        "cdse/stac-item-s2-l2a.json",
        "sentinel-2-l2a",
        "S2A_MSIL2A_20220217T183431_N0510_R027_T13VEK_20240516T022440",
        expected("S2A", "13VEK", "S2MSI2A", "2022-02-17T18:34:31.024Z", "2024-11-20T20:23:22.150523Z"),
        id="cdse-stac-s2-l2a",
    ),
    pytest.param(
        "cdse/stac-item-s2c-l2a.json",
        "sentinel-2-l2a",
        "S2C_MSIL2A_20250330T100051_N0511_R122_T33UWP_20250330T145914",
        expected("S2C", "33UWP", "S2MSI2A", "2025-03-30T10:00:51.025Z", "2025-03-30T16:00:32.482826Z"),
        id="cdse-stac-s2c-l2a",
    ),
    # `datetime` is 2019 (processing), the acquisition 2015: the range gives it, start before end.
    pytest.param(
        "cdse/stac-item-ccm-s2a-msi.json",
        "ccm-optical",
        None,
        expected(
            "S2A",
            None,
            "MSI_IM__1C",
            ("2015-07-04T10:10:01Z", "2015-07-04T10:13:45Z"),
            "2024-04-19T20:40:47.051953Z",
        ),
        id="cdse-stac-ccm-s2a",
    ),
    # `datetime` 15 hours after the acquisition; `grid:code` without `MGRS-`; the name in `identifier`.
    pytest.param(
        "geodes/stac-search-s2-l1c.json",
        "PEPS_S2_L1C",
        "S2A_MSIL1C_20250402T175741_N0511_R141_T14ULD_20250403T022035",
        expected("S2A", "14ULD", "S2MSI1C", "2025-04-02T17:57:41.024Z", None),
        id="geodes-stac-s2-l1c",
    ),
    pytest.param(
        "earth-search/v1-search-s2-l1c.json",
        "sentinel-2-l1c",
        "S2B_MSIL1C_20240206T131259_N0510_R081_T27VWK_20240206T133903",
        expected("S2B", "27VWK", "S2MSI1C", "2024-02-06T13:14:11.918Z", "2024-02-06T15:02:12.605Z"),
        id="earth-search-v1-s2-l1c",
    ),
    # No product type but the collection's; the `sentinel:*` triple lacks its zone: the id gives the tile.
    pytest.param(
        "earth-search/v0-item-s2-l2a-cogs.json",
        "sentinel-s2-l2a-cogs",
        "S2A_MSIL2A_20200714T115221_N0214_R123_T28QCH_20200714T191310",
        expected("S2A", "28QCH", "S2MSI2A", "2020-07-14T11:55:52Z", None),
        id="earth-search-v0-s2-l2a",
    ),
    pytest.param(
        "planetary-computer/item-s2-l2a.json",
        "sentinel-2-l2a",
        "S2B_MSIL2A_20190629T212529_N0212_R043_T06VVN_20201006T080531",
        expected("S2B", "06VVN", "S2MSI2A", "2019-06-29T21:25:29.024Z", None),
        id="planetary-computer-s2-l2a",
    ),
    # UTM zone 1: `mgrs:utm_zone` 1, `grid:code` MGRS-01LAC.
    pytest.param(
        "stactools-sentinel2/item-s2-l1c.json",
        "sentinel2-l1c-example",
        "S2A_MSIL1C_20200717T221941_N0209_R029_T01LAC_20200717T234135",
        expected("S2A", "01LAC", "S2MSI1C", "2020-07-17T22:19:41.024Z", "2025-06-05T15:18:58.037698Z"),
        id="stactools-s2-l1c",
    ),
]
CDSE_STAC_ITEMS = [
    pytest.param(
        0,
        "S2A_MSIL2A_20260628T115421_N0512_R023_T29UNU_20260628T194416",
        expected("S2A", "29UNU", "S2MSI2A", "2026-06-28T11:54:21.024Z", "2026-06-28T20:39:38.813921Z"),
        id="cdse-stac-page-s2a",
    ),
    pytest.param(
        1,
        "S2B_MSIL2A_20260628T114349_N0512_R123_T29UNU_20260628T152530",
        expected("S2B", "29UNU", "S2MSI2A", "2026-06-28T11:43:49.024Z", "2026-06-28T16:01:37.919773Z"),
        id="cdse-stac-page-s2b",
    ),
]


@pytest.mark.parametrize(("path", "collection", "name", "seen"), STAC)
def test_stac_items(path: str, collection: str, name: str | None, seen: Seen) -> None:
    assert stac_seen(first_feature(path), collection) == seen


@pytest.mark.parametrize(("index", "name", "seen"), CDSE_STAC_ITEMS)
def test_cdse_stac_search_page(index: int, name: str, seen: Seen) -> None:
    item = load("cdse/stac-sentinel-2-l2a-items.json")["features"][index]
    assert stac_seen(item, "sentinel-2-l2a") == seen
    assert stac_items.product_name_of(item) == name


def test_cdse_stac_sentinel_1_item_is_another_missions() -> None:
    assert stac_seen(load("cdse/stac-item-s1-grd.json"), "sentinel-1-grd") == expected(
        "sentinel-1c",  # as given: never made a Sentinel-2 platform
        None,
        "IW_GRDH_1S_C",
        ("2025-03-27T15:44:19.799842Z", "2025-03-27T15:44:53.065447Z"),
        "2025-03-28T09:47:13.359533Z",
        reason=OTHER_MISSION,
    )


def test_a_stac_range_starting_after_its_end_is_malformed() -> None:
    """GEODES' item read by `datetime` alone (its range dropped) starts 15 hours after its end: skipped and
    counted as malformed, the problem named, never stored."""
    item = first_feature("geodes/stac-search-s2-l1c.json")
    del item["properties"]["start_datetime"]
    assert item_problem(item) == (
        "properties: sensing start 2025-04-03T09:00:26.809000Z is after its end 2025-04-02T17:57:41.024000Z"
    )
    assert stac_seen(item, "PEPS_S2_L1C").reason == MALFORMED


# --- product names: one product whatever the source (SPEC §11) ----------------------------------------------

NAMES: list[tuple[str, Callable[[], Any], str]] = [
    (
        "push",
        lambda: load("push-granule-created.json")["value"]["Name"],
        "S2A_MSIL1C_20240912T112541_N0511_R137_T28PHQ_20240912T133420",
    ),
    ("odata", lambda: odata_products(ODATA)[0]["Name"], "S2A_MSIL1C_20200808T010311_N0500_R045_T54PXA_20230413T212505"),
]


@pytest.mark.parametrize(("source", "value", "name"), NAMES, ids=[source for source, _, _ in NAMES])
def test_product_name_of_odata_names(source: str, value: Callable[[], Any], name: str) -> None:
    assert MISSION.product_name_of(value()) == name


@pytest.mark.parametrize(("path", "collection", "name", "seen"), STAC)
def test_product_name_of_stac_items(path: str, collection: str, name: str | None, seen: Seen) -> None:
    assert stac_items.product_name_of(first_feature(path)) == name


@pytest.mark.parametrize("path", [S1_GRD, S1_ORBIT], ids=["terradue-s1-grd", "sentineleof-s1-orbit"])
def test_other_missions_have_no_product_name(path: str) -> None:
    assert all(MISSION.product_name_of(product["Name"]) is None for product in odata_products(path))
    assert MISSION.product_name_of("S2A_MSIL1C_20240912T112541_N0511_R137_T28PHQ_20240912T133420.SAFE")


def test_every_sample_is_listed_in_sources() -> None:
    listed = (FIXTURES / "sources.md").read_text(encoding="utf-8")
    samples = sorted(str(path.relative_to(FIXTURES)) for path in FIXTURES.rglob("*.json"))
    described = [s for s in samples if f"`{s}`" in listed or (FIXTURES / s).with_suffix(".md").exists()]
    assert described == samples
    assert len([s for s in samples if "/" in s]) >= 10  # outside samples, one folder per source

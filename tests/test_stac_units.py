"""The STAC source's pure parts: time ranges and windows, areas, item handling, messages, watches config."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from pathlib import Path

import pytest

from link_fetcher.messages import STAC_ITEM_FOUND, cloudevent_type, to_download_body
from link_fetcher.stac.area import AreaError, geometry_of, load_geojson, parse_bbox
from link_fetcher.stac.items import (
    ItemCriteria,
    UnknownBands,
    check_bands,
    item_problem,
    platform_of,
    product_type_of,
    rejection_reason,
    selected_assets,
    sensing_interval,
    tile_of,
    to_record,
)
from link_fetcher.stac.timerange import TimeRange, TimeRangeError, parse_duration, parse_range, window_count, windows
from link_fetcher.stac.watches import WatchConfigError, load_watches, parse_watches, select_watches
from tests.fakes.stac_api import stac_item
from tests.schema import assert_valid_message, schema_errors

pytestmark = pytest.mark.unit

UTC = dt.UTC
NOW = dt.datetime(2024, 9, 20, 12, 30, tzinfo=UTC)


def at(day: int, hour: int = 0) -> dt.datetime:
    return dt.datetime(2024, 9, day, hour, tzinfo=UTC)


# --- time ranges ---------------------------------------------------------------------------------------


def test_date_range_includes_the_whole_end_day() -> None:
    assert parse_range("2024-09-01/2024-09-10", now=NOW) == TimeRange(at(1), at(11))
    assert parse_range("2024-09-05", now=NOW) == TimeRange(at(5), at(6))


def test_datetime_range_is_taken_as_given_in_utc() -> None:
    assert parse_range("2024-09-01T06:00:00Z/2024-09-01T12:00:00+02:00", now=NOW) == TimeRange(at(1, 6), at(1, 10))
    assert parse_range("2024-09-01T06:00:00/..", now=NOW) == TimeRange(at(1, 6), NOW)  # no zone: UTC


@pytest.mark.parametrize(
    "text", ["", "../2024-09-01", "2024-09-01/2024-09-02/2024-09-03", "2024-13-01/2024-13-02", "soon/later"]
)
def test_bad_ranges(text: str) -> None:
    with pytest.raises(TimeRangeError):
        parse_range(text, now=NOW)


def test_end_must_be_after_start() -> None:
    with pytest.raises(TimeRangeError, match="not after its start"):
        parse_range("2024-09-01T06:00:00Z/2024-09-01T06:00:00Z", now=NOW)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("6h", dt.timedelta(hours=6)),
        ("1d12h", dt.timedelta(hours=36)),
        ("2w", dt.timedelta(weeks=2)),
        ("90m", dt.timedelta(minutes=90)),
    ],
)
def test_durations(text: str, expected: dt.timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "6", "h", "0h", "-1d", "1.5h", "6 hours"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(TimeRangeError):
        parse_duration(text)


def test_windows_cover_the_range_without_gap_or_overlap() -> None:
    time_range = TimeRange(at(1), at(2, 3))
    cut = list(windows(time_range, dt.timedelta(hours=6)))
    assert len(cut) == window_count(time_range, dt.timedelta(hours=6)) == 5
    assert cut[0] == TimeRange(at(1, 0), at(1, 6)) and cut[-1] == TimeRange(at(2, 0), at(2, 3))
    assert all(a.end == b.start for a, b in itertools.pairwise(cut))
    assert cut[0].as_stac() == "2024-09-01T00:00:00Z/2024-09-01T06:00:00Z"


# --- areas ---------------------------------------------------------------------------------------------


def test_bbox() -> None:
    area = parse_bbox(" 10, 45.5,12,47 ")
    assert area.search_parameters() == {"bbox": [10.0, 45.5, 12.0, 47.0]}
    assert parse_bbox("170,-10,-170,10").bbox == (170, -10, -170, 10)  # crossing the antimeridian


@pytest.mark.parametrize(
    ("text", "problem"),
    [("1,2,3", "four numbers"), ("a,b,c,d", "four numbers"), ("0,91,1,92", "latitude 91"), ("0,5,1,4", "above maxy")],
)
def test_bad_bbox(text: str, problem: str) -> None:
    with pytest.raises(AreaError, match=problem):
        parse_bbox(text)


def test_geojson_feature_collection_becomes_one_geometry(tmp_path: Path) -> None:
    square = {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]}
    point = {"type": "Point", "coordinates": [3, 4]}
    features = [{"type": "Feature", "properties": {}, "geometry": g} for g in (square, point)]
    assert geometry_of({"type": "FeatureCollection", "features": features[:1]}) == square
    assert geometry_of({"type": "FeatureCollection", "features": features}) == {
        "type": "GeometryCollection",
        "geometries": [square, point],
    }
    path = tmp_path / "aoi.geojson"
    path.write_text(json.dumps(features[0]))
    assert load_geojson(path).search_parameters() == {"intersects": square}


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0.5]]]}, "end where it starts"),
        ({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [0, 0]]]}, "at least 4 positions"),
        ({"type": "Point", "coordinates": [200, 0]}, "longitude 200"),
        ({"type": "Point", "coordinates": ["1", "2"]}, "numbers"),
        ({"type": "Circle", "coordinates": [0, 0]}, "expected a GeoJSON geometry"),
        ({"type": "FeatureCollection", "features": []}, "without features"),
        ({"type": "Feature", "geometry": None}, "expected a GeoJSON geometry"),
        ([1, 2], "expected a GeoJSON geometry"),
    ],
)
def test_bad_geojson(document: object, problem: str) -> None:
    with pytest.raises(AreaError, match=problem):
        geometry_of(document)


def test_unreadable_geojson(tmp_path: Path) -> None:
    with pytest.raises(AreaError, match="cannot read GeoJSON"):
        load_geojson(tmp_path / "missing.geojson")
    (tmp_path / "bad.geojson").write_text("{")
    with pytest.raises(AreaError, match="is not JSON"):
        load_geojson(tmp_path / "bad.geojson")


# --- items ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("properties", "item_id", "tile"),
    [
        ({"grid:code": "MGRS-33UUP"}, "x", "33UUP"),
        ({"grid:code": "T14ULD"}, "x", "14ULD"),  # GEODES
        ({"grid:code": "MGRS-1LAC"}, "x", "01LAC"),
        ({"s2:mgrs_tile": "T05VNK"}, "x", "05VNK"),
        ({"tileId": "T32SMC"}, "x", "32SMC"),  # legacy CDSE STAC, the OData attribute's name
        ({"tileId": "32SMC"}, "x", "32SMC"),
        ({"mgrs:utm_zone": 5, "mgrs:latitude_band": "V", "mgrs:grid_square": "NK"}, "x", "05VNK"),
        ({"mgrs:utm_zone": "60", "mgrs:latitude_band": "C", "mgrs:grid_square": "WS"}, "x", "60CWS"),
        ({"sentinel:utm_zone": 29, "sentinel:latitude_band": "T", "sentinel:grid_square": "NG"}, "x", "29TNG"),
        ({"sentinel:latitude_band": "Q", "sentinel:grid_square": "CH"}, "S2A_28QCH_20200714_0_L2A", "28QCH"),
        ({"s2:product_uri": "S2B_MSIL2A_20190629T212529_N0212_R043_T06VVN_20201006T080531.SAFE"}, "x", "06VVN"),
        ({"identifier": "S2A_MSIL1C_20250402T175741_N0511_R141_T14ULD_20250403T022035"}, "URN:x:V1", "14ULD"),
        ({}, "S2B_33UUP_20240901_0_L2A", "33UUP"),
        ({}, "S2A_MSIL2A_20240901T101021_N0511_R022_T33UUP_20240901T145420", "33UUP"),
        ({"grid:code": "WRS2-190027"}, "LC09_L2SP_190027_20240901", None),
        # Zones are 1..60: 0 and 61 are no tile, whatever the field.
        ({"grid:code": "MGRS-61UUP"}, "x", None),
        ({"mgrs:utm_zone": 0, "mgrs:latitude_band": "U", "mgrs:grid_square": "UP"}, "x", None),
        ({"mgrs:utm_zone": True, "mgrs:latitude_band": "U", "mgrs:grid_square": "UP"}, "x", None),
        ({"s2:mgrs_tile": 33}, "x", None),
    ],
)
def test_tile_of(properties: dict, item_id: str, tile: str | None) -> None:
    assert tile_of({"id": item_id, "properties": properties}) == tile


@pytest.mark.parametrize(
    ("properties", "platform"),
    [
        ({"platform": "sentinel-2a"}, "S2A"),
        ({"platform": "Sentinel-2B"}, "S2B"),  # Planetary Computer
        ({"platform": "S2A"}, "S2A"),  # GEODES
        ({"platform": "sentinel-1c"}, "sentinel-1c"),
        ({"platform": "landsat-9"}, "landsat-9"),
        ({"platformSerialIdentifier": "B"}, "S2B"),  # legacy CDSE STAC
        ({"platformSerialIdentifier": "S2C"}, "S2C"),
        ({"platformSerialIdentifier": "Sentinel-2A"}, "S2A"),
        ({"platformSerialIdentifier": "A", "platformShortName": "SENTINEL-2"}, "S2A"),
        ({"platformSerialIdentifier": "A", "platformShortName": "SENTINEL-1"}, None),  # Sentinel-1A is no S2A
        ({}, None),
    ],
)
def test_platform_of(properties: dict, platform: str | None) -> None:
    assert platform_of({"id": "x", "properties": properties}) == platform


@pytest.mark.parametrize(
    ("item_id", "properties", "reason"),
    [
        ("S2B_33UUP_20240901_0_L2A", {"platform": "sentinel-2b"}, None),
        (
            "S1C_IW_GRDH_1SDV_20250327T154419_20250327T154453_001628_002981_53D2_COG",
            {"platform": "sentinel-1c"},
            "other_mission",
        ),
        ("LC09_L2SP_190027_20240901_02_T1", {"platform": "landsat-9"}, "other_mission"),
        ("x", {"platformSerialIdentifier": "A", "platformShortName": "SENTINEL-1"}, "other_mission"),
        ("S1A_IW_GRDH_1SDV_20240607T000653_20240607T000718_054210_0697DA_6EE4", {}, "other_mission"),
        ("URN:FEATURE:DATA:gdh:25416e3f-1a7f-379a-9b65-a6539b1fd95b:V1", {}, None),  # nothing says: kept
        ("S2A_28QCH_20200714_0_L2A", {}, None),
    ],
)
def test_items_of_another_mission_are_filtered_as_such(item_id: str, properties: dict, reason: str | None) -> None:
    item = {"id": item_id, "properties": {"datetime": "2024-09-01T10:00:00Z", **properties}}
    assert rejection_reason(item, ItemCriteria(TimeRange(at(1), at(2)))) == reason


def test_platform_of_an_item_without_one_is_its_ids() -> None:
    assert platform_of({"id": "S2B_33UUP_20240901_0_L2A", "properties": {}}) == "S2B"


@pytest.mark.parametrize(
    ("properties", "collection", "product_type"),
    [
        ({"product:type": "S2MSI2A"}, "x", "S2MSI2A"),
        ({"s2:product_type": "S2MSI1C"}, "x", "S2MSI1C"),
        ({"productType": "S2MSI2A"}, "x", "S2MSI2A"),  # legacy CDSE STAC
        ({"processing:level": "L1C"}, "x", "S2MSI1C"),
        ({"processing:level": "L2A"}, "x", "S2MSI2A"),
        ({"processing:level": "L1"}, "x", None),  # CDSE's level: not one product type
        ({}, "sentinel-2-l2a", "S2MSI2A"),  # Earth Search, Planetary Computer, CDSE
        ({}, "sentinel-2-l1c", "S2MSI1C"),
        ({}, "sentinel-s2-l2a-cogs", "S2MSI2A"),  # Earth Search v0
        ({}, "landsat-c2-l2", None),
        ({"product:type": "S2MSI1C", "s2:product_type": "S2MSI2A"}, "sentinel-2-l2a", "S2MSI1C"),
    ],
)
def test_product_type_of(properties: dict, collection: str, product_type: str | None) -> None:
    assert product_type_of({"id": "x", "properties": properties}, collection) == product_type


def test_product_type_of_falls_back_to_the_items_own_collection() -> None:
    assert product_type_of({"id": "x", "collection": "sentinel-2-l1c", "properties": {}}) == "S2MSI1C"


@pytest.mark.parametrize(
    ("properties", "interval"),
    [
        ({"datetime": "2024-09-01T10:00:00Z"}, (at(1, 10), at(1, 10))),
        (
            {
                "datetime": "2024-09-02T01:00:00Z",
                "start_datetime": "2024-09-01T10:00:00Z",
                "end_datetime": "2024-09-01T11:00:00Z",
            },
            (at(1, 10), at(1, 11)),
        ),
        ({"datetime": None, "start_datetime": "2024-09-01T10:00:00Z"}, (at(1, 10), None)),
        ({}, (None, None)),
    ],
)
def test_sensing_interval_prefers_the_range(properties: dict, interval: tuple) -> None:
    assert sensing_interval({"id": "x", "properties": properties}) == interval


def test_a_sensing_start_after_its_end_is_malformed() -> None:
    item = stac_item("c", sensed=at(1, 10))
    item["properties"]["start_datetime"] = "2024-09-01T12:00:00Z"
    item["properties"]["end_datetime"] = "2024-09-01T11:00:00Z"
    assert item_problem(item) == (
        "properties: sensing start 2024-09-01T12:00:00Z is after its end 2024-09-01T11:00:00Z"
    )
    assert rejection_reason(item, ItemCriteria(TimeRange(at(1), at(2)))) == "malformed"
    item["properties"]["end_datetime"] = "2024-09-01T12:00:00Z"  # an instant: start = end
    assert item_problem(item) is None


def test_window_end_belongs_to_the_next_window() -> None:
    first, second = TimeRange(at(1), at(2)), TimeRange(at(2), at(3))
    item = stac_item("c", sensed=at(2))
    assert rejection_reason(item, ItemCriteria(first)) == "outside window"
    assert rejection_reason(item, ItemCriteria(second)) is None


def test_cloud_and_band_criteria() -> None:
    window = TimeRange(at(1), at(2))
    clear, cloudy = stac_item("c", sensed=at(1, 3), cloud=5), stac_item("c", sensed=at(1, 3), cloud=60)
    assert rejection_reason(clear, ItemCriteria(window, max_cloud=10)) is None
    assert rejection_reason(cloudy, ItemCriteria(window, max_cloud=10)) == "cloudy"
    no_cover = stac_item("c", sensed=at(1, 3))
    del no_cover["properties"]["eo:cloud_cover"]
    assert rejection_reason(no_cover, ItemCriteria(window, max_cloud=10)) is None  # unknown: kept by default
    assert rejection_reason(no_cover, ItemCriteria(window, max_cloud=10, keep_unknown_cloud=False)) == (
        "unknown cloud cover"
    )
    assert rejection_reason(no_cover, ItemCriteria(window)) is None
    assert rejection_reason(clear, ItemCriteria(window, bands=("red", "lwir"))) == "missing bands"
    undated = stac_item("c", sensed=at(1, 3))
    undated["properties"]["datetime"] = None
    assert rejection_reason(undated, ItemCriteria(window)) == "no datetime"
    undated["properties"]["start_datetime"] = "2024-09-01T05:00:00Z"
    assert rejection_reason(undated, ItemCriteria(window)) is None


def test_unknown_band_lists_the_items_assets() -> None:
    item = stac_item("c", sensed=at(1))
    check_bands(item, ("red", "nir"))
    with pytest.raises(
        UnknownBands, match=r"unknown band\(s\) B04, B08: item S2B_33UUP_20240901_0_L2A has assets blue"
    ):
        check_bands(item, ("B04", "red", "B08"))


def test_record_and_message_of_an_item() -> None:
    item = stac_item("sentinel-2-l2a", sensed=at(1, 10), tile="32TNS", cloud=12.5, platform="sentinel-2c")
    item["links"] = [{"rel": "self", "href": "https://stac.example/collections/sentinel-2-l2a/items/x"}]
    record = to_record(item, collection="sentinel-2-l2a", bands=("nir", "red"), api_url="https://stac.example")
    assert record.id == f"sentinel-2-l2a/{item['id']}" and record.filename == item["id"]
    assert record.download_url == "https://stac.example/collections/sentinel-2-l2a/items/x"
    assert (record.tile_id, record.platform, record.cloud_cover, record.source) == ("32TNS", "S2C", 12.5, "stac")
    assert record.sensing_start == at(1, 10) and record.published == at(1, 13)
    assert list(record.assets) == ["nir", "red"] and record.item == item
    assert selected_assets(item, ()) == {band: asset["href"] for band, asset in item["assets"].items()}

    row = {**{field: getattr(record, field) for field in record.__dataclass_fields__}, "first_seen": NOW}
    body = to_download_body(row)
    assert_valid_message(body)
    assert body["href"] == record.download_url and body["collection"] == "sentinel-2-l2a"
    assert body["assets"] == record.assets and body["sensing_time"] == "2024-09-01T10:00:00Z"
    assert cloudevent_type(body) == STAC_ITEM_FOUND


def test_no_self_link_falls_back_to_the_items_path() -> None:
    item = stac_item("c", sensed=at(1))
    record = to_record(item, collection="c", bands=(), api_url="https://stac.example/v1/")
    assert record.download_url == f"https://stac.example/v1/collections/c/items/{item['id']}"


def test_schema_requires_the_stac_fields_for_stac_only() -> None:
    body = {
        "event": "found",
        "id": "c/x",
        "filename": "x",
        "download_url": "https://stac.example/x",
        "size": None,
        "tile_id": None,
        "platform": None,
        "sensing_time": "2024-09-01T00:00:00Z",
        "published": None,
        "source": "stac",
        "online": None,
    }
    assert any("href" in error for error in schema_errors(body))
    assert schema_errors({**body, "href": body["download_url"], "collection": "c", "assets": {}}) == []


# --- watches -------------------------------------------------------------------------------------------

WATCH = {"name": "alps", "api": "https://stac.example/v1", "collections": ["sentinel-2-l2a"], "bbox": [5, 45, 10, 47]}


def test_watch_query_over_its_lookback(tmp_path: Path) -> None:
    watches = parse_watches({"watch": [{**WATCH, "bands": ["red"], "lookback": "3d", "window": "6h"}]}, "w.toml")
    query = watches["alps"].query(tmp_path, now=NOW)
    assert query.time_range == TimeRange(NOW - dt.timedelta(days=3), NOW)
    assert query.window == dt.timedelta(hours=6) and query.bands == ("red",) and query.area.bbox == (5, 45, 10, 47)
    override = TimeRange(at(1), at(2))
    assert watches["alps"].query(tmp_path, now=NOW, time_range=override).time_range == override


def test_watch_aoi_file_is_relative_to_the_watches_file(tmp_path: Path) -> None:
    (tmp_path / "aoi.json").write_text(json.dumps({"type": "Point", "coordinates": [7, 46]}))
    entry = {key: value for key, value in WATCH.items() if key != "bbox"}
    watches = parse_watches({"watch": [{**entry, "aoi": "aoi.json"}]}, "w.toml")
    assert watches["alps"].query(tmp_path, now=NOW).area.intersects == {"type": "Point", "coordinates": [7, 46]}


@pytest.mark.parametrize(
    ("entries", "problem"),
    [
        ([], "no \\[\\[watch\\]\\] entries"),
        ([{**WATCH, "aoi": "a.json"}], "exactly one of bbox and aoi"),
        ([{**WATCH, "lookback": "soon"}], "lookback"),
        ([{**WATCH, "max_cloud": 120}], "max_cloud"),
        ([{**WATCH, "colections": ["x"]}], "colections"),
        ([WATCH, WATCH], "defined twice"),
    ],
)
def test_bad_watches(entries: list, problem: str) -> None:
    with pytest.raises(WatchConfigError, match=problem):
        parse_watches({"watch": entries}, "w.toml")


def test_select_watches() -> None:
    watches = parse_watches({"watch": [WATCH, {**WATCH, "name": "andes"}]}, "w.toml")
    assert [w.name for w in select_watches(watches, (), every=True, source="w.toml")] == ["alps", "andes"]
    assert [w.name for w in select_watches(watches, ("andes",), every=False, source="w.toml")] == ["andes"]
    with pytest.raises(WatchConfigError, match=r"unknown watch tatras in w.toml \(it has: alps, andes\)"):
        select_watches(watches, ("tatras",), every=False, source="w.toml")


def test_the_shipped_watches_file_is_valid() -> None:
    path = Path(__file__).parents[1] / "watches.toml"
    for watch in load_watches(path).values():
        watch.query(path.parent, now=NOW)  # areas and durations parse, the AOI file is found

"""STAC items: which to keep, the bands asked for, and the granule record one becomes. Pure."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from db import GranuleRecord, Source
from link_fetcher.mission import MISSION, OTHER_MISSION
from link_fetcher.stac.timerange import TimeRange
from link_fetcher.text import utc_iso
from link_fetcher.timestamps import MALFORMED, timestamp_problem

SOURCE = Source.STAC

# An MGRS tile inside an item id: S2B_33UUP_20240901_0_L2A (Earth Search) or …_R022_T33UUP_… (ESA names).
_TILE_IN_ID = re.compile(r"(?:^|_)T?(\d{2}[C-HJ-NP-X][A-HJ-NP-Z]{2})(?=_|$)")
_MGRS_TILE = re.compile(r"^(\d{1,2})([C-HJ-NP-X])([A-HJ-NP-Z]{2})$")
_UTM_ZONES = 60
# An item id becomes part of a granule id and of object keys: one path segment of printable characters.
_ITEM_ID = re.compile(r"^[^/\\\x00-\x1f]{1,1024}$")
_PLATFORM = re.compile(r"[\w .:/-]{1,64}")  # a platform or product type worth keeping: a short name
_TIMESTAMPS = ("datetime", "start_datetime", "end_datetime", "published", "created")
_TILE_KEYS = ("grid:code", "s2:mgrs_tile", "tileId")


class UnknownBands(ValueError):
    """Bands asked for that an item does not have; the message lists the item's assets."""

    def __init__(self, owner: str, missing: Sequence[str], available: Sequence[str]) -> None:
        super().__init__(f"unknown band(s) {', '.join(missing)}: {owner} has assets {', '.join(sorted(available))}")


def _normal_tile(text: object) -> str | None:
    """`MGRS-31UFU`, `T31UFU`, `31UFU` or `1LAC` (zones 1-60, one or two digits) -> `31UFU`; None otherwise."""
    if not isinstance(text, str):
        return None
    match = _MGRS_TILE.match(text.strip().upper().removeprefix("MGRS-").removeprefix("T"))
    if match is None or not 1 <= int(match[1]) <= _UTM_ZONES:
        return None
    return f"{int(match[1]):02d}{match[2]}{match[3]}"


def _triple_tile(properties: Mapping[str, Any], prefix: str) -> str | None:
    """The tile of a `{prefix}utm_zone` (number or text) + `latitude_band` + `grid_square` triple."""
    zone, band, square = (properties.get(f"{prefix}{key}") for key in ("utm_zone", "latitude_band", "grid_square"))
    if isinstance(zone, bool) or not isinstance(zone, int | str) or not isinstance(band, str):
        return None
    return _normal_tile(f"{zone}{band}{square}") if isinstance(square, str) else None


def tile_of(item: Mapping[str, Any]) -> str | None:
    """MGRS tile (SPEC §11): `grid:code` (`MGRS-33UUP`, GEODES' `T14ULD`), `s2:mgrs_tile`, legacy CDSE `tileId`,
    the `mgrs:*` or `sentinel:*` zone/band/square triple, else the `_T33UUP_` of the id or of the product name."""
    properties = _properties(item)
    for key in _TILE_KEYS:
        if tile := _normal_tile(properties.get(key)):
            return tile
    for prefix in ("mgrs:", "sentinel:"):
        if tile := _triple_tile(properties, prefix):
            return tile
    for name in (item.get("id"), *(properties.get(key) for key in MISSION.stac_name_keys)):
        match = _TILE_IN_ID.search(name.upper()) if isinstance(name, str) else None
        if match and (tile := _normal_tile(match[1])):
            return tile
    return None


def _short_name(value: Any) -> str | None:
    return value.strip() if isinstance(value, str) and _PLATFORM.fullmatch(value) else None


def platform_of(item: Mapping[str, Any]) -> str | None:
    """`S2A`… for Sentinel-2 (as CDSE granules name it), from `platform` (`sentinel-2a`, `Sentinel-2B`, GEODES'
    `S2A`) or legacy CDSE `platformSerialIdentifier` (`A`, `S2A`); another mission's platform as given
    (`sentinel-1c`), never made a Sentinel-2 one; without either, the `S2A_` prefix of a Sentinel-2 item id."""
    properties = _properties(item)
    for key in ("platform", "platformSerialIdentifier"):
        if (value := _short_name(properties.get(key))) is None:
            continue
        if platform := MISSION.stac_platform(value):
            return platform
        if key == "platformSerialIdentifier" and value.upper() in MISSION.serials:
            other = MISSION.is_other_mission(properties.get("platformShortName"), None)
            return None if other else MISSION.platform(value.upper())
        return value
    return MISSION.platform_in_name(str(item.get("id", "")))


def is_other_mission(item: Mapping[str, Any]) -> bool:
    """An item of a mission not configured (SPEC §3, §11): its platform is another's (`sentinel-1c`,
    `landsat-9`), its `platformShortName` says so, or, with neither, its id starts with another's (`S1A_…`)."""
    properties = _properties(item)
    if (platform := platform_of(item)) is not None:
        return MISSION.stac_platform(platform) is None
    return MISSION.is_other_mission(properties.get("platformShortName"), item.get("id"))


def product_type_of(item: Mapping[str, Any], collection: str | None = None) -> str | None:
    """STAC 1.1's `product:type` (CDSE), `s2:product_type` (Earth Search, Planetary Computer), legacy CDSE
    `productType`, a Sentinel-2 `processing:level` (`L1C`, `L2A`), else what the collection holds
    (`sentinel-2-l2a` -> `S2MSI2A`)."""
    properties = _properties(item)
    for key in ("product:type", "s2:product_type", "productType"):
        if value := _short_name(properties.get(key)):
            return value
    level = properties.get("processing:level")
    if isinstance(level, str) and (product_type := MISSION.product_type_of_level(level.strip().upper())):
        return product_type
    name = collection or item.get("collection")
    return MISSION.stac_product_type(name) if isinstance(name, str) else None


def _properties(item: Mapping[str, Any]) -> Mapping[str, Any]:
    properties = item.get("properties")
    return properties if isinstance(properties, Mapping) else {}


def _instant(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        instant = dt.datetime.fromisoformat(value.replace("z", "Z"))
    except ValueError:
        return None
    return instant.replace(tzinfo=dt.UTC) if instant.tzinfo is None else instant


def item_problem(item: Any) -> str | None:
    """Why an item of a search page cannot be recorded (None: it can), naming the field: such an item is
    skipped and reported, never its page."""
    if not isinstance(item, Mapping):
        return "item: not an object"
    if not isinstance(item.get("id"), str) or not _ITEM_ID.match(item["id"]):
        return "id: not a usable item id"
    properties = item.get("properties")
    if not isinstance(properties, Mapping):
        return "properties: not an object"
    for key in _TIMESTAMPS:
        value = properties.get(key)
        if value is None:
            continue
        instant = _instant(value)
        if instant is None:
            return f"properties.{key}: not an RFC 3339 timestamp"
        if problem := timestamp_problem(instant):
            return f"properties.{key}: {problem}"
    start, end = sensing_interval(item)
    if start is not None and end is not None and start > end:
        return f"properties: sensing start {utc_iso(start)} is after its end {utc_iso(end)}"
    if not isinstance(item.get("assets") or {}, Mapping):
        return "assets: not an object"
    if "\\u0000" in json.dumps(item):  # the item is stored whole (JSONB), which refuses NUL
        return "item: holds a NUL character"
    return None


def sensing_time(item: Mapping[str, Any]) -> dt.datetime | None:
    """The time a search window holds the item by: `datetime`, or `start_datetime` for items that only give a
    range (what STAC APIs search by)."""
    properties = _properties(item)
    return _instant(properties.get("datetime")) or _instant(properties.get("start_datetime"))


def sensing_interval(item: Mapping[str, Any]) -> tuple[dt.datetime | None, dt.datetime | None]:
    """Sensing start and end (SPEC §11): `start_datetime` / `end_datetime` when present, else `datetime`. Items
    whose `datetime` is not the acquisition (GEODES: the archiving, 15 h later; CDSE's contributing missions:
    years later) still give the acquisition in the range."""
    properties = _properties(item)
    instant = _instant(properties.get("datetime"))
    return (
        _instant(properties.get("start_datetime")) or instant,
        _instant(properties.get("end_datetime")) or instant,
    )


def cloud_cover(item: Mapping[str, Any]) -> float | None:
    value = (item.get("properties") or {}).get("eo:cloud_cover")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def self_href(item: Mapping[str, Any], *, api_url: str, collection: str) -> str:
    """The item's `self` link; the standard items path under the API when the item gives none."""
    links = item.get("links")
    for link in links if isinstance(links, list) else []:
        if isinstance(link, dict) and link.get("rel") == "self" and link.get("href"):
            return str(link["href"])
    return f"{api_url.rstrip('/')}/collections/{collection}/items/{item['id']}"


def asset_names(item: Mapping[str, Any]) -> list[str]:
    return list((item.get("assets") or {}).keys())


def missing_bands(item: Mapping[str, Any], bands: Sequence[str]) -> list[str]:
    assets = item.get("assets") or {}
    return [band for band in bands if band not in assets]


def check_bands(item: Mapping[str, Any], bands: Sequence[str]) -> None:
    """UnknownBands when the item lacks a band asked for: used on the first item to catch a misspelt band."""
    if missing := missing_bands(item, bands):
        raise UnknownBands(f"item {item.get('id')}", missing, asset_names(item))


def selected_assets(item: Mapping[str, Any], bands: Sequence[str]) -> dict[str, str]:
    """{band: href} for the bands asked for, in the order asked; every asset when no band is named."""
    assets = item.get("assets") or {}
    names = bands or list(assets)
    return {
        name: assets[name]["href"]
        for name in names
        if isinstance(assets.get(name), dict) and isinstance(assets[name].get("href"), str) and assets[name]["href"]
    }


@dataclasses.dataclass(frozen=True, slots=True)
class ItemCriteria:
    """What a search keeps of what the API returns in one window."""

    window: TimeRange
    bands: tuple[str, ...] = ()
    max_cloud: float | None = None
    keep_unknown_cloud: bool = True  # an item without eo:cloud_cover when max_cloud is set (STAC_KEEP_UNKNOWN_CLOUD)


def rejection_reason(item: Mapping[str, Any], criteria: ItemCriteria) -> str | None:
    """Why the item is not recorded (None: record it). An item belongs to the window holding its datetime:
    STAC intervals are closed, so an item exactly at a window's end comes back in two windows and is kept in
    the second only."""
    if item_problem(item) is not None:
        return MALFORMED
    if is_other_mission(item):
        return OTHER_MISSION
    sensed = sensing_time(item)
    if sensed is None:
        return "no datetime"
    if not criteria.window.contains(sensed):
        return "outside window"
    if criteria.max_cloud is not None:
        cover = cloud_cover(item)
        if cover is None and not criteria.keep_unknown_cloud:
            return "unknown cloud cover"
        if cover is not None and cover > criteria.max_cloud:
            return "cloudy"
    if missing_bands(item, criteria.bands):
        return "missing bands"
    return None


def granule_id(collection: str, item_id: str) -> str:
    """Unique across sources: CDSE ids are UUIDs, never `collection/…`."""
    return f"{collection}/{item_id}"


def product_name_of(item: Mapping[str, Any]) -> str | None:
    """The ESA product name the item is of (SPEC §11), or None when it names none (link_fetcher.mission)."""
    return MISSION.product_name_of_item(item)


def to_record(item: Mapping[str, Any], *, collection: str, bands: Sequence[str], api_url: str) -> GranuleRecord:
    properties = _properties(item)
    sensing_start, sensing_end = sensing_interval(item)
    product_name = product_name_of(item)
    return GranuleRecord(
        id=granule_id(collection, str(item["id"])),
        filename=str(item["id"]),
        product_name=product_name,
        identity=MISSION.identity(product_name),
        download_url=self_href(item, api_url=api_url, collection=collection),
        source=SOURCE,
        tile_id=tile_of(item),
        platform=platform_of(item),
        product_type=product_type_of(item, collection),
        sensing_start=sensing_start,
        sensing_end=sensing_end,
        published=_instant(properties.get("published")) or _instant(properties.get("created")),
        collection=collection,
        cloud_cover=cloud_cover(item),
        assets=selected_assets(item, bands),
        item=dict(item),
    )

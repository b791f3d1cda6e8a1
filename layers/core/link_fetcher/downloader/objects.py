"""What a granule becomes in storage: object keys, expected objects, STAC item rewriting. Pure."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from db import GranuleRow, Source


@dataclasses.dataclass(frozen=True, slots=True)
class ExpectedObject:
    key: str
    size: int | None  # None: existence is all we can check


def _segment(value: str, what: str) -> str:
    """A path segment from outside data: never empty, `.`/`..` or containing a separator."""
    if not value or value in (".", "..") or "/" in value or "\\" in value or "\x00" in value:
        raise ValueError(f"unusable {what} for an object key: {value!r}")
    return value


def is_stac(granule: GranuleRow) -> bool:
    return granule.get("source") == Source.STAC


def stac_item_id(granule: GranuleRow) -> str:
    """The item id: the item's own `id`, else the part of the granule id after `collection/`."""
    item = granule.get("item") or {}
    return str(item.get("id") or granule["id"].split("/", 1)[-1])


def stac_prefix(granule: GranuleRow) -> str:
    return f"{_segment(granule['collection'] or '', 'collection')}/{_segment(stac_item_id(granule), 'item id')}"


def asset_key(prefix: str, band: str, href: str) -> str:
    """`<collection>/<item id>/<band>.<ext>`, the extension taken from the href's path."""
    suffix = PurePosixPath(urlsplit(href).path).suffix
    return f"{prefix}/{_segment(band, 'band')}{suffix}"


def asset_keys(granule: GranuleRow) -> dict[str, str]:
    """{band: object key} for the selected assets of a STAC granule."""
    prefix = stac_prefix(granule)
    return {band: asset_key(prefix, band, href) for band, href in (granule.get("assets") or {}).items()}


def object_key(granule: GranuleRow) -> str:
    """Where the granule's main object goes: the product zip under its sensing day and its Id (two products
    may share a name: the Id keeps their objects apart), or the STAC item JSON."""
    if is_stac(granule):
        return f"{stac_prefix(granule)}/{_segment(stac_item_id(granule), 'item id')}.json"
    name = _segment(granule["filename"], "product name")
    folder = _segment(granule["id"], "product id")
    day = granule.get("sensing_start")
    return f"{day:%Y-%m-%d}/{folder}/{name}.zip" if day else f"{folder}/{name}.zip"


def stored_key(granule: GranuleRow) -> str:
    """The key a downloaded granule's main object was stored under: the one recorded on its row (objects
    stored before keys held the Id, `<day>/<name>.zip`, stay where they are), else today's layout."""
    return granule.get("object_key") or object_key(granule)


def expected_objects(granule: GranuleRow) -> list[ExpectedObject]:
    """Every object a downloaded granule must have in storage. The STAC item JSON comes last: it is written
    last, so its presence means the bands were stored."""
    if is_stac(granule):
        bands = [ExpectedObject(key, None) for key in asset_keys(granule).values()]
        return [*bands, ExpectedObject(object_key(granule), None)]
    return [ExpectedObject(stored_key(granule), granule.get("size"))]


def key_folder(key: str) -> str | None:
    """The folder of a stored key: for a STAC item's objects, the granule id `collection/item id`."""
    return key.rsplit("/", 1)[0] if "/" in key else None


def rewrite_item(item: Mapping[str, Any], stored: Mapping[str, str]) -> dict[str, Any]:
    """A copy of the STAC item whose downloaded assets point at the stored copies ({band: uri})."""
    rewritten = copy.deepcopy(dict(item))
    assets = rewritten.setdefault("assets", {})
    for band, uri in stored.items():
        assets.setdefault(band, {})["href"] = uri
    return rewritten

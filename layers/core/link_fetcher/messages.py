"""The "To Download" message body (SPEC §5), built from a recorded granule row. Pure."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any


def _iso(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def to_download_body(granule: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body consumers receive; `checksum` (MD5) and `blake3` are omitted when CDSE gave none."""
    body: dict[str, Any] = {
        "id": granule["id"],
        "filename": granule["filename"],
        "download_url": granule["download_url"],
        "size": granule["size"],
        "tile_id": granule["tile_id"],
        "platform": granule["platform"],
        "sensing_time": _iso(granule["sensing_start"]),
        "published": _iso(granule["published"]),
        "source": granule["source"],
    }
    if granule.get("checksum"):
        body["checksum"] = granule["checksum"]
    if granule.get("blake3"):
        body["blake3"] = granule["blake3"]
    return body

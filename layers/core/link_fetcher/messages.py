"""The "To Download" message body (SPEC §5), built from a recorded granule row. Pure."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from cloudevents.core.v1.event import CloudEvent

from db import GranuleRow, Source
from link_fetcher.text import utc_iso

PRODUCER = "link-fetcher"
GRANULE_FOUND = "link-fetcher.granule.found"
STAC_ITEM_FOUND = "link-fetcher.stac-item.found"


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else utc_iso(value)


def to_download_body(granule: GranuleRow) -> dict[str, Any]:
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
        "online": granule.get("online"),
    }
    if granule.get("checksum"):
        body["checksum"] = granule["checksum"]
    if granule.get("blake3"):
        body["blake3"] = granule["blake3"]
    if granule["source"] == Source.STAC:
        # A STAC item: `href` is its self link (what plain subject/producer/href consumers read), `assets`
        # holds only the bands the watch asked for.
        body["href"] = granule["download_url"]
        body["collection"] = granule.get("collection")
        body["assets"] = granule.get("assets") or {}
    return body


def cloudevent_type(body: Mapping[str, Any]) -> str:
    """The CloudEvent `type` that announces `body`."""
    return STAC_ITEM_FOUND if body.get("source") == Source.STAC else GRANULE_FOUND


def to_cloudevent(body: Mapping[str, Any], *, time: dt.datetime) -> CloudEvent:
    """The CloudEvent announcing `body` (SPEC §5): `cloudevent_attributes`, with `body` as its data."""
    return CloudEvent(cloudevent_attributes(body, time=time), data=dict(body))


def cloudevent_attributes(body: Mapping[str, Any], *, time: dt.datetime) -> dict[str, Any]:
    """The attributes of the CloudEvent announcing `body`. `time` is when link-fetcher recorded it, so a repeated
    delivery carries the same event. `producer` and `href` serve consumers of the plain subject/producer/href form."""
    return {
        "specversion": "1.0",
        "id": body["id"],
        "source": f"/{PRODUCER}/{body['source']}",
        "type": cloudevent_type(body),
        "subject": body["filename"],
        "time": time.astimezone(dt.UTC),
        "datacontenttype": "application/json",
        "producer": PRODUCER,
        "href": body["download_url"],
    }

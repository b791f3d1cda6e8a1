"""The "To Download" messages (SPEC §5, §9), built from a recorded granule row: a granule found, or deleted. Pure."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from cloudevents.core.v1.event import CloudEvent

from db import MessageRow, Source
from link_fetcher.text import utc_iso

PRODUCER = "link-fetcher"
GRANULE_FOUND = "link-fetcher.granule.found"
GRANULE_DELETED = "link-fetcher.granule.deleted"
STAC_ITEM_FOUND = "link-fetcher.stac-item.found"
FOUND, DELETED = "found", "deleted"


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else utc_iso(value)


def to_download_body(granule: MessageRow, event: str = FOUND) -> dict[str, Any]:
    """The JSON body consumers receive about `event` (found | deleted)."""
    if event == DELETED:
        return {
            "event": DELETED,
            "id": granule["id"],
            "filename": granule["filename"],
            "deleted_at": _iso(granule["deleted_at"]),
            "deletion_cause": granule["deletion_cause"],
        }
    return found_body(granule)


def found_body(granule: MessageRow) -> dict[str, Any]:
    """A granule found; `checksum` (MD5) and `blake3` are omitted when CDSE gave none, `supersedes` when it
    reprocesses no earlier granule."""
    body: dict[str, Any] = {
        "event": FOUND,
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
    if granule.get("supersedes"):
        body["supersedes"] = granule["supersedes"]
    if granule["source"] == Source.STAC:
        # A STAC item: `href` is its self link (what plain subject/producer/href consumers read), `assets`
        # holds only the bands the watch asked for.
        body["href"] = granule["download_url"]
        body["collection"] = granule.get("collection")
        body["assets"] = granule.get("assets") or {}
    return body


def message_id(body: Mapping[str, Any]) -> str:
    """What consumers dedupe on: the granule id for `found`, `<granule id>:deleted` for its deletion."""
    return f"{body['id']}:{DELETED}" if body.get("event") == DELETED else body["id"]


def cloudevent_type(body: Mapping[str, Any]) -> str:
    """The CloudEvent `type` that announces `body`."""
    if body.get("event") == DELETED:
        return GRANULE_DELETED
    return STAC_ITEM_FOUND if body.get("source") == Source.STAC else GRANULE_FOUND


def to_cloudevent(body: Mapping[str, Any], *, time: dt.datetime) -> CloudEvent:
    """The CloudEvent announcing `body` (SPEC §5, §9): `cloudevent_attributes`, with `body` as its data."""
    return CloudEvent(cloudevent_attributes(body, time=time), data=dict(body))


def cloudevent_attributes(body: Mapping[str, Any], *, time: dt.datetime) -> dict[str, Any]:
    """The attributes of the CloudEvent announcing `body`. `time` is when link-fetcher recorded the granule (its
    deletion date for a deletion), so a repeated delivery carries the same event. `producer` and `href` serve
    consumers of the plain subject/producer/href form; a deletion has nothing to download, so no `href`."""
    attributes: dict[str, Any] = {
        "specversion": "1.0",
        "id": message_id(body),
        "source": f"/{PRODUCER}/{body.get('source', 'cdse')}",
        "type": cloudevent_type(body),
        "subject": body["filename"],
        "time": time.astimezone(dt.UTC),
        "datacontenttype": "application/json",
        "producer": PRODUCER,
    }
    if "download_url" in body:
        attributes["href"] = body["download_url"]
    return attributes

"""The "To Download" messages (SPEC §5, §9), built from a recorded granule row: a granule found, or deleted. Pure."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec
from cloudevents.core.v1.event import CloudEvent
from msgspec import UNSET, Meta, UnsetType

from db import MessageRow, Source
from link_fetcher.text import utc_iso

PRODUCER = "link-fetcher"
GRANULE_FOUND = "link-fetcher.granule.found"
GRANULE_DELETED = "link-fetcher.granule.deleted"
STAC_ITEM_FOUND = "link-fetcher.stac-item.found"
FOUND, DELETED = "found", "deleted"


def _iso(value: dt.datetime | None) -> str | None:
    return None if value is None else utc_iso(value)


# What each field holds, as consumers read it in the generated JSON Schema (docs/to-download.schema.json).
Instant = Annotated[str, Meta(extra_json_schema={"format": "date-time"}, description="RFC 3339, UTC.")]
GranuleId = Annotated[
    str,
    Meta(
        min_length=1,
        description="The granule id: the CDSE product Id (a UUID), or for a STAC item `{collection}/{item id}`. "
        "Unique: the same id is never announced as a different granule.",
    ),
]
ProductName = Annotated[
    str,
    Meta(
        min_length=1,
        description="The product name, e.g. S2A_MSIL1C_20240912T112541_N0511_R137_T28PHQ_20240912T133420.SAFE "
        "(a STAC item's id).",
    ),
]
MgrsTile = Annotated[str, Meta(pattern="^[0-9]{2}[A-Z]{3}$")]
Url = Annotated[str, Meta(pattern="^https?://")]
Md5 = Annotated[str, Meta(pattern="^[0-9a-f]{32}$", description="MD5 hex digest of the product zip.")]
Blake3 = Annotated[str, Meta(pattern="^[0-9a-f]{64}$", description="BLAKE3 hex digest of the product zip.")]
Size = Annotated[
    Annotated[int, Meta(ge=0)] | None,
    Meta(
        description="ContentLength in bytes; null when unknown (CDSE's 0 or none: the download is then not checked "
        "against a size).",
    ),
]
Supersedes = Annotated[
    str,
    Meta(
        min_length=1,
        description="The id of the earlier granule this one reprocesses (same name but for processing baseline and "
        "discriminator, SPEC §9); omitted for a first processing.",
    ),
]
Online = Annotated[
    bool | None,
    Meta(
        description="CDSE `Online`: false means the product must be ordered (CDSE's OData order) before it can be "
        "downloaded; null when unknown (STAC items, products recorded before link-fetcher kept it)."
    ),
]


class GranuleFound(msgspec.Struct, kw_only=True, tag_field="event", tag=FOUND, forbid_unknown_fields=True):
    """A CDSE product found by the poll (`search`) or a push notification (`subscription`): it always carries its
    tile, platform and dates; `checksum` and `blake3` are omitted when CDSE gave none."""

    id: GranuleId
    filename: ProductName
    download_url: Annotated[
        Url, Meta(description="{CDSE_DOWNLOAD_URL}/odata/v1/Products({id})/$value (needs a bearer token).")
    ]
    size: Size
    tile_id: Annotated[MgrsTile, Meta(description="MGRS tile without the leading T.")]
    platform: Annotated[str, Meta(min_length=1, description="The platform, e.g. S2A.")]
    sensing_time: Annotated[Instant, Meta(description="Sensing start, RFC 3339 UTC.")]
    published: Annotated[Instant, Meta(description="CDSE PublicationDate, RFC 3339 UTC.")]
    source: Literal["search", "subscription"]
    online: Online
    checksum: Md5 | UnsetType = UNSET
    blake3: Blake3 | UnsetType = UNSET
    supersedes: Supersedes | UnsetType = UNSET


class StacItemFound(msgspec.Struct, kw_only=True, tag_field="event", tag=FOUND, forbid_unknown_fields=True):
    """A STAC item found by a watch: `href` is its self link (also `download_url`, what plain subject/producer/href
    consumers read), `assets` holds only the bands the watch asked for (every asset when it asked for none)."""

    id: GranuleId
    filename: ProductName
    download_url: Annotated[Url, Meta(description="The item's self link.")]
    size: Size
    tile_id: Annotated[MgrsTile | None, Meta(description="MGRS tile without the leading T, when the item names one.")]
    platform: Annotated[str | None, Meta(description="The platform, when the item names one.")]
    sensing_time: Annotated[Instant | None, Meta(description="Sensing start, RFC 3339 UTC.")]
    published: Annotated[Instant | None, Meta(description="When the item was published, RFC 3339 UTC.")]
    source: Literal["stac"]
    online: Online
    href: Annotated[Url, Meta(description="The item's self link.")]
    collection: Annotated[str, Meta(min_length=1, description="The item's collection, e.g. sentinel-2-l2a.")]
    assets: Annotated[dict[str, Annotated[str, Meta(min_length=1)]], Meta(description="{band: href}.")]
    checksum: Md5 | UnsetType = UNSET
    blake3: Blake3 | UnsetType = UNSET
    supersedes: Supersedes | UnsetType = UNSET


class GranuleDeleted(msgspec.Struct, kw_only=True, tag_field="event", tag=DELETED, forbid_unknown_fields=True):
    """CDSE withdrew a granule announced before (or a reprocessing replaced it, REPROCESSED_POLICY=replace).
    Dedupe on `id` + `event`."""

    id: Annotated[str, Meta(min_length=1, description="The granule id announced earlier by a `found` message.")]
    filename: Annotated[str, Meta(min_length=1, description="The product name.")]
    deleted_at: Annotated[
        Instant, Meta(description="CDSE DeletionDate (or when a reprocessing replaced it), RFC 3339 UTC.")
    ]
    deletion_cause: Annotated[
        str | None,
        Meta(description="CDSE DeletionCause, e.g. Corrupted product; `superseded by <id>` for a replaced granule."),
    ]


ToDownloadMessage = GranuleFound | StacItemFound | GranuleDeleted
MESSAGE_TYPES: tuple[type[ToDownloadMessage], ...] = (GranuleFound, StacItemFound, GranuleDeleted)


def to_download_body(granule: MessageRow, event: str = FOUND) -> dict[str, Any]:
    """The JSON body consumers receive about `event` (found | deleted) of the granule row."""
    body: dict[str, Any] = msgspec.to_builtins(to_download_message(granule, event))
    return body


def to_download_message(granule: MessageRow, event: str = FOUND) -> ToDownloadMessage:
    """The typed message announcing `event` (found | deleted) of the granule row."""
    if event == DELETED:
        return GranuleDeleted(
            id=granule["id"],
            filename=granule["filename"],
            deleted_at=utc_iso(_required(granule["deleted_at"], "deleted_at")),
            deletion_cause=granule["deletion_cause"],
        )
    return found_message(granule)


def found_message(granule: MessageRow) -> GranuleFound | StacItemFound:
    """The `found` message of a granule row: a STAC item's or a CDSE product's."""
    given = {
        "checksum": granule.get("checksum"),
        "blake3": granule.get("blake3"),
        "supersedes": granule.get("supersedes"),
    }
    optional = {name: value for name, value in given.items() if value}
    if granule["source"] == Source.STAC:
        return StacItemFound(
            id=granule["id"],
            filename=granule["filename"],
            download_url=granule["download_url"],
            size=granule["size"],
            tile_id=granule["tile_id"],
            platform=granule["platform"],
            sensing_time=_iso(granule["sensing_start"]),
            published=_iso(granule["published"]),
            source="stac",
            online=granule.get("online"),
            href=granule["download_url"],
            collection=_required(granule.get("collection"), "collection"),
            assets=granule.get("assets") or {},
            **optional,
        )
    return GranuleFound(
        id=granule["id"],
        filename=granule["filename"],
        download_url=granule["download_url"],
        size=granule["size"],
        tile_id=_required(granule["tile_id"], "tile_id"),
        platform=_required(granule["platform"], "platform"),
        sensing_time=utc_iso(_required(granule["sensing_start"], "sensing_start")),
        published=utc_iso(_required(granule["published"], "published")),
        source="subscription" if granule["source"] == Source.SUBSCRIPTION else "search",
        online=granule.get("online"),
        **optional,
    )


def _required[T](value: T | None, column: str) -> T:
    """A column every message of its kind carries (the recording's constraints guarantee it)."""
    if value is None:
        raise ValueError(f"granule row without {column}: it cannot be announced")
    return value


def json_schema() -> dict[str, Any]:
    """The JSON Schema of the To Download message, generated from the message types (docs/to-download.schema.json
    is this, written by `make message-schema`)."""
    (refs, definitions) = msgspec.json.schema_components(MESSAGE_TYPES, ref_template="#/$defs/{name}")
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://github.com/link-fetcher/link-fetcher/docs/to-download.schema.json",
        "title": "To Download message",
        "description": "The SQS message body and the CloudEvent `data` of a Redis Streams entry (SPEC §5, §9). One "
        "message announces one event of one granule: `found` (newly recorded) or `deleted` (withdrawn by CDSE). "
        "Delivery is at least once: consumers dedupe on `id` and `event`.",
        "oneOf": list(refs),
        "$defs": definitions,
    }


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

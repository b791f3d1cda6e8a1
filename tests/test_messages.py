"""The To Download message as a typed structure: its JSON Schema is generated from the types, and what each granule
row gives, field by field."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from link_fetcher.messages import (
    DELETED,
    GranuleDeleted,
    GranuleFound,
    StacItemFound,
    json_schema,
    message_id,
    to_download_body,
    to_download_message,
)
from tests.schema import SCHEMA_PATH, assert_valid_message, schema_errors

pytestmark = pytest.mark.unit

SENSED = dt.datetime(2024, 9, 12, 11, 25, 41, 24000, tzinfo=dt.UTC)
PUBLISHED = dt.datetime(2024, 9, 12, 15, 52, 6, tzinfo=dt.timezone(dt.timedelta(hours=2)))
NAME = "S2A_MSIL1C_20240912T112541_N0511_R137_T28PHQ_20240912T133420.SAFE"


def cdse_row(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": "5b6f2a8e-5a1c-4d5e-9a43-0f7c9e3f2b11",
        "filename": NAME,
        "tile_id": "28PHQ",
        "platform": "S2A",
        "size": 812_345_678,
        "checksum": "0123456789abcdef0123456789abcdef",
        "blake3": None,
        "sensing_start": SENSED,
        "published": PUBLISHED,
        "download_url": "https://download.dataspace.copernicus.eu/odata/v1/Products(5b6f)/$value",
        "source": "search",
        "first_seen": PUBLISHED,
        "collection": None,
        "assets": None,
        "online": True,
        "deleted_at": None,
        "deletion_cause": None,
        "supersedes": None,
    }
    return {**row, **changes}


def test_the_committed_schema_is_the_generated_one() -> None:
    """docs/to-download.schema.json is written by `make message-schema`: editing it by hand fails here."""
    assert json.loads(SCHEMA_PATH.read_text()) == json_schema()


def test_a_polled_product_gives_each_field_and_omits_what_cdse_did_not_give() -> None:
    body = to_download_body(cdse_row())
    assert body == {
        "event": "found",
        "id": "5b6f2a8e-5a1c-4d5e-9a43-0f7c9e3f2b11",
        "filename": NAME,
        "download_url": "https://download.dataspace.copernicus.eu/odata/v1/Products(5b6f)/$value",
        "size": 812_345_678,
        "tile_id": "28PHQ",
        "platform": "S2A",
        "sensing_time": "2024-09-12T11:25:41.024000Z",
        "published": "2024-09-12T13:52:06Z",
        "source": "search",
        "online": True,
        "checksum": "0123456789abcdef0123456789abcdef",
    }
    assert_valid_message(body)
    assert isinstance(to_download_message(cdse_row()), GranuleFound)


def test_a_pushed_reprocessing_names_what_it_supersedes() -> None:
    body = to_download_body(cdse_row(source="subscription", supersedes="earlier-id", blake3="a" * 64, size=None))
    assert (body["source"], body["supersedes"], body["blake3"], body["size"]) == (
        "subscription",
        "earlier-id",
        "a" * 64,
        None,
    )
    assert_valid_message(body)


def test_a_stac_item_carries_its_link_collection_and_assets() -> None:
    row = cdse_row(
        id="sentinel-2-l2a/S2A_28PHQ_20240912_0_L2A",
        filename="S2A_28PHQ_20240912_0_L2A",
        source="stac",
        download_url="https://earth-search.aws.element84.com/v1/collections/sentinel-2-l2a/items/S2A_28PHQ",
        collection="sentinel-2-l2a",
        assets={"red": "s3://bucket/red.tif"},
        tile_id=None,
        platform=None,
        published=None,
        online=None,
        checksum=None,
    )
    message = to_download_message(row)
    assert isinstance(message, StacItemFound)
    body = to_download_body(row)
    assert body["href"] == row["download_url"] and body["assets"] == {"red": "s3://bucket/red.tif"}
    assert (body["tile_id"], body["platform"], body["published"]) == (None, None, None)
    assert "checksum" not in body
    assert_valid_message(body)


def test_a_deletion_gives_when_and_why_and_its_own_message_id() -> None:
    row = cdse_row(deleted_at=PUBLISHED, deletion_cause="Corrupted product")
    body = to_download_body(row, DELETED)
    assert body == {
        "event": "deleted",
        "id": row["id"],
        "filename": NAME,
        "deleted_at": "2024-09-12T13:52:06Z",
        "deletion_cause": "Corrupted product",
    }
    assert isinstance(to_download_message(row, DELETED), GranuleDeleted)
    assert message_id(body) == f"{row['id']}:deleted"
    assert_valid_message(body)


@pytest.mark.parametrize(
    ("changes", "event", "column"),
    [
        ({"tile_id": None}, "found", "tile_id"),
        ({"sensing_start": None}, "found", "sensing_start"),
        ({"source": "stac", "collection": None}, "found", "collection"),
        ({"deleted_at": None}, DELETED, "deleted_at"),
    ],
)
def test_a_row_missing_what_its_message_must_carry_is_refused_not_sent_broken(
    changes: dict[str, Any], event: str, column: str
) -> None:
    with pytest.raises(ValueError, match=column):
        to_download_message(cdse_row(**changes), event)


def test_the_schema_refuses_what_consumers_must_never_see() -> None:
    good = to_download_body(cdse_row())
    assert schema_errors({**good, "tile_id": "T28PHQ"})
    assert schema_errors({**good, "href": "https://x"})  # a CDSE product has no STAC fields
    assert schema_errors({**good, "source": "stac"})  # a STAC item without its link, collection, assets
    assert schema_errors({**good, "checksum": "not-md5"})
    assert schema_errors({key: value for key, value in good.items() if key != "online"})

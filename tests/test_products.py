from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import msgspec
import pytest

from link_fetcher.cdse.products import CdseProduct, Criteria, ListedProduct, Product, rejection_reason, to_record
from tests.factories import PUSH_FIXTURE, cdse_product

pytestmark = pytest.mark.unit

NOW = dt.datetime(2024, 9, 13, tzinfo=dt.UTC)
CRITERIA = Criteria(
    allowed_tiles={"28PHQ"},
    platforms={"S2A", "S2B"},
    product_type="S2MSI1C",
    max_acquisition_age=dt.timedelta(days=30),
)

# The push model (pydantic) and the search-page model (msgspec) must read a product the same way.
MODELS: dict[str, Callable[[dict[str, Any]], Product]] = {
    "pydantic": CdseProduct.model_validate,
    "msgspec": lambda raw: msgspec.json.decode(json.dumps(raw), type=ListedProduct),
}
parse_with = pytest.mark.parametrize("parse", MODELS.values(), ids=MODELS.keys())


@parse_with
def test_fixture_product_becomes_a_record(parse: Callable[[dict[str, Any]], Product]) -> None:
    record = to_record(
        parse(PUSH_FIXTURE["value"]),
        source="subscription",
        download_base_url="https://download.dataspace.copernicus.eu",
    )
    assert record.id == "f867a59a-9336-46d0-93ae-e55bf29403f8"
    assert record.tile_id == "28PHQ" and record.platform == "S2A" and record.product_type == "S2MSI1C"
    assert record.checksum == "700a3f2014ab3670408b94e4310924dd"
    assert record.blake3.startswith("fd35ef96")
    assert record.size == 132384463
    assert record.sensing_start == dt.datetime(2024, 9, 12, 11, 25, 41, 24000, tzinfo=dt.UTC)
    assert record.published == dt.datetime(2024, 9, 12, 14, 52, 6, 118000, tzinfo=dt.UTC)
    assert record.download_url == (
        "https://download.dataspace.copernicus.eu/odata/v1/Products(f867a59a-9336-46d0-93ae-e55bf29403f8)/$value"
    )
    assert rejection_reason(record, CRITERIA, NOW) is None


@parse_with
def test_tile_from_name_when_attribute_missing_and_empty_checksums(parse: Callable[[dict[str, Any]], Product]) -> None:
    raw = cdse_product(tile="31UFS")
    raw["Attributes"] = [a for a in raw["Attributes"] if a["Name"] not in ("tileId", "productType")]
    raw["Checksum"] = []
    record = to_record(parse(raw), source="search", download_base_url="https://x")
    assert record.tile_id == "31UFS"
    assert record.product_type == "S2MSI1C"
    assert record.checksum is None and record.blake3 is None


@parse_with
def test_rejection_reasons(parse: Callable[[dict[str, Any]], Product]) -> None:
    def reason(**kwargs: object) -> str | None:
        record = to_record(parse(cdse_product(**kwargs)), source="s", download_base_url="x")
        return rejection_reason(record, CRITERIA, NOW)

    assert reason(tile="01FBE") == "tile_not_allowed"
    assert reason(platform="S2C") == "platform_not_configured"
    assert reason(product_type="S2MSI2A") == "product_type_not_configured"
    assert reason(sensing=NOW - dt.timedelta(days=31)) == "acquired_too_long_ago"
    assert reason(sensing=NOW - dt.timedelta(days=29)) is None

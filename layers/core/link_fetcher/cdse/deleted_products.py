"""CDSE DeletedProducts (SPEC §9): the entity (the `value` of a `deleted` notification and the items of
`GET /odata/v1/DeletedProducts`), its translation to a deletion record, and the collection's search."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Collection, Sequence
from typing import Any

import requests
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, TypeAdapter, ValidationError

from db import DeletionRecord, GranuleRecord, Source
from link_fetcher.cdse.downloads import download_url
from link_fetcher.cdse.products import (
    Criteria,
    StoredText,
    Timestamp,
    platform_of,
    product_type_of,
    rejection_reason,
    tile_of,
)
from link_fetcher.http import HttpError, get_json, make_session
from link_fetcher.mission import MISSION


class DeletedProduct(BaseModel):
    """One withdrawn product (fields we use; `@odata.context`, `OriginDate`, … ignored). No attributes: its
    tile, platform and type come from its name."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    id: uuid.UUID = Field(alias="Id")
    name: StoredText = Field(alias="Name")
    # Within years 1900..2200 and ±14:00 like every timestamp we keep (SPEC §9): else malformed, never stored.
    deletion_date: Timestamp = Field(alias="DeletionDate")
    deletion_cause: StoredText | None = Field(None, alias="DeletionCause")
    # False when the source gave no name (a PULL notification that lost it): `name` then holds the Id, and the
    # deletion is not checked against the recorded name. Never read from input.
    _name_known: bool = PrivateAttr(True)

    @classmethod
    def unnamed(cls, product_id: str, deletion_date: dt.datetime) -> DeletedProduct:
        """A deletion known only by its product's Id and date; ValidationError when either is malformed."""
        product = cls.model_validate({"Id": product_id, "Name": product_id, "DeletionDate": deletion_date})
        product._name_known = False
        return product

    @property
    def name_known(self) -> bool:
        return self._name_known

    @property
    def product_id(self) -> str:
        """The Id as stored: lower-case (SPEC §3)."""
        return str(self.id)

    def attribute(self, name: str) -> Any:  # the lookups of products.tile_of & co.: a deletion has no attributes
        return None


_ITEM = TypeAdapter(DeletedProduct)


def parse_items(items: Sequence[Any]) -> tuple[list[DeletedProduct], int]:
    """The valid entities of a DeletedProducts page and how many were malformed (skipped, never the page)."""
    products, malformed = [], 0
    for item in items:
        try:
            products.append(_ITEM.validate_python(item))
        except ValidationError:
            malformed += 1
    return products, malformed


def remember_criteria(allowed_tiles: Collection[str], platforms: Collection[str], product_type: str) -> Criteria:
    """Which deletions of never-recorded products are remembered: those we would record (configured platforms
    and product type, allowed tile). Acquisition age is not checked: a deletion carries no sensing date."""
    return Criteria(allowed_tiles=allowed_tiles, platforms=platforms, product_type=product_type)


def to_deletion(product: DeletedProduct, *, download_base_url: str, criteria: Criteria) -> DeletionRecord:
    # tile_of & co. read a product's name and attribute(): a DeletedProduct has both.
    granule = GranuleRecord(
        id=product.product_id,
        filename=product.name,
        download_url=download_url(download_base_url, product.product_id),
        source=Source.DELETION,
        tile_id=tile_of(product),  # type: ignore[arg-type]
        platform=platform_of(product),  # type: ignore[arg-type]
        product_type=product_type_of(product),  # type: ignore[arg-type]
    )
    return DeletionRecord(
        id=granule.id,
        filename=granule.filename,
        deleted_at=product.deletion_date,
        deletion_cause=product.deletion_cause,
        download_url=granule.download_url,
        remember=rejection_reason(granule, criteria, dt.datetime.now(dt.UTC)) is None,
        name_known=product.name_known,
        tile_id=granule.tile_id,
        platform=granule.platform,
        product_type=granule.product_type,
        product_name=MISSION.product_name_of(product.name) if product.name_known else None,
    )


DELETED_PRODUCTS_PATH = "/odata/v1/DeletedProducts"


@dataclasses.dataclass(frozen=True)
class DeletionPage:
    count: int
    items: list[Any]


class DeletedProductsCatalogue:
    """`GET /odata/v1/DeletedProducts` (anonymous); keep one per process (its session keeps connections open)."""

    def __init__(self, base_url: str, session: requests.Session | None = None) -> None:
        self.url = base_url.rstrip("/") + DELETED_PRODUCTS_PATH
        self.session = session or make_session()

    def search(self, params: dict[str, str]) -> DeletionPage:
        answer = get_json(self.session, self.url, params=params, what="CDSE DeletedProducts")
        if not isinstance(answer, dict) or not isinstance(answer.get("value"), list):
            raise HttpError("CDSE DeletedProducts: unexpected answer (no `value` list)")
        return DeletionPage(int(answer.get("@odata.count", 0)), answer["value"])

"""CDSE products (SPEC §2): models of one OData product and its translation to a granule record.

Pure: no I/O. Used by the polling source (search pages) and the push source (notification `value`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
from collections.abc import Collection
from pathlib import Path
from typing import Annotated, Any

import msgspec
from pydantic import BaseModel, ConfigDict, Field

from db import GranuleRecord

# S2A_MSIL1C_20240912T112541_N0511_R137_T28PHQ_20240912T133420.SAFE
_NAME_PATTERN = re.compile(
    r"^(?P<platform>S2[A-D])_MSI(?P<level>L1C|L2A)_(?P<sensing>\d{8}T\d{6})_N\d{4}_R\d{3}_T(?P<tile>\d{2}[A-Z]{3})_"
)
_PRODUCT_TYPE_BY_LEVEL = {"L1C": "S2MSI1C", "L2A": "S2MSI2A"}


class ProductLookups:
    """Attribute and checksum lookups, shared by the two product models below."""

    __slots__ = ()

    def attribute(self, name: str) -> Any:
        return next((attribute.value for attribute in self.attributes if attribute.name == name), None)

    def checksum(self, algorithm: str) -> str | None:
        return next((c.value for c in self.checksums if c.algorithm.upper() == algorithm and c.value), None)


class Checksum(BaseModel):
    model_config = ConfigDict(extra="ignore")

    algorithm: str = Field(alias="Algorithm")
    value: str = Field(alias="Value")


class ContentDate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    start: dt.datetime = Field(alias="Start")
    end: dt.datetime | None = Field(None, alias="End")


class Attribute(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(alias="Name")
    value: Any = Field(None, alias="Value")


class CdseProduct(ProductLookups, BaseModel):
    """One product as CDSE describes it (fields we use; others ignored), validated with pydantic: the model
    for untrusted input (push notifications), whose errors name the field."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    id: str = Field(alias="Id", min_length=1)
    name: str = Field(alias="Name", min_length=1)
    content_length: int | None = Field(None, alias="ContentLength")
    publication_date: dt.datetime | None = Field(None, alias="PublicationDate")
    content_date: ContentDate = Field(alias="ContentDate")
    checksums: list[Checksum] = Field(default_factory=list, alias="Checksum")
    attributes: list[Attribute] = Field(default_factory=list, alias="Attributes")


# The same product decoded with msgspec, for search pages: a page holds 1,000 products of ~20 attributes each
# (~6 MB of JSON), which msgspec decodes in ~6 ms where the pydantic model takes ~90 ms.
class ListedChecksum(msgspec.Struct, rename="pascal"):
    algorithm: str
    value: str


class ListedContentDate(msgspec.Struct, rename="pascal"):
    start: dt.datetime
    end: dt.datetime | None = None


class ListedAttribute(msgspec.Struct, rename="pascal"):
    name: str
    value: Any = None


class ListedProduct(msgspec.Struct, ProductLookups, rename="pascal"):
    """One product of a search page (SPEC §2)."""

    id: Annotated[str, msgspec.Meta(min_length=1)]
    name: Annotated[str, msgspec.Meta(min_length=1)]
    content_date: ListedContentDate
    content_length: int | None = None
    publication_date: dt.datetime | None = None
    checksums: list[ListedChecksum] = msgspec.field(default_factory=list, name="Checksum")
    attributes: list[ListedAttribute] = msgspec.field(default_factory=list)


Product = CdseProduct | ListedProduct


def tile_of(product: Product) -> str | None:
    """MGRS tile: the `tileId` attribute, else the `_T28PHQ_` part of the name."""
    if tile := product.attribute("tileId"):
        return str(tile).removeprefix("T")
    match = _NAME_PATTERN.match(product.name)
    return match["tile"] if match else None


def platform_of(product: Product) -> str | None:
    """`S2A`…: the name's prefix, else `platformSerialIdentifier` (`A`)."""
    if match := _NAME_PATTERN.match(product.name):
        return match["platform"]
    serial = product.attribute("platformSerialIdentifier")
    return f"S2{serial}" if serial else None


def product_type_of(product: Product) -> str | None:
    if product_type := product.attribute("productType"):
        return str(product_type)
    match = _NAME_PATTERN.match(product.name)
    return _PRODUCT_TYPE_BY_LEVEL.get(match["level"]) if match else None


def download_url(download_base_url: str, product_id: str) -> str:
    return f"{download_base_url.rstrip('/')}/odata/v1/Products({product_id})/$value"


def to_record(product: Product, *, source: str, download_base_url: str) -> GranuleRecord:
    return GranuleRecord(
        id=product.id,
        filename=product.name,
        download_url=download_url(download_base_url, product.id),
        source=source,
        tile_id=tile_of(product),
        platform=platform_of(product),
        product_type=product_type_of(product),
        size=product.content_length,
        checksum=product.checksum("MD5"),
        blake3=product.checksum("BLAKE3"),
        sensing_start=product.content_date.start,
        sensing_end=product.content_date.end,
        published=product.publication_date,
    )


@dataclasses.dataclass(frozen=True)
class Criteria:
    """What we keep. Polling puts platform/type/recency in the query and relies on the tile check here."""

    allowed_tiles: Collection[str]
    platforms: Collection[str] | None = None
    product_type: str | None = None
    max_acquisition_age: dt.timedelta | None = None


def rejection_reason(record: GranuleRecord, criteria: Criteria, now: dt.datetime) -> str | None:
    """Why `record` is not wanted (a short reason for logs and metrics), or None when it is kept."""
    if criteria.platforms is not None and record.platform not in criteria.platforms:
        return "platform_not_configured"
    if criteria.product_type is not None and record.product_type != criteria.product_type:
        return "product_type_not_configured"
    if criteria.max_acquisition_age is not None and (
        record.sensing_start is None or record.sensing_start < now - criteria.max_acquisition_age
    ):
        return "acquired_too_long_ago"
    if record.tile_id not in criteria.allowed_tiles:
        return "tile_not_allowed"
    return None


@functools.cache
def load_allowed_tiles(path: Path) -> frozenset[str]:
    """The allow-list file: one MGRS tile per line (a leading `T` is tolerated), read once per process."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().removeprefix("T") for line in lines if line.strip() and not line.startswith("#"))

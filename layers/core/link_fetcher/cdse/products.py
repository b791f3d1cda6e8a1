"""CDSE products (SPEC §2): the models of one OData product and its translation to a granule record.

Pure: no I/O. One product shape, read by two decoders: pydantic for notifications and product lookups (its
errors name the field, for the push endpoint's 400), msgspec for search pages (a page of 1,000 products decodes
an order of magnitude faster). Their constraints are written once, below, so a product is malformed the same
way whichever source reads it.

Real shapes tolerated (SPEC §2, §3): `Checksum` empty or holding partial entries (`[{}]`), `ContentLength` 0 or
absent (size unknown), Ids in any case (stored lower-case). Malformed: a timestamp without offset, with an
offset beyond ±14:00 or a year outside 1900..2200 (`link_fetcher.timestamps`).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
from collections.abc import Collection, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Protocol, TypedDict

import msgspec
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from db import GranuleRecord, Source
from link_fetcher.cdse.downloads import download_url
from link_fetcher.mission import MISSION, OTHER_MISSION
from link_fetcher.timestamps import sensing_order_problem, timestamp_problem

# Ids go into URLs and object keys: CDSE's are UUIDs (its subscription test notification prefixes one with
# `test-notification-`), so letters, digits, `-`, `_` and `.` are all an Id may hold.
PRODUCT_ID_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z_.-]{0,254}$"
NO_NUL_PATTERN = r"^[^\x00]+$"


class Constraints(TypedDict, total=False):
    """Keywords both `pydantic.Field` and `msgspec.Meta` take."""

    pattern: str
    min_length: int
    max_length: int
    ge: int
    le: int


# The constraints of a product's fields, for both models.
ID: Constraints = {"pattern": PRODUCT_ID_PATTERN}
# Text stored in the database: no NUL (PostgreSQL refuses it), bounded.
STORED_TEXT: Constraints = {"min_length": 1, "max_length": 1024, "pattern": NO_NUL_PATTERN}
SIZE: Constraints = {"ge": 0, "le": 2**63 - 1}  # a bigint
DIGEST: Constraints = {"max_length": 128, "pattern": r"^[0-9a-fA-F]*$"}

_DIGEST_PATTERNS = {"MD5": re.compile(r"[0-9a-f]{32}"), "BLAKE3": re.compile(r"[0-9a-f]{64}")}


def _in_range(value: dt.datetime) -> dt.datetime:
    if problem := timestamp_problem(value):
        raise ValueError(problem)
    return value


# A product timestamp for the pydantic models (the error names the field).
Timestamp = Annotated[AwareDatetime, AfterValidator(_in_range)]


class _NamedValue(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def value(self) -> Any: ...


class _ChecksumValue(Protocol):
    @property
    def algorithm(self) -> str | None: ...
    @property
    def value(self) -> str | None: ...


class ProductLookups:
    """Attribute and checksum lookups, shared by the two product models below."""

    __slots__ = ()
    if TYPE_CHECKING:  # what the models below define
        attributes: Sequence[_NamedValue]
        checksums: Sequence[_ChecksumValue]

    def attribute(self, name: str) -> Any:
        return next((attribute.value for attribute in self.attributes if attribute.name == name), None)

    def checksum(self, algorithm: str) -> str | None:
        """The lower-case hex digest of `algorithm`; None when CDSE gave none: an entry without Algorithm or
        Value, or whose Value is not a digest of that algorithm, is no checksum."""
        for entry in self.checksums:
            if entry.algorithm and entry.algorithm.upper() == algorithm and entry.value:
                digest = entry.value.lower()
                if _DIGEST_PATTERNS[algorithm].fullmatch(digest):
                    return digest
        return None


# The pydantic models (notifications, product lookups, DeletedProducts entities).
StoredText = Annotated[str, Field(**STORED_TEXT)]


class Checksum(BaseModel):
    model_config = ConfigDict(extra="ignore")

    algorithm: str | None = Field(None, alias="Algorithm")
    value: Annotated[str, Field(**DIGEST)] | None = Field(None, alias="Value")


class ContentDate(BaseModel):
    model_config = ConfigDict(extra="ignore")

    start: Timestamp = Field(alias="Start")
    end: Timestamp | None = Field(None, alias="End")

    @model_validator(mode="after")
    def _ordered(self) -> ContentDate:
        if problem := sensing_order_problem(self.start, self.end):
            raise ValueError(problem)
        return self


class Attribute(BaseModel):
    model_config = ConfigDict(extra="ignore")

    name: str = Field(alias="Name")
    value: Any = Field(None, alias="Value")


class CdseProduct(ProductLookups, BaseModel):
    """One product as CDSE describes it (fields we use; others ignored), validated with pydantic: the model
    for untrusted input (push and PULL notifications, product lookups), whose errors name the field."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    id: Annotated[str, Field(**ID)] = Field(alias="Id")
    name: StoredText = Field(alias="Name")
    content_length: Annotated[int, Field(**SIZE)] | None = Field(None, alias="ContentLength")
    publication_date: Timestamp = Field(alias="PublicationDate")
    content_date: ContentDate = Field(alias="ContentDate")
    checksums: list[Checksum] = Field(default_factory=list, alias="Checksum")
    attributes: list[Attribute] = Field(default_factory=list, alias="Attributes")
    online: bool | None = Field(None, alias="Online")


# The same product decoded with msgspec, for search pages.
class ListedChecksum(msgspec.Struct, rename="pascal"):
    algorithm: str | None = None
    value: Annotated[str, msgspec.Meta(**DIGEST)] | None = None


def _check_timestamp(field: str, value: dt.datetime | None) -> None:
    if value is not None and (problem := timestamp_problem(value)):
        raise ValueError(f"{field}: {problem}")  # msgspec adds where: "… - at `$.ContentDate`"


class ListedContentDate(msgspec.Struct, rename="pascal"):
    start: dt.datetime
    end: dt.datetime | None = None

    def __post_init__(self) -> None:
        _check_timestamp("Start", self.start)
        _check_timestamp("End", self.end)
        if problem := sensing_order_problem(self.start, self.end):
            raise ValueError(f"End: {problem}")


class ListedAttribute(msgspec.Struct, rename="pascal"):
    name: str
    value: Any = None


class ListedProduct(msgspec.Struct, ProductLookups, rename="pascal"):
    """One product of a search page (SPEC §2)."""

    id: Annotated[str, msgspec.Meta(**ID)]
    name: Annotated[str, msgspec.Meta(**STORED_TEXT)]
    content_date: ListedContentDate
    publication_date: dt.datetime  # a page is paged by it
    content_length: Annotated[int, msgspec.Meta(**SIZE)] | None = None
    checksums: list[ListedChecksum] = msgspec.field(default_factory=list, name="Checksum")
    attributes: list[ListedAttribute] = msgspec.field(default_factory=list)
    online: bool | None = None

    def __post_init__(self) -> None:
        _check_timestamp("PublicationDate", self.publication_date)


class _ProductIdentity(msgspec.Struct, rename="pascal"):
    """What can still be read of a malformed product, for the report and the paging cursor."""

    id: Any = None
    publication_date: Any = None


@dataclasses.dataclass(frozen=True, slots=True)
class MalformedProduct:
    """A product of a search page that cannot be read: skipped and reported, its neighbours kept."""

    product_id: str | None
    field: str  # where the problem is: `ContentDate.End`, `Checksum[0].Value`, … (`product` for the whole)
    error: str
    published: dt.datetime | None  # its PublicationDate when usable: the page's order still counts it

    def describe(self) -> str:
        return f"product {self.product_id or '(no Id)'}: {self.field}: {self.error}"


_decode_listed = msgspec.json.Decoder(ListedProduct).decode
_decode_identity = msgspec.json.Decoder(_ProductIdentity).decode


def _fault(exc: msgspec.ValidationError) -> tuple[str, str]:
    """(field, problem) from msgspec's "problem - at `$.Field[0].Sub`"; a problem raised by our own checks
    starts with the field inside that path ("End: …" at `$.ContentDate`)."""
    problem, separator, at = str(exc).rpartition(" - at `")
    if not separator:  # about the product itself
        problem, at = str(exc), ""
    path = at.rstrip("`").removeprefix("$").lstrip(".")
    inner, separator, rest = problem.partition(": ")
    if separator and inner.isidentifier():
        return ".".join(part for part in (path, inner) if part), rest
    return path or "product", problem


def decode_listed_product(raw: bytes) -> ListedProduct | MalformedProduct:
    """One product of a search page, or why it cannot be read (with its Id and PublicationDate if readable)."""
    try:
        return _decode_listed(raw)
    except msgspec.ValidationError as exc:
        field, problem = _fault(exc)
    try:
        identity = _decode_identity(raw)
    except msgspec.ValidationError:  # not even an object
        identity = _ProductIdentity()
    product_id = identity.id if isinstance(identity.id, str) else None
    published = None
    if isinstance(identity.publication_date, str):
        try:
            candidate = dt.datetime.fromisoformat(identity.publication_date)
        except ValueError:
            candidate = None
        if candidate is not None and timestamp_problem(candidate) is None:
            published = candidate
    return MalformedProduct(product_id, field, problem, published)


Product = CdseProduct | ListedProduct


# Attribute values are free-form: only values of these shapes are kept (anything else is as if absent).
_TILE = re.compile(r"T?(\d{2}[A-Z]{3})")
_SERIAL = re.compile(r"[A-D]")
_PRODUCT_TYPE = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _attribute_match(product: Product, name: str, pattern: re.Pattern[str]) -> re.Match[str] | None:
    value = product.attribute(name)
    return pattern.fullmatch(value) if isinstance(value, str) else None


def is_other_mission(product: Product) -> bool:
    """A product of a mission not configured (`platformShortName` SENTINEL-1, or a name such as S1A_…)."""
    return MISSION.is_other_mission(product.attribute("platformShortName"), product.name)


def tile_of(product: Product) -> str | None:
    """MGRS tile: the `tileId` attribute, else the `_T28PHQ_` part of the name."""
    if match := _attribute_match(product, "tileId", _TILE):
        return match[1]
    name = MISSION.parse(product.name)
    return name.tile if name else None


def platform_of(product: Product) -> str | None:
    """`S2A`…: the name's platform, else `platformSerialIdentifier` (`A`); None for another mission's product,
    whatever its serial says (Sentinel-1A is no S2A)."""
    if is_other_mission(product):
        return None
    if name := MISSION.parse(product.name):
        return name.platform
    match = _attribute_match(product, "platformSerialIdentifier", _SERIAL)
    return MISSION.platform(match[0]) if match else None


def product_type_of(product: Product) -> str | None:
    if match := _attribute_match(product, "productType", _PRODUCT_TYPE):
        return match[0]
    name = MISSION.parse(product.name)
    return MISSION.product_type_of_level(name.level) if name else None


def to_record(product: Product, *, source: Source, download_base_url: str) -> GranuleRecord:
    product_id = product.id.lower()  # CDSE compares Ids case-insensitively: one spelling is stored
    product_name = MISSION.product_name_of(product.name)
    return GranuleRecord(
        id=product_id,
        filename=product.name,
        product_name=product_name,
        identity=MISSION.identity(product_name),
        download_url=download_url(download_base_url, product_id),
        source=source,
        tile_id=tile_of(product),
        platform=platform_of(product),
        product_type=product_type_of(product),
        size=product.content_length or None,  # 0 is CDSE's "not measured": unknown, so never verified
        online=product.online,
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


def product_rejection_reason(
    product: Product, record: GranuleRecord, criteria: Criteria, now: dt.datetime
) -> str | None:
    """`rejection_reason` of the product's record; first, a product of another mission is filtered as such
    (OTHER_MISSION), whatever tile and type it carries."""
    return OTHER_MISSION if is_other_mission(product) else rejection_reason(record, criteria, now)


@functools.cache
def load_allowed_tiles(path: Path) -> frozenset[str]:
    """The allow-list file: one MGRS tile per line (a leading `T` is tolerated), read once per process."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return frozenset(line.strip().removeprefix("T") for line in lines if line.strip() and not line.startswith("#"))

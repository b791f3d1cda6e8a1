"""CDSE push notifications (SPEC §3): pydantic models and parsing of a request body. Pure: no I/O."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError

from link_fetcher.products import CdseProduct, Checksum, ContentDate

# Stored text must not hold NUL (PostgreSQL refuses it), so such input is a 400, never a database error.
StoredText = Annotated[str, StringConstraints(min_length=1, max_length=1024, pattern=r"^[^\x00]+$")]
ProductId = Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")]
HexDigest = Annotated[str, StringConstraints(max_length=128, pattern=r"^[0-9a-fA-F]*$")]


class NotifiedChecksum(Checksum):
    value: HexDigest = Field(alias="Value")


class NotifiedContentDate(ContentDate):
    # Times without a zone cannot be compared with now, nor stored unambiguously.
    start: AwareDatetime = Field(alias="Start")
    end: AwareDatetime | None = Field(None, alias="End")


class NotifiedProduct(CdseProduct):
    """The notification's `value`: a CDSE product whose stored fields are checked before they reach the database."""

    id: ProductId = Field(alias="Id")
    name: StoredText = Field(alias="Name")
    content_length: int | None = Field(None, alias="ContentLength", ge=0, le=2**63 - 1)
    publication_date: AwareDatetime | None = Field(None, alias="PublicationDate")
    content_date: NotifiedContentDate = Field(alias="ContentDate")
    checksums: list[NotifiedChecksum] = Field(default_factory=list, alias="Checksum")


class Notification(BaseModel):
    """One notification; fields beyond these (`@odata.context`, …) are ignored."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    event: str = Field(alias="SubscriptionEvent")
    product: NotifiedProduct = Field(alias="value")
    product_id: str | None = Field(None, alias="ProductId")
    subscription_id: str | None = Field(None, alias="SubscriptionId")
    notification_date: dt.datetime | None = Field(None, alias="NotificationDate")
    ack_id: str | None = Field(None, alias="AckId")


class InvalidNotification(ValueError):
    """The body is not a notification; the message names the problem (the 400 answer's `error`)."""


_ONE = TypeAdapter(Notification)
_MANY = TypeAdapter(list[Notification])


def parse_notifications(body: bytes) -> list[Notification]:
    """One notification object or a non-empty JSON array of them."""
    is_array = body.lstrip()[:1] == b"["
    try:
        notifications = _MANY.validate_json(body) if is_array else [_ONE.validate_json(body)]
    except ValidationError as exc:
        raise InvalidNotification(_describe(exc, is_array)) from None
    if not notifications:
        raise InvalidNotification("body is an empty array: expected at least one notification")
    return notifications


def _describe(exc: ValidationError, is_array: bool) -> str:
    error = exc.errors(include_url=False, include_input=False)[0]
    if error["type"] == "json_invalid":
        return f"body is not valid JSON: {error['msg'].removeprefix('Invalid JSON: ')}"
    location = error["loc"]
    if not location or (is_array and len(location) == 1 and error["type"] == "model_type"):
        where = f"item {location[0]}" if location else "body"
        return f"{where} must be a notification object (or the body an array of them)"
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in location).lstrip(".")
    more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
    return f"{path}: {error['msg']}{more}"

"""CDSE subscription notifications (SPEC §3, §9), pushed or read from a PULL queue: the model and the parsing of a
request body. Pure: no I/O."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

import pydantic_core
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from link_fetcher.cdse.deleted_products import DeletedProduct
from link_fetcher.cdse.products import CdseProduct

DELETED_EVENT = "deleted"


class Notification(BaseModel):
    """One notification; fields beyond these (`@odata.context`, …) are ignored. Its `value` is a product, or for
    a `deleted` event a DeletedProducts entity (SPEC §9); a PULL notification older than 3 days may have none."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    event: str = Field(alias="SubscriptionEvent")
    # `Value` in CDSE's subscription test notification.
    product: CdseProduct | None = Field(None, alias="value", validation_alias=AliasChoices("value", "Value"))
    deletion: DeletedProduct | None = None
    product_id: str | None = Field(None, alias="ProductId")
    subscription_id: str | None = Field(None, alias="SubscriptionId")
    notification_date: dt.datetime | None = Field(None, alias="NotificationDate")
    ack_id: str | None = Field(None, alias="AckId")

    @model_validator(mode="before")
    @classmethod
    def _deletion_value(cls, data: Any) -> Any:
        """A `deleted` event's `value` is validated as a deletion, not as a product."""
        if isinstance(data, dict) and str(data.get("SubscriptionEvent", "")).lower() == DELETED_EVENT:
            value = data.get("value", data.get("Value"))
            data = {key: item for key, item in data.items() if key not in ("value", "Value")} | {"deletion": value}
        return data

    @property
    def is_deletion(self) -> bool:
        return self.event.lower() == DELETED_EVENT

    @property
    def has_value(self) -> bool:
        return self.product is not None or self.deletion is not None


class InvalidNotification(ValueError):
    """The body is not a notification; the message names the problem (the 400 answer's `error`)."""


_ONE = TypeAdapter(Notification)
# CDSE pushes every notification with its value (only the PULL queue drops it after 3 days).
_NO_VALUE = "value: Field required"


@dataclasses.dataclass(frozen=True, slots=True)
class MalformedNotification:
    """One notification of an array that cannot be read: reported, its neighbours recorded."""

    index: int
    product_id: str | None
    error: str  # names the field: `[1].value.ContentDate.End: …`


@dataclasses.dataclass(frozen=True, slots=True)
class ParsedBody:
    notifications: list[Notification]
    malformed: list[MalformedNotification]


def parse_notifications(body: bytes) -> ParsedBody:
    """One notification object or a non-empty JSON array of them, each validated on its own. InvalidNotification
    when nothing in the body is a notification (the message names the first problem)."""
    if body.lstrip()[:1] != b"[":
        try:
            notification = _ONE.validate_json(body)
        except ValidationError as exc:
            raise InvalidNotification(_describe(exc)) from None
        if not notification.has_value:
            raise InvalidNotification(_NO_VALUE)
        return ParsedBody([notification], [])
    try:
        items = pydantic_core.from_json(body)
    except ValueError as exc:
        raise InvalidNotification(f"body is not valid JSON: {exc}") from None
    if not items:
        raise InvalidNotification("body is an empty array: expected at least one notification")
    parsed = ParsedBody([], [])
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            parsed.malformed.append(MalformedNotification(index, None, f"item {index} must be a notification object"))
            continue
        try:
            notification = _ONE.validate_python(item)
        except ValidationError as exc:
            parsed.malformed.append(MalformedNotification(index, _product_id(item), _describe(exc, index)))
            continue
        if notification.has_value:
            parsed.notifications.append(notification)
        else:
            parsed.malformed.append(MalformedNotification(index, _product_id(item), f"[{index}].{_NO_VALUE}"))
    if not parsed.notifications:
        raise InvalidNotification(parsed.malformed[0].error)
    return parsed


def _product_id(item: dict[str, Any]) -> str | None:
    product = item.get("value", item.get("Value"))
    product_id = product.get("Id") if isinstance(product, dict) else item.get("ProductId")
    return product_id if isinstance(product_id, str) else None


def _describe(exc: ValidationError, index: int | None = None) -> str:
    error = exc.errors(include_url=False, include_input=False)[0]
    if error["type"] == "json_invalid":
        return f"body is not valid JSON: {error['msg'].removeprefix('Invalid JSON: ')}"
    location = error["loc"]
    if location[:1] == ("deletion",):  # a `deleted` event's `value`, validated under its own field
        location = ("value", *location[1:])
    if not location and index is None:
        return "body must be a notification object (or the body an array of them)"
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in location).lstrip(".")
    if index is not None:
        path = f"[{index}]" + (f".{path}" if path else "")
    more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
    return f"{path}: {error['msg']}{more}"

"""Push notifications: parsing (400 messages naming the field), Basic auth and the keep/skip decisions. Pure."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest

from link_fetcher.cdse.notifications import InvalidNotification, parse_notifications
from link_fetcher.cdse.products import Criteria
from link_fetcher.credentials import Credentials, CredentialsUnavailable
from link_fetcher.push.auth import credentials_source, is_authorized
from link_fetcher.push.decisions import decide
from link_fetcher.settings import read_settings
from tests.factories import PUSH_FIXTURE, cdse_product

pytestmark = pytest.mark.unit

NOW = dt.datetime(2024, 9, 13, tzinfo=dt.UTC)
CRITERIA = Criteria(
    allowed_tiles={"28PHQ"},
    platforms={"S2A", "S2B"},
    product_type="S2MSI1C",
    max_acquisition_age=dt.timedelta(days=30),
)
DOWNLOAD = "https://download.example"


def _body(value: object) -> bytes:
    return json.dumps(value).encode()


def _notification(**product: object) -> dict:
    return {**PUSH_FIXTURE, "value": cdse_product(**product)}


def test_real_fixture_parses_into_a_kept_record() -> None:
    [notification] = parse_notifications(_body(PUSH_FIXTURE)).notifications
    decision = decide(notification, CRITERIA, NOW, DOWNLOAD)
    assert decision.kept
    record = decision.record
    assert record.id == "f867a59a-9336-46d0-93ae-e55bf29403f8"
    assert (record.source, record.tile_id, record.platform, record.product_type) == (
        "subscription",
        "28PHQ",
        "S2A",
        "S2MSI1C",
    )
    assert record.checksum == "700a3f2014ab3670408b94e4310924dd"
    assert record.download_url == f"{DOWNLOAD}/odata/v1/Products({record.id})/$value"
    assert record.sensing_start == dt.datetime(2024, 9, 12, 11, 25, 41, 24000, tzinfo=dt.UTC)


def test_an_array_of_notifications_is_accepted() -> None:
    notifications = parse_notifications(_body([_notification(), _notification()])).notifications
    assert len(notifications) == 2 and notifications[0].product.id != notifications[1].product.id


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "body is not valid JSON"),
        (b"", "body is not valid JSON"),
        (b"\xff\xfe", "body is not valid JSON"),
        (b"[]", "empty array"),
        (b"42", "body must be a notification object"),
        (b"[1]", "item 0 must be a notification object"),
        (_body({k: v for k, v in PUSH_FIXTURE.items() if k != "value"}), "value: Field required"),
        (
            _body({k: v for k, v in PUSH_FIXTURE.items() if k != "SubscriptionEvent"}),
            "SubscriptionEvent: Field required",
        ),
        (_body({**PUSH_FIXTURE, "value": {k: v for k, v in PUSH_FIXTURE["value"].items() if k != "Id"}}), "value.Id"),
        (_body([{**PUSH_FIXTURE, "value": {**PUSH_FIXTURE["value"], "Id": 7}}]), "[0].value.Id"),
        (_body({**PUSH_FIXTURE, "value": {**PUSH_FIXTURE["value"], "Id": "../etc/passwd"}}), "value.Id"),
        (_body({**PUSH_FIXTURE, "value": {**PUSH_FIXTURE["value"], "Name": "a\x00b"}}), "value.Name"),
        (_body({**PUSH_FIXTURE, "value": {**PUSH_FIXTURE["value"], "ContentLength": 2**64}}), "value.ContentLength"),
        (
            _body(
                {**PUSH_FIXTURE, "value": {**PUSH_FIXTURE["value"], "ContentDate": {"Start": "2024-09-12T11:25:41"}}}
            ),
            "value.ContentDate.Start",
        ),
        (
            _body(
                {
                    **PUSH_FIXTURE,
                    "value": {**PUSH_FIXTURE["value"], "Checksum": [{"Algorithm": "MD5", "Value": "x\x00"}]},
                }
            ),
            "value.Checksum[0].Value",
        ),
    ],
)
def test_bad_bodies_name_the_problem(body: bytes, message: str) -> None:
    with pytest.raises(InvalidNotification) as caught:
        parse_notifications(body)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("event", "product", "reason"),
    [
        ("modified", {}, "event_not_created"),
        ("created", {"platform": "S2C"}, "platform_not_configured"),
        ("created", {"product_type": "S2MSI2A"}, "product_type_not_configured"),
        ("created", {"sensing": NOW - dt.timedelta(days=31)}, "acquired_too_long_ago"),
        ("created", {"tile": "33UUP"}, "tile_not_allowed"),
        ("Created", {"sensing": NOW - dt.timedelta(days=29, hours=23)}, None),
    ],
)
def test_decisions(event: str, product: dict, reason: str | None) -> None:
    [notification] = parse_notifications(_body({**_notification(**product), "SubscriptionEvent": event})).notifications
    assert decide(notification, CRITERIA, NOW, DOWNLOAD).reason == reason


def _basic(user: bytes, password: bytes) -> str:
    return "Basic " + base64.b64encode(user + b":" + password).decode()


@pytest.mark.parametrize(
    ("authorization", "ok"),
    [
        (_basic(b"cdse", b"s3cret:with:colons"), True),
        ("basic " + base64.b64encode(b"cdse:s3cret:with:colons").decode(), True),
        (_basic(b"cdse", b"wrong"), False),
        (_basic(b"other", b"s3cret:with:colons"), False),
        (_basic(b"cdse", b"s3cret:with:colons\xff"), False),
        ("Basic " + base64.b64encode(b"cdse").decode(), False),
        ("Basic not*base64", False),
        ("Bearer token", False),
        ("", False),
        (None, False),
    ],
)
def test_basic_auth(authorization: str | None, ok: bool) -> None:
    assert is_authorized(authorization, Credentials("cdse", "s3cret:with:colons")) is ok


def test_credentials_come_from_settings_or_are_a_configuration_error() -> None:
    settings = read_settings(None, subscription_username="u", subscription_password="p")
    assert credentials_source(settings)() == Credentials("u", "p")
    with pytest.raises(CredentialsUnavailable, match="SUBSCRIPTION_USERNAME"):
        credentials_source(read_settings(None, subscription_username="u"))

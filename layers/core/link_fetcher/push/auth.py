"""HTTP Basic authentication of CDSE's notifications: the expected credentials and a constant-time check."""

from __future__ import annotations

import binascii
import dataclasses
import hmac
from base64 import b64decode
from collections.abc import Callable

from link_fetcher.secrets import read_secret
from link_fetcher.settings import Settings


@dataclasses.dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str


def is_authorized(authorization: str | None, expected: Credentials) -> bool:
    """Whether an `Authorization: Basic …` header carries `expected`; compared in constant time."""
    scheme, _, encoded = (authorization or "").strip().partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    username, separator, password = decoded.partition(b":")
    # Both comparisons always run, so the time taken does not tell which part was wrong.
    username_ok = hmac.compare_digest(username, expected.username.encode())
    password_ok = hmac.compare_digest(password, expected.password.encode())
    return bool(separator) and username_ok and password_ok


def credentials_source(settings: Settings) -> Callable[[], Credentials]:
    """Where the expected credentials come from: the secret named by SUBSCRIPTION_SECRET_ARN (cached as
    link_fetcher.secrets says), else SUBSCRIPTION_USERNAME / SUBSCRIPTION_PASSWORD. ValueError when neither is set."""
    if arn := settings.subscription_secret_arn:
        return lambda: _from_secret(arn)
    if settings.subscription_username and settings.subscription_password:
        credentials = Credentials(settings.subscription_username, settings.subscription_password.get_secret_value())
        return lambda: credentials
    raise ValueError("set SUBSCRIPTION_USERNAME and SUBSCRIPTION_PASSWORD (or SUBSCRIPTION_SECRET_ARN)")


def _from_secret(arn: str) -> Credentials:
    """SecretUnavailable when it cannot be read: the endpoint then answers 503 (cannot authenticate now)."""
    secret = read_secret(arn, what="subscription", fields=("username", "password"))
    return Credentials(str(secret["username"]), str(secret["password"]))

"""HTTP Basic authentication of CDSE's notifications: the expected credentials and a constant-time check."""

from __future__ import annotations

import binascii
import hmac
from base64 import b64decode
from collections.abc import Callable

from link_fetcher.credentials import Credentials
from link_fetcher.settings import Settings


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
    """Where the expected credentials come from: SUBSCRIPTION_SECRET_ARN's secret (re-read as link_fetcher.credentials
    caches it; CredentialsUnavailable then means the endpoint cannot authenticate now), else SUBSCRIPTION_USERNAME
    and SUBSCRIPTION_PASSWORD. CredentialsUnavailable at once when neither is set."""
    return settings.subscription.credentials.required().resolve

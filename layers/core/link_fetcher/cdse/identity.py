"""CDSE Keycloak tokens (password grant, client `cdse-public`), cached and refreshed before they expire."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import requests

from link_fetcher.http import HttpError, make_session, raise_for_status, with_retries

if TYPE_CHECKING:
    from link_fetcher.settings import Settings

TOKEN_PATH = "/auth/realms/CDSE/protocol/openid-connect/token"  # noqa: S105 - a URL path
CLIENT_ID = "cdse-public"
# Renew this long before the token's stated expiry, so a token never expires mid-request.
EXPIRY_MARGIN_SECONDS = 60


class TokenProvider:
    """`token()` returns a valid access token; one provider per process and account is shared by threads."""

    def __init__(self, identity_url: str, username: str, password: str, session: requests.Session) -> None:
        if not username or not password:
            raise HttpError("CDSE_USERNAME and CDSE_PASSWORD are needed for a CDSE token")
        self._url = identity_url.rstrip("/") + TOKEN_PATH
        self._username = username
        self._password = password
        self._session = session
        self._lock = threading.Lock()
        self._access_token: str | None = None
        self._refresh_token: str | None = None
        self._expires_at = 0.0
        self._refresh_expires_at = 0.0

    def token(self) -> str:
        with self._lock:
            now = time.monotonic()
            if self._access_token is None or now >= self._expires_at:
                if self._refresh_token and now < self._refresh_expires_at:
                    try:
                        self._request({"grant_type": "refresh_token", "refresh_token": self._refresh_token})
                    except HttpError:
                        self._password_grant()
                else:
                    self._password_grant()
            assert self._access_token is not None
            return self._access_token

    def invalidate(self) -> None:
        """Forget the access token (after a 401), so the next `token()` fetches a new one."""
        with self._lock:
            self._access_token = None

    def send(self, request: Callable[[str], requests.Response]) -> requests.Response:
        """`request(token)`; a 401 answer gets one more try with a fresh token (the first may have expired or been
        revoked early). The second answer is returned, whatever it is."""
        response = request(self.token())
        if response.status_code != 401:
            return response
        response.close()
        self.invalidate()
        return request(self.token())

    def _password_grant(self) -> None:
        self._request({"grant_type": "password", "username": self._username, "password": self._password})

    def _request(self, form: dict[str, str]) -> None:
        def call() -> dict[str, Any]:
            response = self._session.post(self._url, data={**form, "client_id": CLIENT_ID})
            if response.status_code in (400, 401):
                raise HttpError("CDSE identity: credentials refused (check CDSE_USERNAME / CDSE_PASSWORD)", 401)
            raise_for_status(response, "CDSE identity")
            payload: dict[str, Any] = response.json()
            return payload

        payload = with_retries(call, what="CDSE identity")
        now = time.monotonic()
        self._access_token = payload["access_token"]
        self._expires_at = now + max(float(payload.get("expires_in", 600)) - EXPIRY_MARGIN_SECONDS, 0)
        self._refresh_token = payload.get("refresh_token")
        self._refresh_expires_at = now + max(float(payload.get("refresh_expires_in", 0)) - EXPIRY_MARGIN_SECONDS, 0)


def token_provider(settings: Settings) -> TokenProvider | None:
    """A token provider for the configured CDSE account, or None when no account is configured."""
    source = settings.cdse.credentials
    if not source.configured:
        return None
    account = source.resolve()  # CredentialsUnavailable: without the account no request can be made
    # The token request is safe to repeat, so POST is retried here.
    return TokenProvider(
        settings.cdse.identity_url, account.username, account.password, make_session(methods=("POST",))
    )

"""A fake CDSE Keycloak: the OpenID Connect token endpoint (password and refresh_token grants, client
`cdse-public`) for one configured account. Other services' fakes check bearer tokens with `is_valid`.

    with FakeIdentity(username="alice", password="pw") as identity:
        provider = TokenProvider(identity.url, "alice", "pw", make_session(methods=("POST",)))
        assert identity.is_valid(f"Bearer {provider.token()}")
"""

from __future__ import annotations

import secrets
import time
from urllib.parse import parse_qs

from tests.fakes.http_server import FakeHttpServer, Reply, json_reply

TOKEN_PATH = "/auth/realms/CDSE/protocol/openid-connect/token"
CLIENT_ID = "cdse-public"


class FakeIdentity(FakeHttpServer):
    def __init__(
        self,
        username: str = "cdse-user",
        password: str = "cdse-password",
        *,
        expires_in: int = 600,
        refresh_expires_in: int = 3600,
    ) -> None:
        super().__init__()
        self.username = username
        self.password = password
        self.expires_in = expires_in
        self.refresh_expires_in = refresh_expires_in
        self.password_grants = 0  # successful password grants
        self.refresh_grants = 0  # successful refresh grants
        self.refused = 0  # grants answered 401 / 400
        self._access_tokens: dict[str, float] = {}  # token -> monotonic expiry
        self._refresh_tokens: dict[str, float] = {}

    def is_valid(self, authorization: str | None) -> bool:
        """Whether an `Authorization` header carries a bearer token this server issued and has not expired."""
        if not authorization or not authorization.startswith("Bearer "):
            return False
        token = authorization.removeprefix("Bearer ").strip()
        with self.lock:
            expiry = self._access_tokens.get(token)
        return expiry is not None and time.monotonic() < expiry

    def revoke_all(self) -> None:
        """Expire every token issued so far (as a Keycloak restart or session logout would)."""
        with self.lock:
            self._access_tokens.clear()
            self._refresh_tokens.clear()

    def handle(self, method: str, path: str, query: str, headers: dict[str, str], body: bytes) -> Reply:
        if path != TOKEN_PATH:
            return json_reply(404, {"error": "RESTEASY003210: Could not find resource for full path"})
        if method != "POST":
            return json_reply(405, {"error": "HTTP 405 Method Not Allowed"})
        form = {key: values[0] for key, values in parse_qs(body.decode()).items()}
        if form.get("client_id") != CLIENT_ID:
            return self._refuse(401, "invalid_client", "Invalid client or Invalid client credentials")
        grant = form.get("grant_type")
        if grant == "password":
            if not (
                secrets.compare_digest(form.get("username", ""), self.username)
                and secrets.compare_digest(form.get("password", ""), self.password)
            ):
                return self._refuse(401, "invalid_grant", "Invalid user credentials")
            return self._issue("password_grants")
        if grant == "refresh_token":
            with self.lock:
                expiry = self._refresh_tokens.pop(form.get("refresh_token", ""), None)
            if expiry is None or time.monotonic() >= expiry:
                return self._refuse(400, "invalid_grant", "Invalid refresh token")
            return self._issue("refresh_grants")
        return self._refuse(400, "unsupported_grant_type", "Unsupported grant_type")

    def _refuse(self, status: int, error: str, description: str) -> Reply:
        with self.lock:
            self.refused += 1
        return json_reply(status, {"error": error, "error_description": description})

    def _issue(self, counter: str) -> Reply:
        access, refresh = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        now = time.monotonic()
        with self.lock:
            setattr(self, counter, getattr(self, counter) + 1)
            self._access_tokens[access] = now + self.expires_in
            self._refresh_tokens[refresh] = now + self.refresh_expires_in
        return json_reply(
            200,
            {
                "access_token": access,
                "expires_in": self.expires_in,
                "refresh_token": refresh,
                "refresh_expires_in": self.refresh_expires_in,
                "token_type": "Bearer",
                "scope": "AUDIENCE_PUBLIC openid email profile user-context",
            },
        )

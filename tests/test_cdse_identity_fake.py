"""The fake Keycloak against the real TokenProvider: tokens are issued, cached, refreshed and refused."""

from __future__ import annotations

import pytest

from link_fetcher.cdse.identity import TokenProvider
from link_fetcher.http import HttpError, make_session
from tests.fakes.cdse_identity import FakeIdentity


def _provider(identity: FakeIdentity, password: str) -> TokenProvider:
    return TokenProvider(identity.url, identity.username, password, make_session(methods=("POST",), attempts=2))


def test_password_grant_is_cached_and_valid() -> None:
    with FakeIdentity() as identity:
        provider = _provider(identity, identity.password)
        token = provider.token()
        assert provider.token() == token
        assert identity.password_grants == 1
        assert identity.is_valid(f"Bearer {token}")
        assert not identity.is_valid("Bearer forged") and not identity.is_valid(None)


def test_wrong_password_is_refused_with_one_line() -> None:
    with FakeIdentity() as identity:
        with pytest.raises(HttpError, match="credentials refused") as caught:
            _provider(identity, "wrong").token()
        assert caught.value.status == 401
        assert identity.refused == 1 and identity.password_grants == 0


def test_expired_token_is_refreshed_then_regranted_after_revocation() -> None:
    # expires_in at the provider's safety margin: every token() call renews.
    with FakeIdentity(expires_in=60) as identity:
        provider = _provider(identity, identity.password)
        first = provider.token()
        second = provider.token()
        assert first != second
        assert (identity.password_grants, identity.refresh_grants) == (1, 1)
        identity.revoke_all()
        assert not identity.is_valid(f"Bearer {second}")
        third = provider.token()  # the refresh token is gone: falls back to a password grant
        assert identity.is_valid(f"Bearer {third}")
        assert identity.password_grants == 2

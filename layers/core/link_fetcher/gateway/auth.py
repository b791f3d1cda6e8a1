"""API keys with roles (GATEWAY_API_KEYS), and a bound on the long-lived connections each key holds open.

Keys are kept only as SHA-256 digests and looked up by the digest of the presented key, so a lookup takes the
same time whatever the key; logs and errors name a key by its position in GATEWAY_API_KEYS, never by its value.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import hashlib
from collections import Counter
from collections.abc import Iterator, Mapping

from link_fetcher.gateway.errors import GatewayError


class Role(enum.IntEnum):
    """Each role may do what the lower ones may."""

    READ = 1
    WRITE = 2
    ADMIN = 3


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    name: str  # "key #N": position in GATEWAY_API_KEYS
    role: Role
    # What Redis records as the owner of this key's consumers: derived from the key's digest, so it survives a
    # reordering of GATEWAY_API_KEYS and names no key.
    owner: str


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def parse_api_keys(text: str) -> dict[bytes, Principal]:
    """`key1:read,key2:write,key3:admin` → {sha256(key): Principal}. Errors never repeat a key."""
    keys: dict[bytes, Principal] = {}
    for position, item in enumerate((part.strip() for part in text.split(",") if part.strip()), start=1):
        key, separator, role_name = item.rpartition(":")
        if not separator or not key:
            raise ValueError(f"GATEWAY_API_KEYS item {position} is not `key:role`")
        try:
            role = Role[role_name.strip().upper()]
        except KeyError:
            raise ValueError(
                f"GATEWAY_API_KEYS item {position} has role {role_name.strip()!r}; expected read, write or admin"
            ) from None
        digest = _digest(key)
        if digest in keys:
            raise ValueError(f"GATEWAY_API_KEYS item {position} repeats an earlier key")
        owner = hashlib.sha256(b"consumer-owner:" + digest).hexdigest()[:32]
        keys[digest] = Principal(name=f"key #{position}", role=role, owner=owner)
    if not keys:
        raise ValueError("GATEWAY_API_KEYS is empty: give at least one `key:role`")
    return keys


def presented_key(headers: Mapping[str, str], query: Mapping[str, str] | None = None) -> str | None:
    """The key from `Authorization: Bearer <key>`, else (WebSocket only) from `?token=`."""
    scheme, _, value = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if query is not None and query.get("token"):
        return query["token"]
    return None


def authorize(keys: Mapping[bytes, Principal], key: str | None, needed: Role) -> Principal:
    """The principal behind `key` if its role is at least `needed`; GatewayError 401 / 403 otherwise."""
    if key is None:
        raise GatewayError(401, "missing API key: send `Authorization: Bearer <key>`")
    principal = keys.get(_digest(key))
    if principal is None:
        raise GatewayError(401, "unknown API key")
    if principal.role < needed:
        raise GatewayError(403, f"this key has the {principal.role.name.lower()} role; {needed.name.lower()} is needed")
    return principal


class ConnectionLimiter:
    """Counts what each key holds at once: WebSockets, subscriptions and long polls, or GraphQL queries running
    (one event loop: no lock needed)."""

    def __init__(
        self,
        per_key: int,
        what: str = "connections",
        setting: str = "GATEWAY_MAX_CONNECTIONS_PER_KEY",
        retry_after_s: int = 5,
    ) -> None:
        self.per_key = per_key
        self.retry_after = str(retry_after_s)  # long polls and sockets last: a free slot is not a second away
        self.what = what
        self.setting = setting
        self._open: Counter[str] = Counter()

    @contextlib.contextmanager
    def hold(self, principal: Principal) -> Iterator[None]:
        if self._open[principal.name] >= self.per_key:
            raise GatewayError(
                429,
                f"{principal.name} already holds {self.per_key} {self.what} ({self.setting})",
                {"Retry-After": self.retry_after},
            )
        self._open[principal.name] += 1
        try:
            yield
        finally:
            self._open[principal.name] -= 1

"""Stream names: the one rule for them (SPEC §8) and the Redis keys link-fetcher keeps for itself beside them.

A stream name is 1-256 characters of `[A-Za-z0-9._:-]`. Two kinds of key are reserved, never listed, read or
written through the gateway: the relay's receipts beside each stream (`<stream>:relayed`), and everything under
`RESERVED_PREFIX`, where link-fetcher keeps its own bookkeeping (the gateway's consumer owners, for one).
"""

from __future__ import annotations

import re

MAX_LENGTH = 256
_NAME = re.compile(rf"[A-Za-z0-9._:-]{{1,{MAX_LENGTH}}}")
RECEIPTS_SUFFIX = ":relayed"
RESERVED_PREFIX = "link-fetcher:"


def is_valid(name: str) -> bool:
    return _NAME.fullmatch(name) is not None


def check(name: str, what: str = "stream name") -> str:
    """`name` if it is a valid stream name; ValueError saying why otherwise (the name cut short, printable). The
    gateway holds group and consumer names to the same rule (`what` says which it is)."""
    if not name:
        raise ValueError(f"a {what} must not be empty")
    if len(name) > MAX_LENGTH:
        raise ValueError(f"a {what} is at most {MAX_LENGTH} characters, this one has {len(name)}")
    if not is_valid(name):
        raise ValueError(f"{what} {name[:60]!r} has characters outside A-Z a-z 0-9 . _ : -")
    return name


def is_reserved(name: str) -> bool:
    """Whether `name` is a key link-fetcher keeps for itself (relay receipts, the gateway's bookkeeping)."""
    return name.endswith(RECEIPTS_SUFFIX) or name.startswith(RESERVED_PREFIX)


def receipts_key(stream: str) -> str:
    """The relay's hash of receipts (message id → the sending relay's receipt) beside `stream`."""
    return f"{stream}{RECEIPTS_SUFFIX}"


def reserved_key(*parts: str) -> str:
    """A key of link-fetcher's own bookkeeping, e.g. `reserved_key("consumers", stream, group)`."""
    return RESERVED_PREFIX + ":".join(parts)

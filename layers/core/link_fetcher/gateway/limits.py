"""Request checks with no I/O: entry ids, stream visibility, and the configured limits (clear 4xx past them)."""

from __future__ import annotations

import dataclasses
import fnmatch
import re

from link_fetcher import stream_names
from link_fetcher.gateway.errors import GatewayError
from link_fetcher.settings import Settings

# A full (`1718000000000-0`) or partial (`1718000000000`) stream entry id; each part at most 2^64 - 1.
_ENTRY_ID = re.compile(r"(\d{1,20})(?:-(\d{1,20}))?")
_MAX_ID_PART = 2**64 - 1


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    max_entry_bytes: int
    max_count: int
    max_block_ms: int
    max_connections_per_key: int
    send_queue: int
    max_pending: int
    key_entries_per_second: float
    graphql_max_cost: int
    graphql_concurrency_per_key: int

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits:
        """The limits as configured: each field is the gateway setting of its name (GATEWAY_<FIELD>)."""
        return cls(**{field.name: getattr(settings.gateway, field.name) for field in dataclasses.fields(cls)})

    def check_count(self, count: int) -> int:
        if count < 1:
            raise GatewayError(400, f"count must be at least 1, got {count}")
        if count > self.max_count:
            raise GatewayError(400, f"count {count} is above the limit of {self.max_count} (GATEWAY_MAX_COUNT)")
        return count

    def check_block(self, block_ms: int) -> int:
        if block_ms < 0:
            raise GatewayError(400, f"block must be 0 or more milliseconds, got {block_ms}")
        if block_ms > self.max_block_ms:
            raise GatewayError(
                400, f"block {block_ms} ms is above the limit of {self.max_block_ms} ms (GATEWAY_MAX_BLOCK_MS)"
            )
        return block_ms

    def check_fields(self, fields: object) -> dict[str, str]:
        """An entry to append: a non-empty object of string fields, at most max_entry_bytes (413 above)."""
        if not isinstance(fields, dict) or not fields:
            raise GatewayError(400, "the body must be a non-empty JSON object of string fields")
        not_text = sorted(name for name, value in fields.items() if not isinstance(value, str))
        if not_text:
            raise GatewayError(400, f"field values must be strings: {', '.join(not_text[:5])}")
        size = sum(len(name.encode()) + len(value.encode()) for name, value in fields.items())
        if size > self.max_entry_bytes:
            raise GatewayError(
                413, f"entry of {size} bytes is above the limit of {self.max_entry_bytes} (GATEWAY_MAX_ENTRY_BYTES)"
            )
        return fields


def check_entry_id(value: str, what: str = "id", *, allow_latest: bool = False) -> str:
    """A stream entry id (or `$`, "after the last one", where allowed); 400 otherwise."""
    if allow_latest and value == "$":
        return value
    match = _ENTRY_ID.fullmatch(value)
    if not match or any(int(part) > _MAX_ID_PART for part in match.groups() if part is not None):
        expected = "an entry id like 1718000000000-0" + (" or $" if allow_latest else "")
        raise GatewayError(400, f"{what} {value[:60]!r} is not {expected}")
    return value


def check_name(name: str, what: str) -> str:
    """A group or consumer name: the stream names' rule (SPEC §8), 400 otherwise."""
    try:
        return stream_names.check(name, what)
    except ValueError as exc:
        raise GatewayError(400, str(exc)) from None


def check_visible(stream: str, pattern: str) -> str:
    """A stream clients may use: a valid name (400), not one link-fetcher reserves for itself (403), and inside
    GATEWAY_STREAMS (404: streams outside it do not exist as far as clients can tell)."""
    check_name(stream, "stream name")
    if stream_names.is_reserved(stream):
        raise GatewayError(403, f"{stream[:100]!r} is reserved for link-fetcher's own use")
    if not fnmatch.fnmatchcase(stream, pattern):
        raise GatewayError(404, f"no stream {stream[:100]!r} on this gateway")
    return stream

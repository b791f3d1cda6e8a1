"""Redis Streams adapter (redis.asyncio): what the REST, WebSocket and GraphQL routes read and write."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError
from redis.typing import EncodableT, FieldT

from link_fetcher.gateway.errors import GatewayError

# {"id": "1718000000000-0", "fields": {...}}: the shape every interface sends. An entry trimmed from the
# stream while still pending in a group comes back with empty fields.
Entry = dict[str, Any]


def _entries(reply: Any) -> list[Entry]:
    """XREAD / XREADGROUP reply for one stream → entries."""
    if not reply:
        return []
    _stream, items = reply[0]
    return [{"id": entry_id, "fields": fields or {}} for entry_id, fields in items]


def _group_error(exc: ResponseError, stream: str, group: str) -> GatewayError | ResponseError:
    if str(exc).startswith("NOGROUP"):
        return GatewayError(404, f"no group {group!r} on stream {stream!r}")
    return exc


class StreamStore:
    def __init__(self, redis: Redis, maxlen: int | None = None) -> None:
        self.redis = redis
        self.maxlen = maxlen or None  # appends trim the stream to about this many entries (0: never)

    async def describe(self, pattern: str) -> list[dict[str, Any]]:
        """Every stream matching `pattern` with its length, first/last ids and groups, in two round trips."""
        names = sorted({name async for name in self.redis.scan_iter(match=pattern, count=1000, _type="STREAM")})
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            pipe.xinfo_stream(name)
            pipe.xinfo_groups(name)
        replies = await pipe.execute(raise_on_error=False) if names else []
        streams = []
        for index, name in enumerate(names):
            info, groups = replies[2 * index], replies[2 * index + 1]
            if isinstance(info, Exception) or isinstance(groups, Exception):
                continue  # deleted since the scan
            streams.append(
                {
                    "name": name,
                    "length": info["length"],
                    "first_entry_id": info["first-entry"][0] if info.get("first-entry") else None,
                    "last_entry_id": info["last-entry"][0] if info.get("last-entry") else None,
                    "groups": [
                        {
                            "name": group["name"],
                            "consumers": group["consumers"],
                            "pending": group["pending"],
                            "lag": group.get("lag"),  # None when Redis cannot tell (entries deleted mid-stream)
                        }
                        for group in groups
                    ],
                }
            )
        return streams

    async def read(self, stream: str, after: str, count: int, block_ms: int | None) -> list[Entry]:
        """Entries after `after` (`$`: only new ones); with block_ms, wait up to that long for the first."""
        return _entries(await self.redis.xread({stream: after}, count=count, block=block_ms or None))

    async def last_id(self, stream: str) -> str:
        """The id of the newest entry ever added ("0-0" for a stream that does not exist yet)."""
        try:
            return str((await self.redis.xinfo_stream(stream))["last-generated-id"])
        except ResponseError:
            return "0-0"

    async def append(self, stream: str, fields: dict[str, str]) -> str:
        entry: dict[FieldT, EncodableT] = {name: value for name, value in fields.items()}  # as redis-py types it
        entry_id = await self.redis.xadd(stream, entry, maxlen=self.maxlen, approximate=True)
        return entry_id.decode() if isinstance(entry_id, bytes) else entry_id

    async def create_group(self, stream: str, group: str, start: str) -> None:
        try:
            await self.redis.xgroup_create(stream, group, id=start, mkstream=True)
        except ResponseError as exc:
            if str(exc).startswith("BUSYGROUP"):
                raise GatewayError(409, f"group {group!r} already exists on stream {stream!r}") from None
            raise

    async def require_group(self, stream: str, group: str) -> None:
        try:
            groups = await self.redis.xinfo_groups(stream)
        except ResponseError:
            groups = []
        if not any(info["name"] == group for info in groups):
            raise GatewayError(404, f"no group {group!r} on stream {stream!r}")

    async def group_read(
        self, stream: str, group: str, consumer: str, count: int, block_ms: int | None, *, after: str = ">"
    ) -> list[Entry]:
        """`after=">"`: new entries, now pending for `consumer`; an id: the consumer's pending entries after it."""
        try:
            reply = await self.redis.xreadgroup(group, consumer, {stream: after}, count=count, block=block_ms or None)
        except ResponseError as exc:
            raise _group_error(exc, stream, group) from None
        return _entries(reply)

    async def ack(self, stream: str, group: str, ids: list[str]) -> int:
        if not ids:
            return 0
        try:
            return await self.redis.xack(stream, group, *ids)
        except ResponseError as exc:
            raise _group_error(exc, stream, group) from None

    async def group_feed(
        self, stream: str, group: str, consumer: str, batch: int, block_ms: int
    ) -> AsyncGenerator[list[Entry]]:
        """The consumer's pending entries first (what a crashed reader never acked), then new ones, forever."""
        cursor = "0"
        while entries := await self.group_read(stream, group, consumer, batch, None, after=cursor):
            yield entries
            cursor = entries[-1]["id"]
        while True:
            if entries := await self.group_read(stream, group, consumer, batch, block_ms):
                yield entries

    async def tail_feed(self, stream: str, after: str, batch: int, block_ms: int) -> AsyncGenerator[list[Entry]]:
        """Entries after `after` forever; `$` is pinned to the current last id so nothing added between reads is
        missed."""
        cursor = await self.last_id(stream) if after == "$" else after
        while True:
            if entries := await self.read(stream, cursor, batch, block_ms):
                yield entries
                cursor = entries[-1]["id"]

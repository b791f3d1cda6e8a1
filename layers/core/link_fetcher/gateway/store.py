"""Redis Streams adapter (redis.asyncio): what the REST, WebSocket and GraphQL routes read and write.

Blocking reads wait in slices of BLOCK_SLICE_MS, re-issued until the wait asked for is over (or the client has
gone), so every reply comes well within the client's socket timeout however long a stream stays idle. Large
reads go to Redis in chunks of READ_CHUNK, so one read never holds Redis or the event loop for long.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import ResponseError
from redis.typing import EncodableT, FieldT

from link_fetcher import stream_names
from link_fetcher.gateway.errors import GatewayError

# {"id": "1718000000000-0", "fields": {...}}: the shape every interface sends. An entry trimmed from the
# stream while still pending in a group comes back with empty fields.
Entry = dict[str, Any]
Gone = Callable[[], Awaitable[bool]]

BLOCK_SLICE_MS = 2_000
# Well above a block slice: a blocked read always answers before the socket gives up on it.
SOCKET_TIMEOUT_S = 10.0
READ_CHUNK = 100
# How long a feed at its consumer's pending limit waits for an ack before it looks again.
PENDING_RECHECK_S = 1.0

# Acks only entries pending for consumers of this key (or of no key: made outside the gateway); -1 and nothing
# acked if any id is another key's. KEYS: stream, owners; ARGV: group, owner, ids...
_ACK_OWNED = """
for i = 3, #ARGV do
  local held = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if held[1] then
    local owner = redis.call('HGET', KEYS[2], ARGV[1] .. '/' .. held[1][2])
    if owner and owner ~= ARGV[2] then return -1 end
  end
end
return redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, 3))
"""
# XAUTOCLAIM restricted to the caller's consumers (and ownerless ones): entries idle at least min_idle ms from
# `start` on, at most `count`, move to `to`. Returns {entries claimed, next start ("0-0": the end)}.
# KEYS: stream, owners; ARGV: group, to, owner, min_idle, start, count.
_CLAIM_OWNED = """
local held = redis.call('XPENDING', KEYS[1], ARGV[1], 'IDLE', ARGV[4], ARGV[5], '+', ARGV[6])
local ids = {}
for _, item in ipairs(held) do
  local owner = redis.call('HGET', KEYS[2], ARGV[1] .. '/' .. item[2])
  if item[2] ~= ARGV[2] and (not owner or owner == ARGV[3]) then ids[#ids + 1] = item[1] end
end
local nxt = '0-0'
if #held == tonumber(ARGV[6]) then
  local ms, seq = string.match(held[#held][1], '(%d+)-(%d+)')
  nxt = ms .. '-' .. (tonumber(seq) + 1)
end
if #ids == 0 then return {{}, nxt} end
return {redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], ARGV[4], unpack(ids)), nxt}
"""


def _entries(reply: Any) -> list[Entry]:
    """XREAD / XREADGROUP reply for one stream → entries."""
    if not reply:
        return []
    _stream, items = reply[0]
    return [{"id": entry_id, "fields": fields or {}} for entry_id, fields in items]


def _pairs(items: list[Any]) -> list[Entry]:
    """XCLAIM's raw reply (through a script: fields as a flat list) → entries."""
    return [
        {"id": entry_id, "fields": dict(zip(flat[::2], flat[1::2], strict=True)) if flat else {}}
        for entry_id, flat in items
    ]


def _group_error(exc: ResponseError, stream: str, group: str) -> GatewayError | ResponseError:
    if "NOGROUP" in str(exc):
        return GatewayError(404, f"no group {group!r} on stream {stream!r}")
    return exc


def owners_key(stream: str) -> str:
    """The hash recording which key owns each consumer of `stream`'s groups (field `group/consumer`: neither name
    can hold a `/`)."""
    return stream_names.reserved_key("consumers", stream)


Read = Callable[[str, int, int | None], Awaitable[list[Entry]]]


class StreamStore:
    def __init__(self, redis: Redis, maxlen: int | None = None) -> None:
        self.redis = redis
        self.maxlen = maxlen or None  # appends trim the stream to about this many entries (0: never)
        self._ack_owned = redis.register_script(_ACK_OWNED)
        self._claim_owned = redis.register_script(_CLAIM_OWNED)

    async def describe(self, pattern: str) -> list[dict[str, Any]]:
        """Every visible stream matching `pattern` with its length, first/last ids and groups, in two round trips;
        reserved and badly named keys are never listed."""
        found = {name async for name in self.redis.scan_iter(match=pattern, count=1000, _type="STREAM")}
        names = sorted(n for n in found if stream_names.is_valid(n) and not stream_names.is_reserved(n))
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

    async def _collect(
        self, read: Read, after: str, count: int, block_ms: int | None, gone: Gone | None
    ) -> list[Entry]:
        """Up to `count` entries from `read`, READ_CHUNK at a time; the first chunk waits up to block_ms, in
        slices. `after` ">" (a group's new entries) stays as it is; an id moves on with each chunk."""
        size = min(count, READ_CHUNK)
        entries = await self._first(read, after, size, block_ms, gone)
        chunk = len(entries)
        while chunk == size and len(entries) < count:
            size = min(READ_CHUNK, count - len(entries))
            more = await read(after if after == ">" else entries[-1]["id"], size, None)
            entries += more
            chunk = len(more)
        return entries

    @staticmethod
    async def _first(read: Read, after: str, count: int, block_ms: int | None, gone: Gone | None) -> list[Entry]:
        if not block_ms:
            return await read(after, count, None)
        deadline = time.monotonic() + block_ms / 1000
        while True:
            left_ms = int((deadline - time.monotonic()) * 1000)
            entries = await read(after, count, max(1, min(BLOCK_SLICE_MS, left_ms)))
            if entries or left_ms <= BLOCK_SLICE_MS or (gone is not None and await gone()):
                return entries

    async def _xread(self, stream: str, after: str, count: int, block_ms: int | None) -> list[Entry]:
        return _entries(await self.redis.xread({stream: after}, count=count, block=block_ms))

    async def read(
        self, stream: str, after: str, count: int, block_ms: int | None, gone: Gone | None = None
    ) -> list[Entry]:
        """Entries after `after` (`$`: only new ones); with block_ms, wait up to that long for the first."""
        if after == "$" and block_ms:
            after = await self.last_id(stream)  # pinned: slices after the first must not skip what came between
        return await self._collect(
            lambda cursor, n, block: self._xread(stream, cursor, n, block), after, count, block_ms, gone
        )

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

    async def own_consumer(self, stream: str, group: str, consumer: str, owner: str) -> None:
        """Record `owner` as the consumer's owner if it has none; 403 if another key owns it."""
        pipe = self.redis.pipeline(transaction=False)
        pipe.hsetnx(owners_key(stream), f"{group}/{consumer}", owner)
        pipe.hget(owners_key(stream), f"{group}/{consumer}")
        _set, held = await pipe.execute()
        if held != owner:
            raise GatewayError(403, f"consumer {consumer!r} of group {group!r} belongs to another key")

    async def pending_count(self, stream: str, group: str, consumer: str) -> int:
        """How many entries `consumer` holds unacknowledged (0 for a consumer Redis does not know yet)."""
        try:
            consumers = await self.redis.xinfo_consumers(stream, group)
        except ResponseError as exc:
            raise _group_error(exc, stream, group) from None
        return next((int(info["pending"]) for info in consumers if info["name"] == consumer), 0)

    async def _xreadgroup(
        self, stream: str, group: str, consumer: str, after: str, count: int, block_ms: int | None
    ) -> list[Entry]:
        try:
            reply = await self.redis.xreadgroup(group, consumer, {stream: after}, count=count, block=block_ms)
        except ResponseError as exc:
            raise _group_error(exc, stream, group) from None
        return _entries(reply)

    async def group_read(
        self,
        stream: str,
        group: str,
        consumer: str,
        count: int,
        block_ms: int | None,
        *,
        after: str = ">",
        gone: Gone | None = None,
    ) -> list[Entry]:
        """`after=">"`: new entries, now pending for `consumer`; an id: the consumer's pending entries after it."""
        return await self._collect(
            lambda cursor, n, block: self._xreadgroup(stream, group, consumer, cursor, n, block),
            after,
            count,
            block_ms,
            gone,
        )

    async def ack(self, stream: str, group: str, ids: list[str], owner: str) -> int:
        """XACK of the ids; 403 (nothing acked) if any is pending for another key's consumer."""
        if not ids:
            return 0
        try:
            acked = int(await self._ack_owned(keys=[stream, owners_key(stream)], args=[group, owner, *ids]))
        except ResponseError as exc:
            raise _group_error(exc, stream, group) from None
        if acked < 0:
            raise GatewayError(403, "some of these entries are pending for another key's consumer")
        return acked

    async def claim(
        self, stream: str, group: str, consumer: str, owner: str, *, min_idle_ms: int, start: str, count: int
    ) -> tuple[list[Entry], str]:
        """Entries idle for at least min_idle_ms in the key's other consumers → `consumer`; and where to go on
        from ("0-0": the whole pending list was scanned)."""
        try:
            claimed, after = await self._claim_owned(
                keys=[stream, owners_key(stream)], args=[group, consumer, owner, min_idle_ms, start, count]
            )
        except ResponseError as exc:
            raise _group_error(exc, stream, group) from None
        return _pairs(claimed), str(after)

    async def group_feed(
        self, stream: str, group: str, consumer: str, batch: int, *, max_pending: int, acked: asyncio.Event
    ) -> AsyncGenerator[list[Entry]]:
        """The consumer's pending entries first (what a crashed reader never acked), then new ones, forever, never
        more than max_pending unacknowledged: at the limit it waits for `acked` (set by whoever acks)."""
        cursor = "0"
        while entries := await self._xreadgroup(stream, group, consumer, cursor, batch, None):
            yield entries
            cursor = entries[-1]["id"]
        while True:
            room = max_pending - await self.pending_count(stream, group, consumer)
            if room <= 0:
                acked.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(acked.wait(), PENDING_RECHECK_S)
                continue
            if entries := await self._xreadgroup(stream, group, consumer, ">", min(batch, room), BLOCK_SLICE_MS):
                yield entries

    async def tail_feed(self, stream: str, after: str, batch: int) -> AsyncGenerator[list[Entry]]:
        """Entries after `after` forever; `$` is pinned to the current last id so nothing added between reads is
        missed."""
        cursor = await self.last_id(stream) if after == "$" else after
        while True:
            if entries := await self._xread(stream, cursor, batch, BLOCK_SLICE_MS):
                yield entries
                cursor = entries[-1]["id"]

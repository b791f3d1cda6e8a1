"""Redis Streams sink: each granule becomes one stream entry whose fields are a CloudEvent's attributes (SPEC §5).

A relay batch is one Lua script (EVALSHA: one round trip) that adds an entry per message and, with them, the
relay's receipt for each (the hash `<stream>:relayed`, message id → relay token), so the relay marks a lease's
batches sent together and a relay taking over a dead one's deliveries skips those already here.

The batch lands whole or not at all. MULTI/EXEC does not give that: a command that fails inside EXEC (an HSET on
a receipts key that is not a hash) leaves the others applied, and each relay would add the batch's entries again.
The script checks both keys' types before writing anything, so a wrong key fails the batch with nothing added;
Redis runs a script alone, so nothing changes the keys between the check and the writes, and a Redis short of
memory refuses a script's first write, before it has written anything.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
import redis
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from redis.typing import EncodableT, FieldT

from link_fetcher import stream_names
from link_fetcher.messages import cloudevent_attributes
from link_fetcher.sinks import BeforeSend, Message, SinkUnavailable
from link_fetcher.text import one_line, utc_iso

if TYPE_CHECKING:
    from link_fetcher.settings import Settings

_JSON = JSONFormat()
# KEYS: the stream, then (when the batch carries a receipt) the receipts hash. ARGV: MAXLEN ("" never trims), the
# receipt, then per message its id, its number of fields and its field/value pairs.
_SEND_BATCH = """
local function refuse_type(key, wanted)
    local kind = redis.call('TYPE', key)['ok']
    if kind ~= wanted and kind ~= 'none' then
        return redis.error_reply('WRONGTYPE ' .. key .. ' is a ' .. kind .. ', not a ' .. wanted .. ': nothing added')
    end
end
local refused = refuse_type(KEYS[1], 'stream') or (KEYS[2] and refuse_type(KEYS[2], 'hash'))
if refused then return refused end
local maxlen, receipt, at, added = ARGV[1], ARGV[2], 3, 0
local receipts = {}
while at <= #ARGV do
    local id, count = ARGV[at], tonumber(ARGV[at + 1])
    local command = {'XADD', KEYS[1]}
    if maxlen ~= '' then
        table.insert(command, 'MAXLEN'); table.insert(command, '~'); table.insert(command, maxlen)
    end
    table.insert(command, '*')
    for i = at + 2, at + 1 + 2 * count do table.insert(command, ARGV[i]) end
    redis.call(unpack(command))
    table.insert(receipts, id); table.insert(receipts, receipt)
    at, added = at + 2 + 2 * count, added + 1
end
if KEYS[2] and #receipts > 0 then redis.call('HSET', KEYS[2], unpack(receipts)) end
return added
"""
# Receipts outlive any relay run by far; those a crash leaves behind (already marked sent) go with the key.
RECEIPTS_TTL_S = 24 * 3600
_ENCODER = msgspec.json.Encoder()


def _field_text(value: Any) -> str:
    if isinstance(value, dt.datetime):
        return utc_iso(value)
    return str(value)


def stream_fields(body: Mapping[str, Any], *, time: dt.datetime) -> dict[str, str]:
    """The CloudEvent announcing `body` as flat stream fields: one per attribute (`cloudevent_attributes`), plus
    `data`, the body as JSON text. Built directly, not through a CloudEvent object and its JSON format, which
    would be most of what a relay batch to Redis costs besides the round trip (docs/benchmarks.md)."""
    fields = {name: _field_text(value) for name, value in cloudevent_attributes(body, time=time).items()}
    fields["data"] = _ENCODER.encode(body).decode()
    return fields


def event_from_fields(fields: Mapping[str | bytes, str | bytes]) -> CloudEvent:
    """The CloudEvent back from a stream entry's fields (what consumers call)."""
    attributes: dict[str, Any] = {_text(name): _text(value) for name, value in fields.items()}
    data = attributes.pop("data", None)
    if "time" in attributes:
        attributes["time"] = dt.datetime.fromisoformat(attributes["time"])
    payload = _JSON.read_data(data.encode(), attributes.get("datacontenttype")) if data is not None else None
    return CloudEvent(attributes, payload)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


class RedisStreamSink:
    name = "redis"

    def __init__(self, client: redis.Redis, stream: str, *, maxlen: int | None = None) -> None:
        self._client = client
        self.stream = stream
        self.maxlen = maxlen or None  # 0 / None: never trim
        # Registered once: redis-py sends EVALSHA, and the script itself only when Redis does not know it yet.
        self._send_batch = client.register_script(_SEND_BATCH)

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisStreamSink:
        # Short timeouts and a single quick retry: a Redis that is down must not hold the relay (and the other
        # sinks) for long; its deliveries stay pending for the next relay.
        if not settings.sinks.redis_url:
            raise ValueError("REDIS_URL is not set")
        client = redis.Redis.from_url(
            settings.sinks.redis_url,
            socket_connect_timeout=2,
            socket_timeout=5,
            retry=Retry(ExponentialBackoff(cap=0.2, base=0.05), retries=1),
        )
        return cls(client, settings.sinks.redis_stream, maxlen=settings.sinks.redis_stream_maxlen)

    @staticmethod
    def fields(message: Message) -> dict[FieldT, EncodableT]:
        """The stream entry of a message: its CloudEvent's fields (typed as redis-py takes them)."""
        fields = stream_fields(message.body, time=message.recorded_at or dt.datetime.now(dt.UTC))
        return {name: value for name, value in fields.items()}

    @property
    def receipts_key(self) -> str:
        """The hash of receipts (message id → the sending relay's receipt) beside the stream."""
        return stream_names.receipts_key(self.stream)

    def send(self, messages: Sequence[Message], before_send: BeforeSend | None = None) -> dict[str, str]:
        return self.send_with_receipt(messages, None, before_send)

    def send_with_receipt(
        self, messages: Sequence[Message], receipt: str | None, before_send: BeforeSend | None = None
    ) -> dict[str, str]:
        keys = [self.stream] if receipt is None else [self.stream, self.receipts_key]
        args: list[EncodableT] = ["" if self.maxlen is None else self.maxlen, receipt or ""]
        for message in messages:
            fields = stream_fields(message.body, time=message.recorded_at or dt.datetime.now(dt.UTC))
            args += [message.id, len(fields), *itertools.chain.from_iterable(fields.items())]
        if before_send is not None:
            before_send()
        try:
            self._send_batch(keys=keys, args=args)
        except redis.RedisError as exc:
            # Down, unreachable, or a key of the wrong type: nothing of this batch was added (see the module).
            raise SinkUnavailable(f"Redis stream {self.stream}: {one_line(exc)}") from exc
        return {}

    def received(self, message_ids: Sequence[str], receipt: str) -> set[str]:
        if not message_ids:
            return set()
        try:
            held = self._client.hmget(self.receipts_key, list(message_ids))
        except redis.RedisError as exc:
            raise SinkUnavailable(f"Redis stream {self.stream}: {one_line(exc)}") from exc
        return {i for i, value in zip(message_ids, held, strict=True) if value is not None and _text(value) == receipt}

    def forget(self, message_ids: Sequence[str]) -> None:
        if message_ids:
            with contextlib.suppress(redis.RedisError):  # they expire anyway
                pipe = self._client.pipeline(transaction=False)
                pipe.hdel(self.receipts_key, *message_ids)
                pipe.expire(self.receipts_key, RECEIPTS_TTL_S)  # what a crash leaves goes with the key
                pipe.execute()

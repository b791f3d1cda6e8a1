"""WebSocket `/streams/{stream}/ws`: a group consumer with acks, or a tail of the stream (SPEC §8).

Three tasks per socket: the pump reads Redis into a bounded queue, the sender writes frames from it, the
receiver applies acks. A slow client fills the queue and so stops its own pump (or, with `latest=1`, makes it
drop the oldest frames); it never grows memory. Group entries stay pending until acked, so whatever a
client did not ack — sent, queued or in flight — is sent again first when it reconnects as the same consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from redis.exceptions import RedisError
from starlette.websockets import WebSocketState

from link_fetcher.gateway.auth import Principal, Role, authorize, presented_key
from link_fetcher.gateway.errors import GatewayError
from link_fetcher.gateway.handlers import REDIS_UNAVAILABLE, redis_unavailable
from link_fetcher.gateway.limits import check_entry_id, check_name, check_visible
from link_fetcher.gateway.state import Gateway, error_response, gateway_of
from link_fetcher.gateway.store import Entry
from link_fetcher.text import one_line

log = logging.getLogger(__name__)
Spend = Callable[[int], Awaitable[None]]
router = APIRouter()

# Entries read from Redis per round trip (each read waits at most a block slice: see store).
READ_BATCH = 200
ACK_DRAIN_SECONDS = 2.0


def parse_ack_frame(text: str, max_ids: int) -> list[str]:
    """`{"ack": ID}` or `{"ack": [IDs]}` → the ids; ValueError for anything else."""
    try:
        frame = json.loads(text)
    except ValueError:
        raise ValueError('frames must be JSON like {"ack": ID} or {"ack": [IDs]}') from None
    ids = frame.get("ack") if isinstance(frame, dict) else None
    ids = [ids] if isinstance(ids, str) else ids
    if not isinstance(ids, list) or not all(isinstance(entry_id, str) for entry_id in ids):
        raise ValueError('frames must be JSON like {"ack": ID} or {"ack": [IDs]}')
    if len(ids) > max_ids:
        raise ValueError(f"at most {max_ids} ids per ack frame (GATEWAY_MAX_COUNT)")
    try:
        return [check_entry_id(entry_id, "ack id") for entry_id in ids]
    except GatewayError as exc:
        raise ValueError(exc.message) from None


async def _pump(feed: AsyncIterator[list[Entry]], queue: asyncio.Queue[str], drop_oldest: bool, spend: Spend) -> None:
    async for entries in feed:
        await spend(len(entries))
        for entry in entries:
            frame = json.dumps(entry, separators=(",", ":"))
            if drop_oldest and queue.full():
                queue.get_nowait()
            await queue.put(frame)


async def _send(websocket: WebSocket, queue: asyncio.Queue[str]) -> None:
    while True:
        await websocket.send_text(await queue.get())


async def _receive(websocket: WebSocket, ack: Callable[[list[str]], Awaitable[int]] | None, max_ids: int) -> None:
    while True:
        # The raw receive, not receive_text(): that refuses to read once a send has failed, and the frames a
        # client sent before leaving (its last acks) are still queued.
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            raise WebSocketDisconnect(message.get("code", 1000))
        text = message.get("text") or (message.get("bytes") or b"").decode(errors="replace")
        if ack is not None:  # a tail has nothing to acknowledge: its frames are ignored
            await ack(parse_ack_frame(text, max_ids))


def _close_code(error: BaseException) -> tuple[int, str] | None:
    """How to close after a task ended with `error`; None when the client is already gone."""
    if isinstance(error, ValueError):
        return 1008, str(error)[:120]
    if isinstance(error, GatewayError):
        return 1008, error.message[:120]
    if isinstance(error, RedisError):
        return 1011, REDIS_UNAVAILABLE
    if isinstance(error, WebSocketDisconnect | OSError | RuntimeError):
        return None
    return 1011, "internal error"


async def serve_socket(
    websocket: WebSocket,
    feed: AsyncIterator[list[Entry]],
    ack: Callable[[list[str]], Awaitable[int]] | None,
    *,
    queue_size: int,
    drop_oldest: bool,
    max_ids: int,
    spend: Spend,
) -> None:
    queue: asyncio.Queue[str] = asyncio.Queue(maxsize=queue_size)
    pump = asyncio.create_task(_pump(feed, queue, drop_oldest, spend))
    sender = asyncio.create_task(_send(websocket, queue))
    receiver = asyncio.create_task(_receive(websocket, ack, max_ids))
    try:
        done, _ = await asyncio.wait((pump, sender, receiver), return_when=asyncio.FIRST_COMPLETED)
        pump.cancel()
        sender.cancel()
        error = next((task.exception() for task in done if not task.cancelled() and task.exception()), None)
        close = _close_code(error) if error is not None else (1000, "")
        if error is not None and close and close[0] == 1011:
            log.warning("stream socket ended: %s", one_line(error))
        if close and websocket.application_state == WebSocketState.CONNECTED:
            with contextlib.suppress(RuntimeError, OSError, WebSocketDisconnect):
                await websocket.close(code=close[0], reason=close[1])
        if receiver not in done:
            # Acks a client sent just before it left still count: let the receiver apply what it was sent.
            await asyncio.wait({receiver}, timeout=ACK_DRAIN_SECONDS)
    finally:
        for task in (pump, sender, receiver):
            task.cancel()
        await asyncio.gather(pump, sender, receiver, return_exceptions=True)
        await feed.aclose()  # type: ignore[attr-defined]


@router.websocket("/streams/{stream}/ws")
async def stream_socket(
    websocket: WebSocket,
    stream: str,
    group: str | None = None,
    consumer: str | None = None,
    after: str = "$",
    latest: bool = False,
) -> None:
    """`?group=G&consumer=C`: entries stay pending until acked; `?after=ID|$[&latest=1]`: a tail."""
    gateway = gateway_of(websocket)
    with contextlib.ExitStack() as held:
        try:
            principal = authorize(gateway.keys, presented_key(websocket.headers, websocket.query_params), Role.READ)
            check_visible(stream, gateway.settings.gateway.streams)
            if (group is None) != (consumer is None):
                raise GatewayError(400, "give both group and consumer, or neither")
            if group is not None and consumer is not None:
                await own_group_consumer(gateway, stream, group, consumer, principal)
            else:
                check_entry_id(after, "after", allow_latest=True)
            held.enter_context(gateway.limiter.hold(principal))
        except GatewayError as exc:
            await websocket.send_denial_response(error_response(exc))
            return
        except RedisError as exc:
            await websocket.send_denial_response(error_response(redis_unavailable(exc)))
            return
        await websocket.accept()
        feed, acker = socket_feed(gateway, principal, stream, group, consumer, after)
        await serve_socket(
            websocket,
            feed,
            acker,
            queue_size=gateway.limits.send_queue,
            drop_oldest=latest,
            max_ids=gateway.limits.max_count,
            spend=functools.partial(gateway.budget.spend, principal),
        )


async def own_group_consumer(gateway: Gateway, stream: str, group: str, consumer: str, principal: Principal) -> None:
    """What a group feed needs first: valid names, the group, and the consumer this key's (403 if another's)."""
    check_name(group, "group name")
    check_name(consumer, "consumer name")
    await gateway.store.require_group(stream, group)
    await gateway.store.own_consumer(stream, group, consumer, principal.owner)


def socket_feed(
    gateway: Gateway, principal: Principal, stream: str, group: str | None, consumer: str | None, after: str
) -> tuple[AsyncIterator[list[Entry]], Callable[[list[str]], Awaitable[int]] | None]:
    """A group consumer's feed and its acker (acks wake a feed held at GATEWAY_MAX_PENDING), or a tail's feed."""
    store = gateway.store
    if group is None or consumer is None:
        return store.tail_feed(stream, after, READ_BATCH), None
    acked = asyncio.Event()

    async def ack(ids: list[str]) -> int:
        done = await store.ack(stream, group, ids, principal.owner)
        acked.set()
        return done

    feed = store.group_feed(stream, group, consumer, READ_BATCH, max_pending=gateway.limits.max_pending, acked=acked)
    return feed, ack

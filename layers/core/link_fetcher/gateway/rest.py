"""REST routes over the streams (SPEC §8). Every route needs a key; the role each needs is in its dependency."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from link_fetcher.gateway.auth import Principal, Role, authorize, presented_key
from link_fetcher.gateway.errors import GatewayError
from link_fetcher.gateway.limits import check_entry_id, check_name, check_visible
from link_fetcher.gateway.state import Gateway, gateway_of
from link_fetcher.gateway.store import Entry

router = APIRouter(tags=["streams"])

# JSON escaping can turn one byte of a field into six characters of body.
_JSON_ESCAPE_FACTOR = 6
_ENCODER = msgspec.json.Encoder()


# Dependencies are `async def`: FastAPI runs plain `def` ones in a worker thread, a hop per request.
def require(role: Role) -> Any:
    async def dependency(request: Request) -> Principal:
        return authorize(gateway_of(request).keys, presented_key(request.headers), role)

    return Depends(dependency)


async def visible_stream(request: Request, stream: str) -> str:
    return check_visible(stream, gateway_of(request).settings.gateway.streams)


async def current_gateway(request: Request) -> Gateway:
    return gateway_of(request)


async def named_group(group: str) -> str:
    return check_name(group, "group name")


GatewayDep = Annotated[Gateway, Depends(current_gateway)]
Stream = Annotated[str, Depends(visible_stream)]
GroupName = Annotated[str, Depends(named_group)]
Reader = Annotated[Principal, require(Role.READ)]


def long_poll(gateway: Gateway, principal: Principal, block_ms: int) -> contextlib.AbstractContextManager[None]:
    """A blocking read holds a connection open like a WebSocket: it counts against the key's limit (429 past it),
    so one key's polls cannot take every connection."""
    return gateway.limiter.hold(principal) if block_ms else contextlib.nullcontext()


class EntryOut(BaseModel):
    id: str
    fields: dict[str, str]


class EntriesOut(BaseModel):
    entries: list[EntryOut]


class GroupOut(BaseModel):
    name: str
    consumers: int
    pending: int
    lag: int | None


class StreamOut(BaseModel):
    name: str
    length: int
    first_entry_id: str | None
    last_entry_id: str | None
    groups: list[GroupOut]


class GroupCreate(BaseModel):
    group: str = Field(min_length=1, max_length=200)
    start: str = Field("$", description='"0": the whole stream, "$": only entries added from now, or an entry id')


class GroupRead(BaseModel):
    consumer: str = Field(min_length=1, max_length=200)
    count: int = 10
    block: int = Field(0, description="milliseconds to wait for new entries; 0 answers at once")
    pending: bool = Field(False, description="this consumer's unacknowledged entries instead of new ones")


class Ack(BaseModel):
    ids: list[str]


class Claim(BaseModel):
    consumer: str = Field(min_length=1, max_length=200, description="the consumer the entries go to")
    min_idle: int = Field(ge=0, description="milliseconds an entry must have waited unacknowledged")
    count: int = 100
    start: str = Field("0-0", description='where to go on from: a previous answer\'s "next"')


class Claimed(BaseModel):
    entries: list[EntryOut]
    next: str = Field(description='"0-0" once every pending entry has been looked at')


def entries_response(entries: list[Entry], **more: str) -> Response:
    """Entries as JSON, encoded in one step: validating a thousand entries through their model would hold the
    event loop (and every other key's requests) many times longer. The store gives them in the model's shape."""
    return Response(_ENCODER.encode({"entries": entries, **more}), media_type="application/json")


@contextlib.asynccontextmanager
async def charged(gateway: Gateway, principal: Principal, count: int) -> AsyncIterator[list[Entry]]:
    """Charge the key for `count` entries before reading; what the read (the list filled in the block) did not
    return is given back."""
    gateway.budget.take(principal, count)
    entries: list[Entry] = []
    try:
        yield entries
    finally:
        gateway.budget.give_back(principal, count - len(entries))


async def own(gateway: Gateway, stream: str, group: str, consumer: str, principal: Principal) -> str:
    """The consumer, recorded as this key's; 403 if another key's (400 for a bad name, 404 without the group)."""
    check_name(consumer, "consumer name")
    await gateway.store.require_group(stream, group)
    await gateway.store.own_consumer(stream, group, consumer, principal.owner)
    return consumer


@router.get("/streams", dependencies=[require(Role.READ)])
async def list_streams(gateway: GatewayDep) -> list[StreamOut]:
    """Visible streams with length, first/last entry ids and consumer groups (pending, lag)."""
    return await gateway.store.describe(gateway.settings.gateway.streams)  # type: ignore[return-value]


@router.get("/streams/{stream}/entries", response_model=EntriesOut)
async def read_entries(
    request: Request,
    gateway: GatewayDep,
    stream: Stream,
    principal: Reader,
    after: Annotated[str, Query(description="entry id to read after; $ for only new entries")] = "0",
    count: int = 100,
    block: Annotated[int, Query(description="milliseconds to wait when nothing is there yet")] = 0,
) -> Response:
    check_entry_id(after, "after", allow_latest=True)
    count, block = gateway.limits.check_count(count), gateway.limits.check_block(block)
    with long_poll(gateway, principal, block):
        async with charged(gateway, principal, count) as entries:
            entries += await gateway.store.read(stream, after, count, block, request.is_disconnected)
    return entries_response(entries)


@router.post(
    "/streams/{stream}/entries",
    status_code=201,
    dependencies=[require(Role.WRITE)],
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "object", "additionalProperties": {"type": "string"}}}},
        }
    },
)
async def append_entry(request: Request, gateway: GatewayDep, stream: Stream) -> dict[str, str]:
    """Append one entry (an object of string fields); 413 above GATEWAY_MAX_ENTRY_BYTES."""
    body_limit = gateway.limits.max_entry_bytes * _JSON_ESCAPE_FACTOR + 1024
    if int(request.headers.get("content-length") or 0) > body_limit:
        raise GatewayError(413, f"body above {body_limit} bytes (GATEWAY_MAX_ENTRY_BYTES)")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > body_limit:
            raise GatewayError(413, f"body above {body_limit} bytes (GATEWAY_MAX_ENTRY_BYTES)")
    try:
        fields = json.loads(body)
    except ValueError:
        raise GatewayError(400, "the body is not JSON") from None
    return {"id": await gateway.store.append(stream, gateway.limits.check_fields(fields))}


@router.post("/streams/{stream}/groups", status_code=201, dependencies=[require(Role.ADMIN)])
async def create_group(gateway: GatewayDep, stream: Stream, body: GroupCreate) -> dict[str, str]:
    """Create a consumer group (the stream too, if needed); 409 if the group exists."""
    check_name(body.group, "group name")
    check_entry_id(body.start, "start", allow_latest=True)
    await gateway.store.create_group(stream, body.group, body.start)
    return {"stream": stream, "group": body.group, "start": body.start}


@router.post("/streams/{stream}/groups/{group}/read", response_model=EntriesOut)
async def read_as_consumer(
    request: Request, gateway: GatewayDep, stream: Stream, group: GroupName, body: GroupRead, principal: Reader
) -> Response:
    """New entries for this consumer (pending until acked), or with `pending: true` its unacked ones. A consumer
    belongs to the key that first read as it (403 for others); one holding GATEWAY_MAX_PENDING unacknowledged
    entries gets no new ones (409) until it acks."""
    count = gateway.limits.check_count(body.count)
    block = gateway.limits.check_block(body.block)
    consumer = await own(gateway, stream, group, body.consumer, principal)
    if body.pending:
        async with charged(gateway, principal, count) as entries:
            entries += await gateway.store.group_read(stream, group, consumer, count, None, after="0")
        return entries_response(entries)
    room = gateway.limits.max_pending - await gateway.store.pending_count(stream, group, consumer)
    if room <= 0:
        raise GatewayError(
            409,
            f"consumer {consumer!r} holds {gateway.limits.max_pending} unacknowledged entries (GATEWAY_MAX_PENDING): "
            "ack them, or read them again with pending: true",
        )
    count = min(count, room)
    with long_poll(gateway, principal, block):
        async with charged(gateway, principal, count) as entries:
            entries += await gateway.store.group_read(
                stream, group, consumer, count, block, gone=request.is_disconnected
            )
    return entries_response(entries)


@router.post("/streams/{stream}/groups/{group}/ack")
async def ack_entries(
    gateway: GatewayDep, stream: Stream, group: GroupName, body: Ack, principal: Reader
) -> dict[str, int]:
    """Acknowledge entries; 403 (and nothing acked) if any is pending for another key's consumer."""
    if len(body.ids) > gateway.limits.max_count:
        raise GatewayError(400, f"at most {gateway.limits.max_count} ids per ack (GATEWAY_MAX_COUNT)")
    ids = [check_entry_id(entry_id, "ack id") for entry_id in body.ids]
    return {"acked": await gateway.store.ack(stream, group, ids, principal.owner)}


@router.post("/streams/{stream}/groups/{group}/claim", response_model=Claimed)
async def claim_entries(
    gateway: GatewayDep, stream: Stream, group: GroupName, body: Claim, principal: Reader
) -> Response:
    """Hand entries left unacknowledged for at least `min_idle` ms by this key's other consumers (or consumers of
    no key) to `consumer`, at most `count`, looking from `start`; go on from `next` until it is "0-0"."""
    count = gateway.limits.check_count(body.count)
    check_entry_id(body.start, "start")
    consumer = await own(gateway, stream, group, body.consumer, principal)
    async with charged(gateway, principal, count) as entries:
        found, after = await gateway.store.claim(
            stream, group, consumer, principal.owner, min_idle_ms=body.min_idle, start=body.start, count=count
        )
        entries += found
    return entries_response(entries, next=after)

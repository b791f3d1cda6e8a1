"""GraphQL `/graphql` (Strawberry): streams, entries, ack, and a subscription of entries over graphql-ws.

Every operation needs a read key: `Authorization: Bearer` on HTTP; on a WebSocket the header, `?token=`, or
(for browsers, which cannot set headers) `{"token": KEY}` in the connection_init payload.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncGenerator
from typing import Any

import strawberry
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket
from strawberry.exceptions import ConnectionRejectionError
from strawberry.extensions import MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter
from strawberry.fastapi import BaseContext, GraphQLRouter
from strawberry.scalars import JSON
from strawberry.types import Info
from strawberry.types.unset import UnsetType

from link_fetcher.gateway.auth import Principal, Role, authorize, presented_key
from link_fetcher.gateway.errors import GatewayError
from link_fetcher.gateway.limits import check_entry_id, check_visible
from link_fetcher.gateway.state import Gateway, gateway_of
from link_fetcher.gateway.websocket import READ_BATCH, READ_BLOCK_MS


@strawberry.type
class Group:
    name: str
    consumers: int
    pending: int
    lag: int | None


@strawberry.type
class Stream:
    name: str
    length: int
    first_entry_id: str | None
    last_entry_id: str | None
    groups: list[Group]


@strawberry.type
class Entry:
    id: str
    fields: JSON


def _gateway(info: Info) -> Gateway:
    gateway: Gateway = info.context["gateway"]
    return gateway


def _visible(info: Info, stream: str) -> str:
    return check_visible(stream, _gateway(info).settings.gateway_streams)


@strawberry.type
class Query:
    @strawberry.field(description="Visible streams with their consumer groups.")
    async def streams(self, info: Info) -> list[Stream]:
        described = await _gateway(info).store.describe(_gateway(info).settings.gateway_streams)
        return [Stream(**{**stream, "groups": [Group(**group) for group in stream["groups"]]}) for stream in described]

    @strawberry.field(description="Entries after an id, at most `count` (and GATEWAY_MAX_COUNT in all a query).")
    async def entries(self, info: Info, stream: str, after: str = "0", count: int = 10) -> list[Entry]:
        gateway = _gateway(info)
        check_entry_id(after, "after", allow_latest=True)
        # Aliases repeat a field: the entries one query reads are bounded in all, as one REST read is.
        left = info.context.setdefault("entries_left", gateway.limits.max_count)
        if gateway.limits.check_count(count) > left:
            raise GatewayError(
                400, f"a query reads at most {gateway.limits.max_count} entries in all (GATEWAY_MAX_COUNT)"
            )
        info.context["entries_left"] = left - count
        found = await gateway.store.read(_visible(info, stream), after, count, None)
        return [Entry(**entry) for entry in found]


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Acknowledge entries read by a group consumer; returns how many were pending.")
    async def ack(self, info: Info, stream: str, group: str, ids: list[str]) -> int:
        gateway = _gateway(info)
        if len(ids) > gateway.limits.max_count:
            raise GatewayError(400, f"at most {gateway.limits.max_count} ids per ack (GATEWAY_MAX_COUNT)")
        checked = [check_entry_id(entry_id, "ack id") for entry_id in ids]
        return await gateway.store.ack(_visible(info, stream), group, checked)


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="With group and consumer: the consumer's pending entries, then new ones (ack them with the "
        "ack mutation). Without: new entries after `after` ($: from now)."
    )
    async def entries(
        self, info: Info, stream: str, group: str | None = None, consumer: str | None = None, after: str = "$"
    ) -> AsyncGenerator[Entry]:
        gateway = _gateway(info)
        _visible(info, stream)
        if (group is None) != (consumer is None):
            raise GatewayError(400, "give both group and consumer, or neither")
        if group is not None and consumer is not None:
            await gateway.store.require_group(stream, group)
            feed = gateway.store.group_feed(stream, group, consumer, READ_BATCH, READ_BLOCK_MS)
        else:
            feed = gateway.store.tail_feed(
                stream, check_entry_id(after, "after", allow_latest=True), READ_BATCH, READ_BLOCK_MS
            )
        with gateway.limiter.hold(info.context["principal"]):
            try:
                async for found in feed:
                    for entry in found:
                        yield Entry(**entry)
            finally:
                await feed.aclose()


# A query's cost is bounded before it runs: aliases, depth and size (one query cannot stand for thousands).
MAX_ALIASES, MAX_DEPTH, MAX_TOKENS = 10, 6, 2000
schema = strawberry.Schema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    extensions=[
        functools.partial(MaxAliasesLimiter, max_alias_count=MAX_ALIASES),
        functools.partial(QueryDepthLimiter, max_depth=MAX_DEPTH),
        functools.partial(MaxTokensLimiter, max_token_count=MAX_TOKENS),
    ],
)


async def graphql_context(connection: HTTPConnection) -> dict[str, Any]:
    """HTTP: a read key or 401/403 now. WebSocket: the key may still come in connection_init (on_ws_connect)."""
    gateway = gateway_of(connection)
    is_socket = isinstance(connection, WebSocket)
    key = presented_key(connection.headers, connection.query_params if is_socket else None)
    principal: Principal | None = None
    if not is_socket:
        principal = authorize(gateway.keys, key, Role.READ)
    elif key is not None:
        try:
            principal = authorize(gateway.keys, key, Role.READ)
        except GatewayError:
            principal = None
    return {"gateway": gateway, "principal": principal}


class GatewayGraphQLRouter(GraphQLRouter):
    async def on_ws_connect(self, context: BaseContext | dict[str, Any]) -> UnsetType | dict[str, object] | None:
        assert isinstance(context, dict)  # graphql_context makes a dict
        if context["principal"] is None:
            params = context.get("connection_params") or {}
            key = params.get("token") or presented_key({"authorization": str(params.get("Authorization", ""))})
            try:
                context["principal"] = authorize(
                    context["gateway"].keys, key if isinstance(key, str) else None, Role.READ
                )
            except GatewayError as exc:
                raise ConnectionRejectionError({"error": exc.message}) from None
        return await super().on_ws_connect(context)


def graphql_router() -> GraphQLRouter:
    return GatewayGraphQLRouter(schema, context_getter=graphql_context, graphql_ide=None)

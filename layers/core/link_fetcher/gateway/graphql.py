"""GraphQL `/graphql` (Strawberry): streams, entries, ack, and a subscription of entries over graphql-ws.

Every operation needs a read key: `Authorization: Bearer` on HTTP; on a WebSocket the header, `?token=`, or
(for browsers, which cannot set headers) `{"token": KEY}` in the connection_init payload.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncGenerator, Iterator
from typing import Any

import strawberry
from graphql import GraphQLError
from redis.exceptions import RedisError, ResponseError
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket
from strawberry.exceptions import ConnectionRejectionError
from strawberry.extensions import MaxTokensLimiter, ParserCache, SchemaExtension, ValidationCache
from strawberry.fastapi import BaseContext, GraphQLRouter
from strawberry.scalars import JSON
from strawberry.types import ExecutionResult, Info
from strawberry.types.graphql import OperationType as StrawberryOperationType
from strawberry.types.unset import UnsetType

from link_fetcher.gateway import graphql_cost
from link_fetcher.gateway.auth import Principal, Role, authorize, presented_key
from link_fetcher.gateway.errors import GatewayError
from link_fetcher.gateway.handlers import REDIS_UNAVAILABLE, redis_unavailable
from link_fetcher.gateway.limits import check_entry_id, check_visible
from link_fetcher.gateway.state import Gateway, gateway_of
from link_fetcher.gateway.websocket import READ_BATCH, own_group_consumer

log = logging.getLogger(__name__)
DEFAULT_COUNT = 10
# What a query takes from its key's entries budget: GraphQL spends far more of the event loop than REST per
# entry (a resolver and a completion per field of each), plus parsing and validating each query.
QUERY_UNITS, ENTRY_UNITS = 200, 5


def budget_units(cost: int) -> int:
    """The entries-budget charge of a query that asks for `cost` entries."""
    return QUERY_UNITS + ENTRY_UNITS * cost


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
    return check_visible(stream, _gateway(info).settings.gateway.streams)


@strawberry.type
class Query:
    @strawberry.field(description="Visible streams with their consumer groups.")
    async def streams(self, info: Info) -> list[Stream]:
        described = await _gateway(info).store.describe(_gateway(info).settings.gateway.streams)
        return [Stream(**{**stream, "groups": [Group(**group) for group in stream["groups"]]}) for stream in described]

    @strawberry.field(
        description="Entries after an id, at most `count`; a query asks for at most GATEWAY_GRAPHQL_MAX_COST "
        "entries in all its aliases."
    )
    async def entries(self, info: Info, stream: str, after: str = "0", count: int = DEFAULT_COUNT) -> list[Entry]:
        gateway = _gateway(info)
        check_entry_id(after, "after", allow_latest=True)
        # Charged before the query ran (Admission); this only guards against reading more than was charged.
        left = info.context.get("entries_left", 0)
        if gateway.limits.check_count(count) > left:
            raise GatewayError(400, "this query reads more entries than its cost allowed")
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
        return await gateway.store.ack(_visible(info, stream), group, checked, info.context["principal"].owner)


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="With group and consumer: the consumer's pending entries, then new ones (ack them with the "
        "ack mutation). Without: new entries after `after` ($: from now)."
    )
    async def entries(
        self, info: Info, stream: str, group: str | None = None, consumer: str | None = None, after: str = "$"
    ) -> AsyncGenerator[Entry]:
        gateway, principal = _gateway(info), info.context["principal"]
        _visible(info, stream)
        if (group is None) != (consumer is None):
            raise GatewayError(400, "give both group and consumer, or neither")
        with gateway.limiter.hold(principal), redis_masked():
            if group is not None and consumer is not None:
                await own_group_consumer(gateway, stream, group, consumer, principal)
                # Acks come by the ack mutation, elsewhere: at its pending limit the feed looks again each second.
                feed = gateway.store.group_feed(
                    stream, group, consumer, READ_BATCH, max_pending=gateway.limits.max_pending, acked=asyncio.Event()
                )
            else:
                feed = gateway.store.tail_feed(stream, check_entry_id(after, "after", allow_latest=True), READ_BATCH)
            try:
                async for found in feed:
                    await gateway.budget.spend(principal, len(found))
                    for entry in found:
                        yield Entry(**entry)
            finally:
                await feed.aclose()


@contextlib.contextmanager
def redis_masked() -> Iterator[None]:
    """Redis failing is "redis unavailable" to the client: its address and error go to the log only."""
    try:
        yield
    except ResponseError:
        raise
    except RedisError as exc:
        raise redis_unavailable(exc) from None


class Admission(SchemaExtension):
    """Before a query or mutation is validated (the costly part of a small query) or run: its aliases, its depth
    (introspection included), its cost (aliases x count) against GATEWAY_GRAPHQL_MAX_COST, then the key's GraphQL
    concurrency and entries budget (`budget_units`; 429 past them). A refused query costs a parse."""

    def on_operation(self) -> Iterator[None]:
        self._held = contextlib.ExitStack()  # the key's concurrency slot, from admission to the answer
        with self._held:
            yield

    def on_validate(self) -> Iterator[None]:
        context = self.execution_context
        document = context.graphql_document
        if document is not None and context.operation_type != StrawberryOperationType.SUBSCRIPTION:
            if (found := graphql_cost.aliases(document)) > MAX_ALIASES:
                raise GatewayError(400, f"{found} aliases found, above the limit of {MAX_ALIASES}")
            found = graphql_cost.depth(document, context.operation_name)
            if found > MAX_DEPTH:
                raise GatewayError(400, f"query depth {found} is above the limit of {MAX_DEPTH}")
            state: dict[str, Any] = context.context
            gateway: Gateway = state["gateway"]
            cost = graphql_cost.cost(document, context.variables, context.operation_name, DEFAULT_COUNT)
            if cost > gateway.limits.graphql_max_cost:
                raise GatewayError(
                    400,
                    f"query cost {cost} (entries asked in all its aliases) is above the limit of "
                    f"{gateway.limits.graphql_max_cost} (GATEWAY_GRAPHQL_MAX_COST)",
                )
            self._held.enter_context(gateway.graphql_slots.hold(state["principal"]))
            gateway.budget.take(state["principal"], budget_units(cost))
            state["entries_left"] = cost
        yield


# A query's cost is bounded before it runs: aliases, depth and size (one query cannot stand for thousands).
MAX_ALIASES, MAX_DEPTH, MAX_TOKENS = 10, 6, 2000


class GatewaySchema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: Any = None) -> None:
        """A refused request is the client's doing, not the gateway's: one INFO line, not an ERROR traceback."""
        ours = [error for error in errors if isinstance(error.original_error, GatewayError) or not error.original_error]
        for error in ours:
            log.info("graphql request refused: %s", error.message)
        super().process_errors([error for error in errors if error not in ours], execution_context)


schema = GatewaySchema(
    query=Query,
    mutation=Mutation,
    subscription=Subscription,
    extensions=[
        functools.partial(MaxTokensLimiter, max_token_count=MAX_TOKENS),
        Admission,
        # Validating a query costs more of the event loop than running a small one: a query seen before is not
        # validated again (its validation rules are the standard ones, so the cache can tell it is the same).
        functools.partial(ParserCache, maxsize=256),
        functools.partial(ValidationCache, maxsize=256),
    ],
)


def mask_redis_errors(result: ExecutionResult) -> None:
    """Redis failing under a resolver is "redis unavailable" (503): its address and error go to the log only."""
    errors = result.errors or []
    for index, error in enumerate(errors):
        if isinstance(error.original_error, RedisError) and not isinstance(error.original_error, ResponseError):
            unavailable = redis_unavailable(error.original_error)
            errors[index] = GraphQLError(REDIS_UNAVAILABLE, error.nodes, path=error.path, original_error=unavailable)


def answer_status(result: ExecutionResult) -> tuple[int, dict[str, str]]:
    """The HTTP status of a query's answer: that of the first gateway error (400 limits, 429 budget, 404, 403),
    503 for Redis, 400 for a query refused before it ran (invalid, over a limit), else 200."""
    for error in result.errors or ():
        original = error.original_error
        if isinstance(original, GatewayError):
            return original.status_code, original.headers
    if result.errors and result.data is None:
        return 400, {}
    return 200, {}


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
    async def execute_operation(self, *args: Any, **kwargs: Any) -> Any:
        """A refused query answers 4xx, not 200 with errors (SPEC §8's limits are the request's fault)."""
        result = await super().execute_operation(*args, **kwargs)
        if isinstance(result, ExecutionResult):
            mask_redis_errors(result)
            status, headers = answer_status(result)
            kwargs["sub_response"].status_code = status
            kwargs["sub_response"].headers.update(headers)
        return result

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

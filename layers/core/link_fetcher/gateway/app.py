"""The gateway's FastAPI app: REST, WebSocket and GraphQL over the Redis streams, the ops console, /healthz."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from redis.asyncio import Redis

from link_fetcher.database import configured_url, engine_for
from link_fetcher.gateway import ops
from link_fetcher.gateway.auth import ConnectionLimiter, parse_api_keys
from link_fetcher.gateway.budget import EntryBudget
from link_fetcher.gateway.graphql import budget_units, graphql_router
from link_fetcher.gateway.handlers import add_error_handlers
from link_fetcher.gateway.limits import Limits
from link_fetcher.gateway.rest import router as rest_router
from link_fetcher.gateway.state import Gateway
from link_fetcher.gateway.store import SOCKET_TIMEOUT_S, StreamStore
from link_fetcher.gateway.websocket import router as websocket_router
from link_fetcher.settings import Settings


def build_gateway(settings: Settings) -> Gateway:
    """Check the configuration (ValueError naming what is wrong) and build the clients; nothing connects yet."""
    if not settings.sinks.redis_url:
        raise ValueError("REDIS_URL is not set: the gateway serves Redis streams")
    if settings.gateway.api_keys is None:
        raise ValueError("GATEWAY_API_KEYS is not set: give `key:role` pairs (roles read, write, admin)")
    keys = parse_api_keys(settings.gateway.api_keys.get_secret_value())
    limits = Limits.from_settings(settings)
    # redis-py's default socket timeout is shorter than a blocked read: the store blocks in slices well within
    # this one.
    redis = Redis.from_url(
        settings.sinks.redis_url,
        decode_responses=True,
        encoding_errors="replace",
        socket_connect_timeout=5,
        socket_timeout=SOCKET_TIMEOUT_S,
    )
    return Gateway(
        settings=settings,
        keys=keys,
        limits=limits,
        store=StreamStore(redis, settings.sinks.redis_stream_maxlen),
        limiter=ConnectionLimiter(limits.max_connections_per_key),
        engine=engine_for(settings) if configured_url(settings) else None,
        # The bucket holds at least what the largest single request may be charged.
        budget=EntryBudget(
            limits.key_entries_per_second,
            max(limits.max_count, int(limits.key_entries_per_second), budget_units(limits.graphql_max_cost)),
        ),
        graphql_slots=ConnectionLimiter(
            limits.graphql_concurrency_per_key,
            "GraphQL queries running",
            "GATEWAY_GRAPHQL_CONCURRENCY_PER_KEY",
            retry_after_s=1,
        ),
    )


def create_app(settings: Settings) -> FastAPI:
    gateway = build_gateway(settings)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        await gateway.store.redis.aclose()

    # The API description and its page need a key like the rest (read role): `/docs?token=KEY` for a browser.
    app = FastAPI(
        title="link-fetcher stream gateway",
        description="The granule delivery streams over REST, WebSocket and GraphQL, and an ops console.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.gateway = gateway
    add_error_handlers(app)
    app.include_router(rest_router)
    app.include_router(websocket_router)
    app.include_router(graphql_router(), prefix="/graphql", tags=["graphql"])
    app.include_router(ops.router)
    app.mount("/static", StaticFiles(directory=ops.STATIC), name="static")
    return app

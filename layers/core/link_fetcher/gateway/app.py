"""The gateway's FastAPI app: REST, WebSocket and GraphQL over the Redis streams, the ops console, /healthz."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException

from link_fetcher.database import configured_url, engine_for
from link_fetcher.gateway import console
from link_fetcher.gateway.auth import ConnectionLimiter, Role, authorize, parse_api_keys, presented_key
from link_fetcher.gateway.errors import GatewayError
from link_fetcher.gateway.graphql import graphql_router
from link_fetcher.gateway.limits import Limits
from link_fetcher.gateway.rest import GatewayDep, require
from link_fetcher.gateway.rest import router as rest_router
from link_fetcher.gateway.state import Gateway, error_response
from link_fetcher.gateway.store import StreamStore
from link_fetcher.gateway.websocket import router as websocket_router
from link_fetcher.settings import Settings
from link_fetcher.text import one_line

STATIC = Path(__file__).with_name("static")


def build_gateway(settings: Settings) -> Gateway:
    """Check the configuration (ValueError naming what is wrong) and build the clients; nothing connects yet."""
    if not settings.redis_url:
        raise ValueError("REDIS_URL is not set: the gateway serves Redis streams")
    if settings.gateway_api_keys is None:
        raise ValueError("GATEWAY_API_KEYS is not set: give `key:role` pairs (roles read, write, admin)")
    keys = parse_api_keys(settings.gateway_api_keys.get_secret_value())
    limits = Limits.from_settings(settings)
    redis = Redis.from_url(
        settings.redis_url, decode_responses=True, encoding_errors="replace", socket_connect_timeout=5
    )
    engine = engine_for(settings) if configured_url(settings) else None
    return Gateway(
        settings=settings,
        keys=keys,
        limits=limits,
        store=StreamStore(redis, settings.redis_stream_maxlen),
        limiter=ConnectionLimiter(limits.max_connections_per_key),
        engine=engine,
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

    @app.exception_handler(GatewayError)
    async def gateway_error(_request: Request, exc: GatewayError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}" for error in exc.errors()]
        return error_response(GatewayError(400, "; ".join(problems)))

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(GatewayError(exc.status_code, str(exc.detail)))

    @app.exception_handler(RedisConnectionError)
    @app.exception_handler(RedisTimeoutError)
    async def redis_down(_request: Request, exc: RedisError) -> JSONResponse:
        return error_response(GatewayError(503, f"redis unavailable: {one_line(exc)}"))

    @app.exception_handler(ResponseError)
    async def redis_refused(_request: Request, exc: ResponseError) -> JSONResponse:
        # Redis refusing a command is the request's fault: a key that is not a stream, an id it will not take.
        if str(exc).startswith("WRONGTYPE"):
            return error_response(GatewayError(404, "no stream by that name: the key holds another type"))
        return error_response(GatewayError(400, f"refused by redis: {one_line(exc)}"))

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_document(request: Request) -> JSONResponse:
        authorize(gateway.keys, presented_key(request.headers, request.query_params), Role.READ)
        return JSONResponse(app.openapi())

    @app.get("/docs", include_in_schema=False)
    async def docs_page(request: Request) -> HTMLResponse:
        key = presented_key(request.headers, request.query_params)
        authorize(gateway.keys, key, Role.READ)
        return get_swagger_ui_html(openapi_url=f"/openapi.json?{urlencode({'token': key})}", title=app.title)

    app.include_router(rest_router)
    app.include_router(websocket_router)
    app.include_router(graphql_router(), prefix="/graphql", tags=["graphql"])
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/healthz", tags=["ops"])
    async def healthz(request: Request, gateway: GatewayDep) -> JSONResponse:
        """`{"status": "ok"}` (or 503 `unavailable`); with a read key, also `redis` and `database`: "ok",
        "absent" (no DATABASE_URL) or the error. 503 unless both are fine."""
        health: dict[str, str] = {}
        try:
            await gateway.store.redis.ping()
            health["redis"] = "ok"
        except RedisError as exc:
            health["redis"] = f"error: {one_line(exc)}"
        if gateway.engine is None:
            health["database"] = "absent"
        else:
            try:
                await asyncio.to_thread(console.check_database, gateway.engine)
                health["database"] = "ok"
            except SQLAlchemyError as exc:
                health["database"] = f"error: {one_line(getattr(exc, 'orig', None) or exc)}"
        healthy = health["redis"] == "ok" and health["database"] in ("ok", "absent")
        status = {"status": "ok" if healthy else "unavailable"}
        key = presented_key(request.headers)
        if key is not None:  # the details name hosts and errors: for key holders only
            authorize(gateway.keys, key, Role.READ)
            status.update(health)
        return JSONResponse(status, status_code=200 if healthy else 503)

    @app.get("/", include_in_schema=False)
    async def console_page() -> FileResponse:
        # The page holds no data; its script asks for /console/summary with the key the user gives it.
        return FileResponse(STATIC / "console.html")

    @app.get("/console/summary", tags=["ops"], dependencies=[require(Role.READ)])
    async def console_summary(gateway: GatewayDep) -> dict[str, Any]:
        """Everything the console draws: streams, deliveries pending/failed, granules recorded per day."""
        summary: dict[str, Any] = {"streams": await gateway.store.describe(gateway.settings.gateway_streams)}
        if gateway.engine is None:
            return {**summary, "database": "absent"}
        try:
            data = await asyncio.to_thread(console.console_data, gateway.engine, dt.datetime.now(dt.UTC).date())
        except SQLAlchemyError as exc:
            return {**summary, "database": f"error: {one_line(getattr(exc, 'orig', None) or exc)}"}
        return {**summary, "database": "ok", **data}

    return app

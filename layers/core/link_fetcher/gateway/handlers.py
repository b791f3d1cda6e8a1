"""How errors become answers: `{"error": message}` with the right status, never naming internal hosts."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from starlette.exceptions import HTTPException

from link_fetcher.gateway.errors import GatewayError
from link_fetcher.gateway.state import error_response
from link_fetcher.text import one_line

log = logging.getLogger(__name__)
REDIS_UNAVAILABLE = "redis unavailable"


def redis_unavailable(exc: BaseException) -> GatewayError:
    """A 503 for a Redis that cannot be reached; its address and the error go to the log only."""
    log.warning("redis unavailable: %s", one_line(exc))
    return GatewayError(503, REDIS_UNAVAILABLE)


def add_error_handlers(app: FastAPI) -> None:
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
        return error_response(redis_unavailable(exc))

    @app.exception_handler(ResponseError)
    async def redis_refused(_request: Request, exc: ResponseError) -> JSONResponse:
        # Redis refusing a command is the request's fault: a key that is not a stream, an id it will not take.
        if str(exc).startswith("WRONGTYPE"):
            return error_response(GatewayError(404, "no stream by that name: the key holds another type"))
        return error_response(GatewayError(400, f"refused by redis: {one_line(exc)}"))

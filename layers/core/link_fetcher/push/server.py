"""`link-fetcher serve`: the push endpoint as an ASGI app (FastAPI under uvicorn). Requests are handled
concurrently: the blocking work (database, sinks) runs in the server's thread pool."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

from fastapi import FastAPI, Request, Response
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from link_fetcher.background_relay import BackgroundRelay
from link_fetcher.database import engine_at
from link_fetcher.push.endpoint import MAX_BODY_BYTES, PushEndpoint, Reply
from link_fetcher.push.timeouts import TIMED_OUT
from link_fetcher.recording import Recorder
from link_fetcher.settings import Settings
from link_fetcher.sinks import build_sinks


def serving_app(settings: Settings, engine: Engine) -> FastAPI:
    """The endpoint with a background relay for the configured sinks: requests only record, the relay
    delivers (batching busy periods). CredentialsUnavailable when the endpoint's credentials are not configured."""
    sinks = build_sinks(settings)
    background = BackgroundRelay(Recorder.from_settings(settings, engine, sinks, publish=False)) if sinks else None
    endpoint = PushEndpoint.from_settings(
        settings, lambda: engine, after_record=background.wake if background else None
    )
    return create_app(endpoint, background)


def default_workers() -> int:
    """`serve`'s processes: one per core, since one process is bound by its GIL (HTTP parsing, validation and
    its relay share it)."""
    return os.cpu_count() or 1


def worker_app(settings: Settings, database_url: str) -> FastAPI:
    """Factory for each worker process of `serve --workers N`: the parent's settings and database (the embedded
    one the parent started, or the one configured), given to it rather than read again."""
    return serving_app(settings, engine_at(database_url, settings))


def create_app(endpoint: PushEndpoint, background: BackgroundRelay | None = None) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if background is not None:
            background.start()
        yield
        if background is not None:
            await run_in_threadpool(background.stop)  # one last delivery of what is pending
        if endpoint.metrics.metric_set:
            endpoint.metrics.flush_metrics()  # what has not reached powertools' 100-value auto-flush

    app = FastAPI(title="link-fetcher push", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

    @app.post("/events", status_code=204)
    async def events(request: Request) -> Response:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            # Known too large before reading it: answer without taking the body in.
            reply = await run_in_threadpool(endpoint.authenticate, request.headers) or endpoint.refuse_too_large()
        else:
            try:
                body = await _read_at_most(request, MAX_BODY_BYTES + 1)
            except ClientDisconnect:
                return client_left(endpoint, request)
            reply = await run_in_threadpool(endpoint.handle, request.headers, body)
        return to_response(reply)

    return app


def client_left(endpoint: PushEndpoint, request: Request) -> Response:
    """The client went away before sending its whole body: nothing to answer, nothing recorded; one line (none
    when the request deadline closed the connection: it said so itself)."""
    if not request.scope.get(TIMED_OUT):
        client = request.client.host if request.client else None
        endpoint.logger.info(
            "client left before sending its whole body", extra={"reason": "client_left", "client": client}
        )
        endpoint.count("client_left")
    return Response(status_code=400)  # never sent: the connection is gone


async def _read_at_most(request: Request, limit: int) -> bytes:
    """The body, or its first `limit` bytes when it is longer (a chunked body has no Content-Length)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit:
            break
    return b"".join(chunks)[:limit]


def to_response(reply: Reply) -> Response:
    content = reply.content()
    media_type = "application/json" if content else None
    return Response(content, status_code=reply.status, headers=dict(reply.headers), media_type=media_type)

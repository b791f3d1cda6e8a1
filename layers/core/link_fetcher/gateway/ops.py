"""The gateway's own routes: /healthz, the ops console and its data, and the API description behind a key."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from redis.exceptions import RedisError
from sqlalchemy.exc import SQLAlchemyError

from link_fetcher.gateway import console
from link_fetcher.gateway.auth import Role, authorize, presented_key
from link_fetcher.gateway.rest import GatewayDep, require
from link_fetcher.text import one_line

log = logging.getLogger(__name__)
STATIC = Path(__file__).with_name("static")
router = APIRouter()


def _failed(what: str, exc: BaseException) -> str:
    """What a health answer says of a failed dependency: the kind of error; its text (hosts) goes to the log."""
    log.warning("%s unavailable: %s", what, one_line(getattr(exc, "orig", None) or exc))
    return f"error: {type(getattr(exc, 'orig', None) or exc).__name__}"


@router.get("/openapi.json", include_in_schema=False)
async def openapi_document(request: Request, gateway: GatewayDep) -> JSONResponse:
    authorize(gateway.keys, presented_key(request.headers, request.query_params), Role.READ)
    return JSONResponse(request.app.openapi())


@router.get("/docs", include_in_schema=False)
async def docs_page(request: Request, gateway: GatewayDep) -> HTMLResponse:
    key = presented_key(request.headers, request.query_params)
    authorize(gateway.keys, key, Role.READ)
    return get_swagger_ui_html(openapi_url=f"/openapi.json?{urlencode({'token': key})}", title=request.app.title)


@router.get("/healthz", tags=["ops"])
async def healthz(request: Request, gateway: GatewayDep) -> JSONResponse:
    """`{"status": "ok"}` (or 503 `unavailable`); with a read key, also `redis` and `database`: "ok",
    "absent" (no DATABASE_URL) or `error: <kind>`. 503 unless both are fine."""
    health: dict[str, str] = {}
    try:
        await gateway.store.redis.ping()
        health["redis"] = "ok"
    except RedisError as exc:
        health["redis"] = _failed("redis", exc)
    if gateway.engine is None:
        health["database"] = "absent"
    else:
        try:
            await asyncio.to_thread(console.check_database, gateway.engine)
            health["database"] = "ok"
        except SQLAlchemyError as exc:
            health["database"] = _failed("database", exc)
    healthy = health["redis"] == "ok" and health["database"] in ("ok", "absent")
    status = {"status": "ok" if healthy else "unavailable"}
    key = presented_key(request.headers)
    if key is not None:
        authorize(gateway.keys, key, Role.READ)
        status.update(health)
    return JSONResponse(status, status_code=200 if healthy else 503)


@router.get("/", include_in_schema=False)
async def console_page() -> FileResponse:
    # The page holds no data; its script asks for /console/summary with the key the user gives it.
    return FileResponse(STATIC / "console.html")


@router.get("/console/summary", tags=["ops"], dependencies=[require(Role.READ)])
async def console_summary(gateway: GatewayDep) -> dict[str, Any]:
    """Everything the console draws: streams, deliveries pending/failed, granules recorded per day."""
    summary: dict[str, Any] = {"streams": await gateway.store.describe(gateway.settings.gateway.streams)}
    if gateway.engine is None:
        return {**summary, "database": "absent"}
    try:
        data = await asyncio.to_thread(console.console_data, gateway.engine, dt.datetime.now(dt.UTC).date())
    except SQLAlchemyError as exc:
        return {**summary, "database": _failed("database", exc)}
    return {**summary, "database": "ok", **data}

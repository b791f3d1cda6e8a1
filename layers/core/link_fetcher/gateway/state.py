"""What every route needs: the gateway's settings, keys, limits, Redis store, connection limiter and engine."""

from __future__ import annotations

import dataclasses

from sqlalchemy import Engine
from starlette.requests import HTTPConnection
from starlette.responses import JSONResponse

from link_fetcher.gateway.auth import ConnectionLimiter, Principal
from link_fetcher.gateway.budget import EntryBudget
from link_fetcher.gateway.errors import GatewayError
from link_fetcher.gateway.limits import Limits
from link_fetcher.gateway.store import StreamStore
from link_fetcher.settings import Settings


@dataclasses.dataclass
class Gateway:
    settings: Settings
    keys: dict[bytes, Principal]
    limits: Limits
    store: StreamStore
    limiter: ConnectionLimiter
    engine: Engine | None  # None: no DATABASE_URL, the console shows streams only
    budget: EntryBudget
    graphql_slots: ConnectionLimiter  # GraphQL queries running per key


def gateway_of(connection: HTTPConnection) -> Gateway:
    gateway: Gateway = connection.app.state.gateway
    return gateway


def error_response(error: GatewayError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if error.status_code == 401 else {}
    headers.update(error.headers)
    return JSONResponse({"error": error.message}, status_code=error.status_code, headers=headers)

"""CDSE push subscription endpoint behind API Gateway (REST, proxy integration): POST /events (SPEC §3).

The handling is `link_fetcher.push.PushEndpoint`, the same as `link-fetcher serve`. The endpoint, its
engine, sinks and cached credentials live as long as the container.
"""

from __future__ import annotations

import base64
import functools
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response
from aws_lambda_powertools.utilities.typing import LambdaContext

from link_fetcher.database import engine_for
from link_fetcher.observability import NAMESPACE, Service
from link_fetcher.push import PushEndpoint, Reply
from link_fetcher.settings import get_settings

logger = Logger(service=Service.PUSH)
metrics = Metrics(namespace=NAMESPACE, service=Service.PUSH)
app = APIGatewayRestResolver()


@functools.cache
def push_endpoint() -> PushEndpoint:
    settings = get_settings()
    return PushEndpoint.from_settings(settings, lambda: engine_for(settings), logger=logger, metrics=metrics)


@app.post("/events")
def events() -> Response:
    event = app.current_event
    raw = event.body or ""
    body = base64.b64decode(raw) if event.is_base64_encoded else raw.encode()
    return to_response(push_endpoint().handle(event.headers, body))


@app.not_found
def not_found(exc: Exception) -> Response:
    push_endpoint().count("not_found")
    return to_response(Reply(404, "only POST /events is served"))


def to_response(reply: Reply) -> Response:
    content = reply.content()
    return Response(
        status_code=reply.status,
        content_type="application/json" if content else None,
        body=content.decode() if content else None,
        headers=dict(reply.headers),
    )


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)

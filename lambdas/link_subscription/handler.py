"""CDSE push subscription endpoint behind API Gateway (REST, proxy integration): POST /events (SPEC §3).

The handling is `link_fetcher.push.PushEndpoint`, the same as `link-fetcher serve`. The endpoint, its
engine, sinks and cached credentials live as long as the container.

The proxy event is read here directly, not through powertools' event handler: one route does not need a
router, and the event handler's import (AppSync and the OpenAPI machinery included) was a large share of this
function's cold start (docs/benchmarks.md).
"""

from __future__ import annotations

import base64
import functools
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.utilities.typing import LambdaContext

from link_fetcher.database import ENGINE_SETTINGS, engine_for
from link_fetcher.observability import NAMESPACE, Service
from link_fetcher.push import PushEndpoint, Reply
from link_fetcher.recording import RECORDING_SETTINGS
from link_fetcher.settings import CdseSettings, CriteriaSettings, SubscriptionSettings, get_settings

# The settings groups read here: the stack gives this function their variables (cdk/link_fetcher_cdk/environment.py).
SETTINGS_READ = (*ENGINE_SETTINGS, *RECORDING_SETTINGS, CdseSettings, CriteriaSettings, SubscriptionSettings)

logger = Logger(service=Service.PUSH)
metrics = Metrics(namespace=NAMESPACE, service=Service.PUSH)
ROUTE = ("POST", "/events")


@functools.cache
def push_endpoint() -> PushEndpoint:
    settings = get_settings()
    return PushEndpoint.from_settings(settings, lambda: engine_for(settings), logger=logger, metrics=metrics)


def reply_to(event: dict[str, Any]) -> Reply:
    """The reply to one API Gateway proxy event: POST /events is handled, any other route is 404."""
    # `resource` is the API's route whatever the stage or custom domain put in front of `path`.
    if (event.get("httpMethod"), event.get("resource") or event.get("path")) != ROUTE:
        push_endpoint().count("not_found")
        return Reply(404, "only POST /events is served")
    raw = event.get("body") or ""
    body = base64.b64decode(raw) if event.get("isBase64Encoded") else raw.encode()
    return push_endpoint().handle(event.get("headers"), body)


def to_response(reply: Reply) -> dict[str, Any]:
    content = reply.content()
    headers = {"Content-Type": "application/json"} if content else {}
    return {
        "statusCode": reply.status,
        "headers": {**headers, **reply.headers},
        "body": content.decode(),
        "isBase64Encoded": False,
    }


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return to_response(reply_to(event))

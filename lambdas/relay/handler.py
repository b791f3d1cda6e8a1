"""Scheduled relay (EventBridge): deliver what is pending to the configured sinks. `{}` → the relay report.

The sources relay right after recording; this catches up what a sink that was down left pending. The engine
and the sink clients live as long as the container.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.typing import LambdaContext
from sqlalchemy import Engine

from link_fetcher.database import engine_for
from link_fetcher.relay import relay
from link_fetcher.settings import get_settings
from link_fetcher.sinks import Sink, build_sinks

logger = Logger(service="link-fetcher-relay")


@functools.cache
def engine() -> Engine:
    return engine_for(get_settings())


@functools.cache
def sinks() -> tuple[Sink, ...]:
    return tuple(build_sinks(get_settings()))


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = get_settings()
    report = relay(
        engine(),
        sinks(),
        batch_size=settings.relay_batch_size,
        max_attempts=settings.relay_max_attempts,
        retry_failed=bool(event.get("retry_failed")),
        workers=settings.relay_workers,
    )
    result = dataclasses.asdict(report)
    if report.unavailable or report.failed:
        logger.warning("deliveries left behind", extra=result)
    else:
        logger.info("relay done", extra=result)
    return result

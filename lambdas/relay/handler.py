"""Scheduled relay (EventBridge): deliver what is pending to the configured sinks. `{}` → the relay report.

The sources relay right after recording; this catches up what a sink that was down left pending. The engine
and the sink clients live as long as the container.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from sqlalchemy import Engine

from db import oldest_pending_age
from link_fetcher.database import engine_for
from link_fetcher.relay import relay
from link_fetcher.settings import get_settings
from link_fetcher.sinks import Sink, build_sinks

SERVICE = "link-fetcher"
# The stack alarms on this metric (cdk/link_fetcher_cdk/monitoring.py): a delivery pending for long = a sink is down.
OLDEST_PENDING_METRIC = "OldestPendingDeliverySeconds"
logger = Logger(service=SERVICE)
metrics = Metrics(namespace="LinkFetcher", service=SERVICE)


@functools.cache
def engine() -> Engine:
    return engine_for(get_settings())


@functools.cache
def sinks() -> tuple[Sink, ...]:
    return tuple(build_sinks(get_settings()))


@logger.inject_lambda_context
@metrics.log_metrics
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
    with engine().connect() as conn:
        oldest = oldest_pending_age(conn)
    metrics.add_metric(name=OLDEST_PENDING_METRIC, unit=MetricUnit.Seconds, value=oldest)
    result = {**dataclasses.asdict(report), "oldest_pending_seconds": round(oldest)}
    if report.unavailable or report.failed:
        logger.warning("deliveries left behind", extra=result)
    else:
        logger.info("relay done", extra=result)
    return result

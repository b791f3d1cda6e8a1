"""Scheduled relay (EventBridge): deliver what is pending to the configured sinks. `{}` → the relay report.

The sources relay right after recording; this catches up what a sink that was down left pending. The engine
and the sink clients live as long as the container.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from db import oldest_pending_age
from link_fetcher.database import engine_for
from link_fetcher.relay import relay_with_settings
from link_fetcher.settings import get_settings
from link_fetcher.sinks import configured_sinks

SERVICE = "link-fetcher"
# The stack alarms on this metric (cdk/link_fetcher_cdk/monitoring.py): a delivery pending for long = a sink is down.
OLDEST_PENDING_METRIC = "OldestPendingDeliverySeconds"
logger = Logger(service=SERVICE)
metrics = Metrics(namespace="LinkFetcher", service=SERVICE)


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = get_settings()
    engine = engine_for(settings)  # the process-wide engine: one pool per container
    report = relay_with_settings(engine, settings, configured_sinks(), retry_failed=bool(event.get("retry_failed")))
    with engine.connect() as conn:
        oldest = oldest_pending_age(conn)
    metrics.add_metric(name=OLDEST_PENDING_METRIC, unit=MetricUnit.Seconds, value=oldest)
    result = {**dataclasses.asdict(report), "oldest_pending_seconds": round(oldest)}
    if report.unavailable or report.failed:
        logger.warning("deliveries left behind", extra=result)
    else:
        logger.info("relay done", extra=result)
    return result

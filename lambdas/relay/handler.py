"""Scheduled relay (EventBridge): deliver what is pending to the configured sinks. `{}` → the relay report.

The sources relay right after recording; this catches up what a sink that was down left pending. The engine
and the sink clients live as long as the container.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from db import oldest_pending_age
from link_fetcher.database import ENGINE_SETTINGS, database_failure, engine_description, engine_for
from link_fetcher.observability import NAMESPACE, Metric, Service
from link_fetcher.recording import RECORDING_SETTINGS, Recorder
from link_fetcher.settings import get_settings
from link_fetcher.sinks import configured_sinks

# The settings groups read here: the stack gives this function their variables (cdk/link_fetcher_cdk/environment.py).
SETTINGS_READ = (*ENGINE_SETTINGS, *RECORDING_SETTINGS)

logger = Logger(service=Service.RELAY)
# The stack alarms on both metrics (cdk/link_fetcher_cdk/monitoring.py): a delivery pending for long means a sink
# is down; a failed one needs an operator (`relay` with retry_failed once the cause is fixed).
metrics = Metrics(namespace=NAMESPACE, service=Service.RELAY)


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = get_settings()
    # The process-wide engine (one pool per container) and sinks; the recorder publishes the freshness.
    recorder = Recorder.from_settings(settings, engine_for(settings), configured_sinks())
    try:
        report = recorder.deliver(retry_failed=bool(event.get("retry_failed")))
    except Exception as exc:
        # Said in one line (cannot connect, or lost the connection mid-relay); the invocation still fails.
        if failure := database_failure(exc, engine_description(recorder.engine)):
            logger.error("relay failed; deliveries stay pending", extra={"error": failure})
        raise
    with recorder.engine.connect() as conn:
        oldest = oldest_pending_age(conn)
    metrics.add_metric(name=Metric.OLDEST_PENDING_DELIVERY, unit=MetricUnit.Seconds, value=oldest)
    metrics.add_metric(name=Metric.FAILED_DELIVERIES, unit=MetricUnit.Count, value=report.failed)
    result = {**report.summary(), "oldest_pending_seconds": round(oldest)}
    if report.unavailable or report.failed:
        logger.warning("deliveries left behind", extra=result)
    else:
        logger.info("relay done", extra=result)
    return result

"""Freshness (SPEC §10): how long after its publication a granule reached a sink. The relay measures it for each
granule a sink takes for the first time (`RelayReport.freshness`); the functions that deliver publish it here as
the FreshnessSeconds metric, which the stack alarms on when a source's p95 exceeds FRESHNESS_SLO_SECONDS."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

from link_fetcher.observability import NAMESPACE, Metric


def publish_freshness(freshness: Mapping[str, Sequence[float]]) -> None:
    """Print the samples as CloudWatch embedded metrics: FreshnessSeconds with the one dimension `source` (no
    `service`: whichever function delivered, a source's figures are one series). Powertools writes a document
    every 100 values; the rest go out here."""
    for source, seconds in sorted(freshness.items()):
        if not seconds:
            continue
        metrics = AmazonCloudWatchEMFProvider(namespace=NAMESPACE, service="")  # "" rather than the env's service
        metrics.add_dimension(name="source", value=source)
        for value in seconds:
            metrics.add_metric(name=Metric.FRESHNESS, unit=MetricUnit.Seconds, value=value)
        if metrics.metric_set:
            metrics.flush_metrics()

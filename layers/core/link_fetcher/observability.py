"""The names operations see: the CloudWatch namespace, each function's service name and the metrics the stack alarms
on. Imported by the handlers (which publish) and by the CDK app (which alarms), so the two cannot drift apart.

Kept free of imports beyond the standard library: the CDK app and every handler load it.
"""

from __future__ import annotations

from enum import StrEnum

# CloudWatch namespace of every metric the functions publish (Powertools embedded metric format).
NAMESPACE = "LinkFetcher"


class Service(StrEnum):
    """A function's POWERTOOLS_SERVICE_NAME: its loggers' `service` key and its metrics' `service` dimension."""

    MIGRATE = "link-fetcher-migrate"
    DATE_GENERATOR = "link-fetcher-date-generator"
    FETCH = "link-fetcher-fetch"
    PUSH = "link-fetcher-push"
    RELAY = "link-fetcher-relay"
    DOWNLOADER = "link-fetcher-downloader"
    RECONCILE = "link-fetcher-reconcile"
    STAC = "link-fetcher-stac"
    PULL = "link-fetcher-pull"


# The service of each function, by its folder under lambdas/ (the stack sets POWERTOOLS_SERVICE_NAME from it).
FUNCTION_SERVICES: dict[str, Service] = {
    "migrate": Service.MIGRATE,
    "date_generator": Service.DATE_GENERATOR,
    "link_fetcher": Service.FETCH,
    "link_subscription": Service.PUSH,
    "relay": Service.RELAY,
    "downloader": Service.DOWNLOADER,
    "reconcile": Service.RECONCILE,
    "stac_fetcher": Service.STAC,
    "subscription_puller": Service.PULL,
}


# The values of FreshnessSeconds' `source` dimension, one alarm each: the granule sources (db.Source; a test compares).
FRESHNESS_SOURCES = ("search", "subscription", "stac")


class Metric(StrEnum):
    """Metric names the stack alarms on (with dimension `service`, unless said otherwise)."""

    # Published by the relay after each run: age of the oldest delivery still pending (0 when none is).
    OLDEST_PENDING_DELIVERY = "OldestPendingDeliverySeconds"
    # Published by the relay after each run: deliveries of the configured sinks that ended `failed`.
    FAILED_DELIVERIES = "FailedDeliveries"
    # Published by every function that delivers (fetch, push, STAC, relay), one value per granule a sink took for
    # the first time: seconds from its publication to that delivery. Dimension `source` only (search,
    # subscription, stac), so the stack alarms on a source's p95 whichever function delivered it.
    FRESHNESS = "FreshnessSeconds"
    # Published by the polling state machine (dimension service=link-fetcher-fetch), 1 for each (day, platform) or
    # deletion day whose fetch still failed after its retries: left unfinished, offered again by the next schedule.
    UNFINISHED_DAYS = "UnfinishedDays"

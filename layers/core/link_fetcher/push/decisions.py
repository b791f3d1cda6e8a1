"""What to do with each notification: record it, or skip it and why. Pure: no I/O."""

from __future__ import annotations

import dataclasses
import datetime as dt

from db import GranuleRecord, Source
from link_fetcher.cdse.notifications import Notification
from link_fetcher.cdse.products import Criteria, load_allowed_tiles, product_rejection_reason, to_record
from link_fetcher.settings import Settings

SOURCE = Source.SUBSCRIPTION
RECORDED_EVENT = "created"


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    record: GranuleRecord
    reason: str | None  # None: keep (record it); else why it is skipped, for logs and metrics

    @property
    def kept(self) -> bool:
        return self.reason is None


def push_criteria(settings: Settings) -> Criteria:
    """Everything the poller puts in its query, checked here instead: CDSE pushes whatever the subscription's
    filter lets through."""
    return Criteria(
        allowed_tiles=load_allowed_tiles(settings.criteria.allowed_tiles_file),
        platforms=frozenset(settings.criteria.platforms),
        product_type=settings.criteria.product_type,
        max_acquisition_age=dt.timedelta(days=settings.criteria.max_acquisition_age_days),
    )


def decide(notification: Notification, criteria: Criteria, now: dt.datetime, download_base_url: str) -> Decision:
    """For a notification carrying its product (a PULL notification that lost it is completed first)."""
    if notification.product is None:
        raise ValueError(f"notification of {notification.product_id} has no value: read the product first")
    record = to_record(notification.product, source=SOURCE, download_base_url=download_base_url)
    if notification.event.lower() != RECORDED_EVENT:
        return Decision(record, "event_not_created")
    return Decision(record, product_rejection_reason(notification.product, record, criteria, now))

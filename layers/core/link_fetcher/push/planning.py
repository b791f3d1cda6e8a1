"""What notifications ask to record (push and PULL alike): the kept `created` products and the deletions,
recorded through the shared Recorder in one transaction."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Collection, Sequence

from sqlalchemy import Connection

from db import DeletionOutcome, DeletionRecord
from link_fetcher.cdse.deleted_products import to_deletion
from link_fetcher.cdse.notifications import Notification
from link_fetcher.cdse.products import Criteria
from link_fetcher.push.decisions import Decision, decide
from link_fetcher.recording import Recorder

# The skip reason of a notification of a subscription not in SUBSCRIPTION_IDS (logs, metrics).
OTHER_SUBSCRIPTION = "other_subscription"


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """What a batch of notifications asks to record."""

    decisions: list[Decision]  # products of every event but `deleted`, kept or not
    deletions: list[DeletionRecord]
    other_subscription: list[Notification] = dataclasses.field(default_factory=list)  # ignored


@dataclasses.dataclass(frozen=True, slots=True)
class Recorded:
    inserted: list[str]  # granules recorded now (their `found` deliveries scheduled, unless skipped)
    deletions: DeletionOutcome

    @property
    def to_deliver(self) -> list[str]:
        """Granules with deliveries scheduled by this batch."""
        return self.inserted + self.deletions.announced


def is_ours(notification: Notification, subscription_ids: Collection[str]) -> bool:
    """Whether a notification comes from one of `subscription_ids` (lower-case; empty: any subscription)."""
    if not subscription_ids:
        return True
    return (notification.subscription_id or "").lower() in subscription_ids


def plan(
    notifications: Sequence[Notification],
    criteria: Criteria,
    now: dt.datetime,
    download_base_url: str,
    subscription_ids: Collection[str] = (),
) -> Plan:
    """Pure. Every notification must carry its value (a PULL caller completes those that lost it first).
    Notifications of subscriptions not in `subscription_ids` (when given) are set aside, whatever their event."""
    # A deletion is remembered for products we would record; its acquisition age is unknown, so not checked.
    remember = dataclasses.replace(criteria, max_acquisition_age=None)
    decisions, deletions, others = [], [], []
    for notification in notifications:
        if not is_ours(notification, subscription_ids):
            others.append(notification)
        elif notification.deletion is not None:
            deletions.append(to_deletion(notification.deletion, download_base_url=download_base_url, criteria=remember))
        else:
            decisions.append(decide(notification, criteria, now, download_base_url))
    return Plan(decisions, deletions, others)


def record(conn: Connection, recorder: Recorder, planned: Plan) -> Recorded:
    """In the caller's transaction; each part is one statement (recording deletions also prunes old ones)."""
    inserted = recorder.granules(conn, [decision.record for decision in planned.decisions if decision.kept])
    return Recorded(inserted, recorder.deletions(conn, planned.deletions))

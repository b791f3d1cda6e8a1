"""Recording what notifications say (push and pull alike): the kept `created` products and the deletions, in
one transaction."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence

from sqlalchemy import Connection

from db import DeletionOutcome, DeletionRecord, record_deletions, record_granules
from link_fetcher.lifecycle.deleted_products import to_deletion
from link_fetcher.products import Criteria
from link_fetcher.push.decisions import Decision, decide
from link_fetcher.push.notifications import Notification


@dataclasses.dataclass(frozen=True, slots=True)
class Plan:
    """What a batch of notifications asks to record."""

    decisions: list[Decision]  # products of every event but `deleted`, kept or not
    deletions: list[DeletionRecord]


@dataclasses.dataclass(frozen=True, slots=True)
class Recorded:
    inserted: list[str]  # granules recorded now (their `found` deliveries scheduled, unless skipped)
    deletions: DeletionOutcome

    @property
    def to_deliver(self) -> list[str]:
        """Granules with deliveries scheduled by this batch."""
        return self.inserted + self.deletions.announced


def plan(notifications: Sequence[Notification], criteria: Criteria, now: dt.datetime, download_base_url: str) -> Plan:
    """Pure. Every notification must carry its value (a PULL caller completes those that lost it first)."""
    # A deletion is remembered for products we would record; its acquisition age is unknown, so not checked.
    remember = dataclasses.replace(criteria, max_acquisition_age=None)
    decisions, deletions = [], []
    for notification in notifications:
        if notification.deletion is not None:
            deletions.append(to_deletion(notification.deletion, download_base_url=download_base_url, criteria=remember))
        else:
            decisions.append(decide(notification, criteria, now, download_base_url))
    return Plan(decisions, deletions)


def record(conn: Connection, planned: Plan, sink_names: Sequence[str], reprocessed_policy: str) -> Recorded:
    """In the caller's transaction; each part is one statement."""
    records = [decision.record for decision in planned.decisions if decision.kept]
    inserted = record_granules(conn, records, sink_names, reprocessed_policy=reprocessed_policy) if records else []
    return Recorded(inserted, record_deletions(conn, planned.deletions, sink_names))

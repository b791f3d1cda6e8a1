"""PULL subscriptions (SPEC §9): read CDSE's queue of notifications (≤ 20 a call), record them exactly as the
push endpoint does, commit, then acknowledge up to the last one handled.

A crash (or a failed Ack) between the commit and the Ack leaves those notifications in the queue: the next
read returns them again and recording them changes nothing (once-only recording), so nothing is recorded or
delivered twice. Notifications older than 3 days may have lost their `value`: a `created` one is completed by
reading the product by Id, a `deleted` one from the notification itself.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter, ValidationError

from link_fetcher.cdse.deleted_products import DeletedProduct
from link_fetcher.cdse.notifications import Notification
from link_fetcher.cdse.products import Criteria
from link_fetcher.cdse.search import ProductLookup
from link_fetcher.cdse.subscriptions import MAX_READ, SubscriptionError, SubscriptionsApi
from link_fetcher.http import HttpError
from link_fetcher.push.decisions import push_criteria
from link_fetcher.push.planning import plan, record
from link_fetcher.recording import Recorder
from link_fetcher.settings import Settings

log = logging.getLogger(__name__)

_NOTIFICATION = TypeAdapter(Notification)
# --follow: pauses while the queue stays empty, doubling up to the last.
FOLLOW_PAUSES_S = (1.0, 2.0, 4.0, 8.0, 15.0)


@dataclasses.dataclass
class PullReport:
    reads: int = 0
    read: int = 0  # notifications read (and acknowledged)
    recorded: int = 0  # granules recorded
    announced: int = 0  # deletions of recorded granules
    remembered: int = 0  # deletions of products never recorded
    refused: int = 0  # deletions of recorded granules not believed (another name, dated before publication)
    other_subscription: int = 0  # notifications of a subscription not in SUBSCRIPTION_IDS, ignored
    skipped: int = 0  # filtered out, duplicates, deletions that changed nothing
    completed: int = 0  # notifications without value, completed by reading the product
    gone: int = 0  # notifications without value whose product CDSE no longer has
    malformed: int = 0  # notifications that could not be read (acknowledged, logged)


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclasses.dataclass
class PullSession:
    recorder: Recorder
    api: SubscriptionsApi
    subscription_id: str
    products: ProductLookup
    _: dataclasses.KW_ONLY
    criteria: Criteria
    download_url: str
    subscription_ids: frozenset[str] = frozenset()  # empty: every subscription's notifications
    clock: Callable[[], dt.datetime] = _utc_now

    @classmethod
    def from_settings(cls, settings: Settings, recorder: Recorder, api: SubscriptionsApi) -> PullSession:
        """SubscriptionError when no subscription is configured and the account has no running pull one."""
        subscription_id = settings.subscription.pull_subscription_id or api.running_pull()
        return cls(
            recorder,
            api,
            subscription_id,
            ProductLookup(settings.cdse.catalogue_url),
            criteria=push_criteria(settings),
            download_url=settings.cdse.download_url,
            # The queue read is ours whatever SUBSCRIPTION_IDS lists; other ids in it are not.
            subscription_ids=frozenset([*settings.subscription.ids, subscription_id.lower()])
            if settings.subscription.ids
            else frozenset(),
        )

    def pull_once(self, report: PullReport, limit: int = MAX_READ) -> list[str]:
        """One Read, recorded in one transaction, then one Ack. Returns the granules whose deliveries this
        scheduled (empty when nothing new); `report` counts what was read."""
        items = self.api.read(self.subscription_id, top=min(limit, MAX_READ))
        report.reads += 1
        if not items:
            return []
        notifications = [n for n in (self._complete(item, report) for item in items) if n is not None]
        planned = plan(notifications, self.criteria, self.clock(), self.download_url, self.subscription_ids)
        for other in planned.other_subscription:
            log.info("notification of %s ignored: subscription %s is not ours", other.product_id, other.subscription_id)
        with self.recorder.engine.begin() as conn:
            recorded = record(conn, self.recorder, planned)
        for granule_id, reason in recorded.deletions.refused.items():
            log.warning("deletion of %s not believed: %s", granule_id, reason)
        # Committed: now the queue may forget them. A failure from here on only makes them read again.
        acks = [str(item["AckId"]) for item in items if isinstance(item, dict) and item.get("AckId")]
        if acks:
            try:
                self.api.ack(self.subscription_id, acks[-1])
            except (SubscriptionError, HttpError) as exc:
                raise SubscriptionError(
                    f"could not acknowledge: {exc} (what was read is recorded and will be read again, changing "
                    "nothing: pull again)"
                ) from exc
        report.read += len(items)
        report.recorded += len(recorded.inserted)
        report.announced += len(recorded.deletions.announced)
        report.remembered += len(recorded.deletions.remembered)
        report.refused += len(recorded.deletions.refused)
        report.other_subscription += len(planned.other_subscription)
        report.skipped += len(notifications) - len(recorded.inserted) - len(recorded.deletions.announced)
        report.skipped -= len(recorded.deletions.remembered) + len(recorded.deletions.refused)
        report.skipped -= len(planned.other_subscription)
        return recorded.to_deliver

    def run(
        self,
        *,
        max_notifications: int | None = None,
        follow: bool = False,
        on_recorded: Callable[[list[str]], None] = lambda ids: None,
        sleep: Callable[[float], None] = time.sleep,
        should_stop: Callable[[], bool] = lambda: False,
        report: PullReport | None = None,
    ) -> PullReport:
        """Read until the queue is empty (or `max_notifications` were read); with `follow`, keep reading, pausing
        while it is empty. `on_recorded` gets the ids each batch scheduled deliveries for; `report` (filled as
        batches are acknowledged) outlives an interruption."""
        report = report if report is not None else PullReport()
        idle = 0
        while not should_stop():
            remaining = MAX_READ if max_notifications is None else max_notifications - report.read
            if remaining <= 0:
                break
            before = report.read
            scheduled = self.pull_once(report, remaining)
            if scheduled:
                on_recorded(scheduled)
            if report.read > before:
                idle = 0
                continue
            if not follow:
                break
            sleep(FOLLOW_PAUSES_S[min(idle, len(FOLLOW_PAUSES_S) - 1)])
            idle += 1
        return report

    def _complete(self, item: Any, report: PullReport) -> Notification | None:
        """The notification with its value: as read, or completed from CDSE; None when it cannot be used."""
        try:
            notification = _NOTIFICATION.validate_python(item)
        except ValidationError as exc:
            report.malformed += 1
            log.warning("unreadable notification skipped: %s", str(exc).splitlines()[0])
            return None
        if notification.product is not None or notification.deletion is not None:
            return notification
        try:
            return self._completed(notification, item, report)
        except ValidationError as exc:
            report.malformed += 1
            log.warning("notification of %s cannot be completed: %s", notification.product_id, str(exc).splitlines()[0])
            return None

    def _completed(self, notification: Notification, item: dict[str, Any], report: PullReport) -> Notification | None:
        if not notification.product_id:
            report.malformed += 1
            log.warning("notification without value nor ProductId skipped")
            return None
        if notification.is_deletion:
            # What a DeletedProducts entity would say; the notification's date stands for the deletion's.
            deleted_at = notification.notification_date or self.clock()
            deleted_at = deleted_at if deleted_at.tzinfo else deleted_at.replace(tzinfo=dt.UTC)
            name = item.get("ProductName")
            deletion = (
                DeletedProduct.model_validate({"Id": notification.product_id, "Name": name, "DeletionDate": deleted_at})
                if name
                else DeletedProduct.unnamed(notification.product_id, deleted_at)
            )
            report.completed += 1
            return notification.model_copy(update={"deletion": deletion})
        product = self.products.product(notification.product_id)
        if product is None:
            report.gone += 1
            log.info("product %s of a notification is gone from CDSE", notification.product_id)
            return None
        report.completed += 1
        return notification.model_copy(update={"product": product})

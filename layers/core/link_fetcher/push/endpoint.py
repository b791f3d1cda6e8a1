"""The push endpoint's request handling (SPEC §3), shared by the Lambda and `link-fetcher serve`: authenticate,
validate, filter, record (source `subscription`) and deliver what this request inserted."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import json
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from sqlalchemy import Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from db import DatabaseUnavailable, DeletionOutcome
from link_fetcher.cdse.notifications import InvalidNotification, parse_notifications
from link_fetcher.cdse.products import Criteria
from link_fetcher.credentials import Credentials, CredentialsUnavailable
from link_fetcher.database import database_failure, engine_description
from link_fetcher.observability import NAMESPACE, Service
from link_fetcher.push.auth import credentials_source, is_authorized
from link_fetcher.push.decisions import Decision, push_criteria
from link_fetcher.push.planning import OTHER_SUBSCRIPTION, Plan, Recorded, plan, record
from link_fetcher.recording import Recorder
from link_fetcher.settings import Settings
from link_fetcher.sinks import build_sinks
from link_fetcher.timestamps import MALFORMED

MAX_BODY_BYTES = 1024 * 1024
# Errors meaning "the database cannot be reached right now": 503, so CDSE retries the notification.
# CredentialsUnavailable: the database's secret could not be read (the endpoint's own is checked before).
DATABASE_DOWN = (OperationalError, InterfaceError, PoolTimeoutError, DatabaseUnavailable, CredentialsUnavailable)


@dataclasses.dataclass(frozen=True, slots=True)
class Reply:
    status: int
    error: str | None = None  # the JSON body's `error`; None: no body
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def content(self) -> bytes:
        return json.dumps({"error": self.error}).encode() if self.error is not None else b""


NO_CONTENT = Reply(204)
UNAUTHORIZED = Reply(401, "unauthorized", {"WWW-Authenticate": 'Basic realm="link-fetcher", charset="UTF-8"'})
TOO_LARGE = Reply(413, f"body larger than {MAX_BODY_BYTES} bytes")
DATABASE_UNAVAILABLE = Reply(503, "database unavailable, retry later", {"Retry-After": "30"})
CREDENTIALS_UNAVAILABLE = Reply(503, "credentials unavailable, retry later", {"Retry-After": "30"})


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """A header's value whatever its case (API Gateway keeps the client's case)."""
    name = name.lower()
    return next((value for key, value in (headers or {}).items() if key.lower() == name), None)


class PushEndpoint:
    """Thread-safe: `serve` calls `handle` from many threads at once."""

    def __init__(
        self,
        *,
        recorder: Callable[[], Recorder],
        credentials: Callable[[], Credentials],
        criteria: Criteria,
        download_base_url: str,
        subscription_ids: Collection[str] = (),
        logger: Logger | None = None,
        metrics: Metrics | None = None,
        clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        after_record: Callable[[Sequence[str]], None] | None = None,
    ) -> None:
        """`recorder`: asked for on each request (the database may be unreachable when the endpoint starts).
        `after_record`: called with the ids a request inserted instead of delivering them in the request
        (`serve` hands them to its background relay); None delivers in the request (the Lambda)."""
        self._recorder = recorder
        self._credentials = credentials
        self._criteria = criteria
        self._download_base_url = download_base_url
        self._subscription_ids = frozenset(subscription_id.lower() for subscription_id in subscription_ids)
        self.logger = logger or Logger(service=Service.PUSH)
        self.metrics = metrics or Metrics(namespace=NAMESPACE, service=Service.PUSH)
        self._metrics_lock = threading.Lock()  # powertools' metric set is a plain dict shared by instances
        self._clock = clock
        self._after_record = after_record

    @classmethod
    def from_settings(
        cls, settings: Settings, engine: Callable[[], Engine], *, logger: Logger | None = None, **kwargs: Any
    ) -> PushEndpoint:
        """CredentialsUnavailable when the endpoint's credentials are not configured."""
        sinks = build_sinks(settings)

        @functools.cache  # a failure (database unreachable) is not cached: the next request tries again
        def recorder() -> Recorder:
            return Recorder.from_settings(settings, engine(), sinks)

        return cls(
            recorder=recorder,
            credentials=credentials_source(settings),
            criteria=push_criteria(settings),
            download_base_url=settings.cdse.download_url,
            subscription_ids=settings.subscription.ids,
            logger=logger,
            **kwargs,
        )

    def authenticate(self, headers: Mapping[str, str] | None) -> Reply | None:
        """None when the request carries the right credentials, else the reply to send."""
        try:
            expected = self._credentials()
        except CredentialsUnavailable as exc:
            self.logger.error("cannot check credentials", extra={"error": str(exc)})
            self.count("credentials_unavailable")
            return CREDENTIALS_UNAVAILABLE
        if is_authorized(header(headers, "authorization"), expected):
            return None
        self.logger.warning("notification refused: missing or wrong credentials")
        self.count("unauthorized")
        return UNAUTHORIZED

    def refuse_too_large(self) -> Reply:
        self.logger.warning("notification refused: body too large")
        self.count("too_large")
        return TOO_LARGE

    def handle(self, headers: Mapping[str, str] | None, body: bytes) -> Reply:
        """The reply to one POST /events. `body` may be cut short just past MAX_BODY_BYTES by the caller."""
        if refusal := self.authenticate(headers):
            return refusal
        if len(body) > MAX_BODY_BYTES:
            return self.refuse_too_large()
        try:
            parsed = parse_notifications(body)
        except InvalidNotification as exc:
            self.logger.warning("notification refused: invalid", extra={"error": str(exc)})
            self.count("invalid")
            return Reply(400, str(exc))
        for malformed in parsed.malformed:
            self.logger.warning(
                "notification skipped: malformed",
                extra={"product_id": malformed.product_id, "error": malformed.error, "reason": MALFORMED},
            )
            self.count(MALFORMED)
        planned = plan(
            parsed.notifications, self._criteria, self._clock(), self._download_base_url, self._subscription_ids
        )
        self._log_other_subscriptions(planned)
        try:
            recorded = self._record(planned)
        except DATABASE_DOWN as exc:
            self.logger.error("database unavailable", extra={"error": self._database_failure(exc)})
            self.count("database_unavailable")
            return DATABASE_UNAVAILABLE
        self._log_decisions(planned.decisions, set(recorded.inserted))
        self._log_deletions(planned, recorded)
        if to_deliver := recorded.to_deliver:
            if self._after_record is not None:
                self._after_record(to_deliver)
            else:
                self._deliver(to_deliver)
        if parsed.malformed:
            # Its neighbours are recorded; the answer still names what was wrong (a retry records nothing twice).
            return Reply(400, parsed.malformed[0].error)
        return NO_CONTENT

    def count(self, outcome: str, value: int = 1) -> None:
        with self._metrics_lock:
            self.metrics.add_metric(name=outcome, unit=MetricUnit.Count, value=value)

    def _record(self, planned: Plan) -> Recorded:
        kept = any(decision.kept for decision in planned.decisions)
        if not (kept or planned.deletions):
            return Recorded([], DeletionOutcome([], []))
        recorder = self._recorder()
        if not planned.deletions:
            # One statement, atomic on its own: autocommit spares the BEGIN and COMMIT round trips.
            with recorder.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                return record(conn, recorder, planned)
        with recorder.engine.begin() as conn:
            return record(conn, recorder, planned)

    def _log_other_subscriptions(self, planned: Plan) -> None:
        for notification in planned.other_subscription:
            self.logger.info(
                "notification ignored: another subscription's",
                extra={
                    "product_id": notification.product_id,
                    "subscription_id": notification.subscription_id,
                    "event": notification.event,
                    "reason": OTHER_SUBSCRIPTION,
                },
            )
            self.count(OTHER_SUBSCRIPTION)

    def _database_failure(self, exc: Exception) -> str | None:
        """What happened to the database (link_fetcher.database.database_failure), naming it when it can."""
        try:
            where = engine_description(self._recorder().engine)
        except DATABASE_DOWN:  # the engine itself could not be made (its secret, say)
            where = "the database"
        return database_failure(exc, where)

    def _log_deletions(self, planned: Plan, recorded: Recorded) -> None:
        announced, remembered = set(recorded.deletions.announced), set(recorded.deletions.remembered)
        refused = dict(recorded.deletions.refused)
        for deletion in planned.deletions:
            reason = None
            if deletion.id in announced:
                outcome = "deletion_announced"
            elif deletion.id in remembered:
                outcome = "deletion_remembered"
            elif reason := refused.pop(deletion.id, None):
                # Names another product than the one recorded, or predates its publication: not believed.
                outcome = "deletion_refused"
            else:  # seen before, or a product we neither recorded nor would
                outcome = "deletion_unchanged"
            announced.discard(deletion.id)
            remembered.discard(deletion.id)
            extra = {"product": deletion.filename, "product_id": deletion.id, "outcome": outcome}
            if reason:
                self.logger.warning("deletion notification not believed", extra=extra | {"reason": reason})
                self.count(reason)
            else:
                self.logger.info("deletion notification", extra=extra)
            self.count(outcome)

    def _log_decisions(self, decisions: Sequence[Decision], inserted: set[str]) -> None:
        not_logged = set(inserted)  # an id twice in one array is recorded once: the second is a duplicate
        for decision in decisions:
            record = decision.record
            if not decision.kept:
                outcome = "filtered"
            elif record.id in not_logged:
                not_logged.discard(record.id)
                outcome = "recorded"
            else:
                outcome = "duplicate"
            reason = decision.reason or outcome
            self.logger.info(
                f"notification {outcome}",
                extra={"product": record.filename, "product_id": record.id, "outcome": outcome, "reason": reason},
            )
            self.count(reason)

    def _deliver(self, inserted: Sequence[str]) -> None:
        """Deliver now; the granule is recorded whatever happens here, and what is not delivered stays pending
        for the scheduled relay, so failures are logged, not answered."""
        recorder = self._recorder()
        if not recorder.sinks:
            return
        try:
            report = recorder.deliver_now(inserted)
        except Exception as exc:  # see the docstring: the 204 stands, the delivery stays pending
            if failure := self._database_failure(exc):
                self.logger.error(
                    "delivery failed; it stays pending", extra={"granules": list(inserted), "error": failure}
                )
            else:
                self.logger.exception("delivery failed; it stays pending", extra={"granules": list(inserted)})
            return
        for sink, error in report.unavailable.items():
            self.logger.warning("sink unavailable; delivery stays pending", extra={"sink": sink, "error": error})
        if report.total_sent:
            self.count("delivered", report.total_sent)

"""A relay worker: leases a sink's pending deliveries on a connection of its own, sends them a batch at a time and
marks each batch before the next one leaves. `relay_sink` runs one or more of them per sink; the push endpoint's
delivery of what it just recorded is the same worker with a filter on the granules."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import logging
import select
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from db import ClaimedDelivery, DeliveryOutcome, LeaseSession, MessageRow, end_leases, lease_token
from link_fetcher.messages import DELETED, FOUND, message_id, to_download_body
from link_fetcher.sinks import BeforeSend, Message, ReceiptSink, Sink, SinkUnavailable

log = logging.getLogger(__name__)

# Entries a sink refuses (SQS partial batch failures: throttling, internal errors) are resent alone, this many
# times with doubling pauses, before the run leaves them pending for the next relay.
RESENDS = 2
RESEND_PAUSE_S = 0.1
# Batches a worker leases per statement, at most: fewer statements per delivery, none of them between two sends
# but the mark of the batch just sent. A worker's first lease is one batch, and each next one doubles up to this,
# so that the workers share a small backlog at once and lease a large one in few statements.
LEASE_BATCHES = 10
# What building a message from a bad row can raise.
UNUSABLE = (KeyError, TypeError, ValueError, OverflowError, AttributeError)


@dataclasses.dataclass
class RelayReport:
    sent: dict[str, int] = dataclasses.field(default_factory=dict)
    refused: dict[str, int] = dataclasses.field(default_factory=dict)
    unavailable: dict[str, str] = dataclasses.field(default_factory=dict)
    pending: int = 0
    failed: int = 0
    # Seconds from publication to delivery, per granule source, of each granule a sink took for the first time
    # in this run (what the Lambdas publish as the FreshnessSeconds metric).
    freshness: dict[str, list[float]] = dataclasses.field(default_factory=dict)

    @property
    def total_sent(self) -> int:
        return sum(self.sent.values())

    def summary(self) -> dict[str, Any]:
        """The report as JSON-ready counts (what the relay Lambda returns and logs): freshness as its count and
        worst figure per source, not every sample."""
        counts = {name: getattr(self, name) for name in ("sent", "refused", "unavailable", "pending", "failed")}
        freshness = {
            source: {"count": len(seconds), "max_seconds": round(max(seconds), 1)}
            for source, seconds in self.freshness.items()
        }
        return {**counts, "freshness": freshness}

    def count_sent(
        self, sink: str, claimed: Sequence[ClaimedDelivery], outcomes: Sequence[DeliveryOutcome], now: dt.datetime
    ) -> None:
        """Add a batch's accepted deliveries, with the freshness of the granules this sink took first (a granule
        found: a deletion's announcement says nothing of how fresh the granule was)."""
        self.sent[sink] = self.sent.get(sink, 0) + sum(outcome.error is None for outcome in outcomes)
        for delivery, outcome in zip(claimed, outcomes, strict=True):
            granule = delivery.granule
            first = outcome.error is None and delivery.first_sent_at is None and delivery.event == FOUND
            if first and granule is not None and (published := granule["published"]) is not None:
                self.freshness.setdefault(granule["source"], []).append((now - published).total_seconds())


def to_message(granule: MessageRow, event: str = FOUND) -> Message:
    """The message announcing `event` (a leased delivery's) of the granule row."""
    body = to_download_body(granule, event)
    return Message(
        id=message_id(body),
        body=body,
        group=granule.get("tile_id") or "none",
        recorded_at=granule["deleted_at"] if event == DELETED else granule["first_seen"],
    )


def deliver_batch(
    sink: Sink, messages: Sequence[Message], receipt: str | None = None, before_send: BeforeSend | None = None
) -> tuple[dict[str, str], str | None]:
    """Send a batch (with `receipt` to a ReceiptSink; `before_send` runs before it leaves), then resend only the
    entries the sink refused. Returns ({message id: error} for those still not accepted, the outage if the sink
    went down, in which case every entry not yet accepted is listed)."""
    outstanding = list(messages)
    refused: dict[str, str] = {}
    for resend in range(RESENDS + 1):
        if resend:
            time.sleep(RESEND_PAUSE_S * 2 ** (resend - 1))
        try:
            gate = before_send if resend == 0 else None  # once: it may send the next lease
            if receipt is not None and isinstance(sink, ReceiptSink):
                refused = sink.send_with_receipt(outstanding, receipt, gate)
            else:
                refused = sink.send(outstanding, gate)
        except SinkUnavailable as exc:
            return {message.id: str(exc) for message in outstanding}, str(exc)
        if not refused:
            break
        outstanding = [message for message in outstanding if message.id in refused]
    return refused, None


def prepare_messages(claimed: Sequence[ClaimedDelivery]) -> tuple[list[Message], dict[int, str]]:
    """The messages of the claimed deliveries, and {outbox id: error} for those whose granule cannot be read or
    turned into a message: they fail alone, so one bad row never holds up the batch (or every later relay)."""
    messages, unusable = [], {}
    for delivery in claimed:
        if delivery.granule is None:
            unusable[delivery.outbox_id] = delivery.unreadable or "granule row missing"
            continue
        try:
            messages.append(to_message(delivery.granule, delivery.event))
        except UNUSABLE as exc:
            unusable[delivery.outbox_id] = f"cannot build the message: {type(exc).__name__}: {exc}"
    for outbox_id, error in unusable.items():
        log.error("delivery %d failed for good: %s", outbox_id, error)
    return messages, unusable


def send_batch(
    sink: Sink, claimed: Sequence[ClaimedDelivery], receipt: str | None = None, before_send: BeforeSend | None = None
) -> tuple[dict[str, str], str | None, list[DeliveryOutcome], list[str]]:
    """Send leased deliveries: (refused, outage, outcomes, ids of the messages sent). The outcomes also hold the
    deliveries that failed for good (see `prepare_messages`). `before_send` runs before anything is sent (also
    when nothing is)."""
    messages, unusable = prepare_messages(claimed)
    if not messages and before_send is not None:
        before_send()
    refused, outage = deliver_batch(sink, messages, receipt, before_send) if messages else ({}, None)
    sendable = [delivery for delivery in claimed if delivery.outbox_id not in unusable]
    message_ids = {d.outbox_id: m.id for d, m in zip(sendable, messages, strict=True)}
    outcomes = []
    for d in claimed:
        if d.outbox_id in unusable:
            outcomes.append(DeliveryOutcome(d.outbox_id, unusable[d.outbox_id], final=True))
        else:
            outcomes.append(
                DeliveryOutcome(d.outbox_id, refused.get(message_ids[d.outbox_id]), attempted=outage is None)
            )
    return refused, outage, outcomes, [message.id for message in messages]


@contextlib.contextmanager
def relay_connection(engine: Engine) -> Iterator[tuple[Connection, int]]:
    """An autocommit connection and its lease token (`db.lease_token`). Its commits do not wait for the WAL
    flush: marking a batch sent is the only write, and a PostgreSQL crash losing the last fraction of a second of
    such commits only repeats those batches (consumers dedupe on id); a relay crash or a lost connection still
    repeats at most the batch in flight. Recording elsewhere keeps synchronous commits: the setting is reset
    before the connection goes back to the pool."""
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql("SET synchronous_commit = off")
        token = lease_token(conn)
        try:
            yield conn, token
        except BaseException as exc:
            # Discarded, not reset, so that the error raised is the one that stopped the relay, not a failed
            # cleanup. Closing it ends its leases once the server notices; when the database is still there, they
            # end now, so a relay started right after takes over at once.
            if not isinstance(exc, DBAPIError):
                with contextlib.suppress(Exception):
                    end_leases(conn, token)
            conn.invalidate()
            raise
        conn.exec_driver_sql("RESET synchronous_commit")


@dataclasses.dataclass
class SinkRun:
    """What the workers relaying one sink in one run share."""

    sink: Sink
    report: RelayReport
    batch_size: int
    max_attempts: int
    # Only the deliveries of these granules, in one lease (what a request just recorded); None: the whole backlog.
    granule_ids: Sequence[str] | None = None
    stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)
    # Outbox ids a sink refused in this run: left for the next relay instead of being leased again.
    refused: set[int] = dataclasses.field(default_factory=set)


class RelayWorker:
    """One worker of a `SinkRun` on its own connection. It leases up to LEASE_BATCHES batches in one statement (one
    at first, twice as many each time), sends them a batch at a time and marks each batch (one statement) before
    the next one leaves: workers and concurrent relays never share a delivery, a crash or a lost connection repeats
    at most the batch in flight, and what it leased without sending is free for the next relay once its session
    ends. The statements overlap the sends (`LeaseSession` in pipeline mode): a batch's mark runs in PostgreSQL
    while the next batch is built and serialized, and has committed when the sink's `before_send` returns, right
    before that batch leaves; the next lease goes with a lease's last batch and is collected once the sink answered.

    To a ReceiptSink (Redis) the batches go with the worker's receipt and a lease is marked once, after its last
    batch: a relay taking over skips what the sink holds under a dead relay's receipt, so nothing is repeated; a
    worker whose session the server ended sends nothing more."""

    def __init__(self, run: SinkRun, conn: Connection, token: int) -> None:
        self.run = run
        self.sink = run.sink
        self.receipt_sink = run.sink if isinstance(run.sink, ReceiptSink) else None
        self.conn = conn
        self.token = token
        self.session = LeaseSession(conn)
        self.leased: collections.deque[ClaimedDelivery] = collections.deque()
        self.cursor = 0  # deliveries committed behind it while this run passed stay pending for the next run
        self.lease_batches = 1
        self.lease_size = 0  # of the lease in flight or last taken
        self.lease_sent = False
        self.caught_up = False
        self.unmarked: list[DeliveryOutcome] = []  # a ReceiptSink's outcomes sent since the last mark
        self.unmarked_ids: list[str] = []

    @classmethod
    def drain(cls, engine: Engine, run: SinkRun) -> None:
        """One worker's life: relay until caught up or stopped, then give back what it leased and did not send."""
        with relay_connection(engine) as (conn, token):
            worker = cls(run, conn, token)
            with worker.session.pipelined():
                worker.work()

    def work(self) -> None:
        while not self.run.stop.is_set():
            if self.leased:
                self.send_next_batch()
            elif self.caught_up or not self.take_lease():
                break
        self.mark_unmarked()
        self.session.release(self.token, [delivery.outbox_id for delivery in self.leased])

    def send_lease(self) -> None:
        granule_ids = self.run.granule_ids
        with self.run.lock:
            exclude = list(self.run.refused)
        self.lease_size = len(granule_ids) if granule_ids is not None else self.run.batch_size * self.lease_batches
        self.lease_batches = min(LEASE_BATCHES, 2 * self.lease_batches)
        self.session.send_lease(
            self.sink.name, self.token, self.lease_size, exclude=exclude, granule_ids=granule_ids, after_id=self.cursor
        )
        self.lease_sent = True

    def take_lease(self) -> bool:
        """Add the lease in flight (or a new one) to what is leased, settled with a ReceiptSink; False when the
        sink is down."""
        if not self.lease_sent:
            self.session.sync()
            self.send_lease()
        chunk = self.session.collect_lease()
        self.lease_sent = False
        if chunk:
            self.cursor = chunk[-1].outbox_id
        # A short lease means the backlog is drained: what is recorded from now on waits for the next relay, so a
        # background relay that keeps up sends full batches instead of spinning on ones. A filter leases once.
        self.caught_up = len(chunk) < self.lease_size or self.run.granule_ids is not None
        if self.receipt_sink is not None:
            try:
                chunk = self.settle_received(chunk)
            except SinkUnavailable as exc:
                self.sink_down(str(exc))
                self.session.release(self.token, [delivery.outbox_id for delivery in chunk])
                return False
        self.leased.extend(chunk)
        return True

    def settle_received(self, leased: Sequence[ClaimedDelivery]) -> list[ClaimedDelivery]:
        """Of deliveries taken over from relays that ended without marking them, mark sent those the ReceiptSink
        already holds under the ended relay's receipt (no repeat), and return the rest to send."""
        assert self.receipt_sink is not None
        taken_over: dict[int, dict[int, str]] = {}  # previous token: {outbox id: message id}
        for delivery in leased:
            previous = delivery.previous_lease
            if previous is None or previous == self.token or delivery.granule is None:
                continue
            with contextlib.suppress(*UNUSABLE):  # never sent, then: `send_batch` fails it
                # The id it was sent under, as `send_batch` builds it.
                taken_over.setdefault(previous, {})[delivery.outbox_id] = to_message(
                    delivery.granule, delivery.event
                ).id
        held: dict[int, str] = {}
        for previous, message_ids in taken_over.items():
            received = self.receipt_sink.received(list(message_ids.values()), str(previous))
            held.update((outbox_id, i) for outbox_id, i in message_ids.items() if i in received)
        if held:
            self.session.send_mark([DeliveryOutcome(outbox_id, None) for outbox_id in sorted(held)], max_attempts=1)
            self.session.sync()
            self.receipt_sink.forget(list(held.values()))
            log.info("%d deliveries a relay that ended had sent were marked sent, not sent again", len(held))
        return [delivery for delivery in leased if delivery.outbox_id not in held]

    def before_send(self) -> None:
        """Right before a batch leaves: the previous batch's mark has committed (a crash repeats this batch at
        most), and when the batch is its lease's last, the next lease goes to PostgreSQL meanwhile."""
        self.session.sync()
        if not self.leased and not self.caught_up and not self.run.stop.is_set():
            self.send_lease()

    def send_next_batch(self) -> None:
        batch = [self.leased.popleft() for _ in range(min(self.run.batch_size, len(self.leased)))]
        last_of_lease = not self.leased
        if self.receipt_sink is not None and self.connection_spoke():
            self.mark_unmarked()  # raises if the session ended: nothing more is sent
        receipt = None if self.receipt_sink is None else str(self.token)
        refused, outage, outcomes, sent_ids = send_batch(self.sink, batch, receipt, self.before_send)
        if self.receipt_sink is None:
            # Committed before the next batch leaves; with the lease in flight, by the sync that collects it.
            self.session.send_mark(outcomes, self.run.max_attempts)
        if self.lease_sent:
            self.take_lease()  # the sink being down stops the run; this batch is still marked
        if self.receipt_sink is not None:
            self.unmarked.extend(outcomes)
            self.unmarked_ids.extend(sent_ids)
            if last_of_lease or outage is not None:
                self.mark_unmarked()
        self.count(batch, refused, outage, outcomes)

    def count(
        self,
        batch: Sequence[ClaimedDelivery],
        refused: dict[str, str],
        outage: str | None,
        outcomes: Sequence[DeliveryOutcome],
    ) -> None:
        report, name = self.run.report, self.sink.name
        with self.run.lock:
            report.count_sent(name, batch, outcomes, dt.datetime.now(dt.UTC))
            if outage is None:
                report.refused[name] += len(refused)
                self.run.refused.update(outcome.outbox_id for outcome in outcomes if outcome.error is not None)
        if outage is not None:
            self.sink_down(outage)
        elif refused:
            log.warning("sink %s refused %d of %d messages: %s", name, len(refused), len(batch), refused)

    def sink_down(self, error: str) -> None:
        """The sink is unavailable: every worker of the run stops, what is pending stays for the next relay."""
        with self.run.lock:
            self.run.report.unavailable[self.sink.name] = error
        self.run.stop.set()
        log.warning("sink %s unavailable, deliveries stay pending: %s", self.sink.name, error)

    def mark_unmarked(self) -> None:
        """Mark what was sent to a ReceiptSink since the last mark, then let it forget those receipts."""
        self.session.sync()
        self.session.send_mark(self.unmarked, self.run.max_attempts)
        self.session.sync()
        if self.receipt_sink is not None:
            self.receipt_sink.forget(self.unmarked_ids)
        self.unmarked.clear()
        self.unmarked_ids.clear()

    def connection_spoke(self) -> bool:
        """Whether the server sent something unasked on this idle connection: in practice, that it ended the
        session (terminated, shut down). A worker that marks once per lease checks this before each batch, so it
        sends nothing more once another relay may have taken its deliveries over."""
        dbapi = self.conn.connection.dbapi_connection
        readable, _, _ = select.select([dbapi.fileno()], [], [], 0)  # type: ignore[union-attr]
        return bool(readable)


def relay_sink(
    engine: Engine,
    sink: Sink,
    *,
    batch_size: int,
    max_attempts: int,
    workers: int,
    report: RelayReport,
    granule_ids: Sequence[str] | None = None,
) -> None:
    """Drain `sink`'s pending deliveries (only those of `granule_ids` if given) with `workers` `RelayWorker`s,
    each on a connection of its own; one that fails stops the others."""
    report.sent.setdefault(sink.name, 0)
    report.refused.setdefault(sink.name, 0)
    run = SinkRun(sink, report, batch_size, max_attempts, granule_ids)

    def drain_or_stop_all() -> None:
        try:
            RelayWorker.drain(engine, run)
        except BaseException:
            run.stop.set()  # e.g. the database went away: the other workers stop too
            raise

    if workers == 1:
        drain_or_stop_all()
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"relay-{sink.name}") as pool:
        for future in [pool.submit(drain_or_stop_all) for _ in range(workers)]:
            future.result()

"""Relay: deliver pending outbox rows to every configured sink, a batch at a time, each marked before the next."""

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

from db import (
    UNASSIGNED_SINK,
    ClaimedDelivery,
    DeliveryOutcome,
    DeliveryStatus,
    MessageRow,
    assign_unbound,
    collect_lease,
    end_leases,
    lease_pending,
    lease_token,
    mark_outcomes,
    release_leases,
    send_lease,
    send_mark,
)
from db import count_by_status as db_count_by_status
from db import retry_failed as db_retry_failed
from db.in_flight import InFlight
from link_fetcher.messages import DELETED, FOUND, message_id, to_download_body
from link_fetcher.settings import Settings
from link_fetcher.sinks import BeforeSend, Message, ReceiptSink, Sink, SinkUnavailable

log = logging.getLogger(__name__)

# Entries a sink refuses (SQS partial batch failures: throttling, internal errors) are resent alone, this many
# times with doubling pauses, before the run leaves them pending for the next relay.
RESENDS = 2
RESEND_PAUSE_S = 0.1
# Batches a relay worker leases per statement, at most: fewer statements per delivery, none of them between two
# sends but the mark of the batch just sent. A worker's first lease is one batch, and each next one doubles up to
# this, so that the workers share a small backlog at once and lease a large one in few statements.
LEASE_BATCHES = 10


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


# What building a message from a bad row can raise.
UNUSABLE = (KeyError, TypeError, ValueError, OverflowError, AttributeError)


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


def send_claimed(
    conn: Connection, sink: Sink, claimed: Sequence[ClaimedDelivery], max_attempts: int
) -> tuple[dict[str, str], str | None, list[DeliveryOutcome]]:
    """Send leased deliveries and record the outcomes (one statement, which ends their leases): (refused, outage,
    outcomes)."""
    refused, outage, outcomes, _ = send_batch(sink, claimed)
    mark_outcomes(conn, outcomes, max_attempts)
    return refused, outage, outcomes


def settle_received(
    conn: Connection, sink: ReceiptSink, leased: Sequence[ClaimedDelivery], token: int
) -> list[ClaimedDelivery]:
    """Of deliveries taken over from relays that ended without marking them, mark sent those the sink already
    holds under the ended relay's receipt (no repeat), and return the rest to send."""
    taken_over: dict[int, dict[int, str]] = {}  # previous token: {outbox id: message id}
    for delivery in leased:
        if delivery.previous_lease is None or delivery.previous_lease == token or delivery.granule is None:
            continue
        with contextlib.suppress(*UNUSABLE):  # never sent, then: `send_batch` fails it
            # The id it was sent under, as `send_batch` builds it.
            message_id = to_message(delivery.granule, delivery.event).id
            taken_over.setdefault(delivery.previous_lease, {})[delivery.outbox_id] = message_id
    held: dict[int, str] = {}
    for previous, message_ids in taken_over.items():
        received = sink.received(list(message_ids.values()), str(previous))
        held.update((outbox_id, i) for outbox_id, i in message_ids.items() if i in received)
    if held:
        mark_outcomes(conn, [DeliveryOutcome(outbox_id, None) for outbox_id in sorted(held)], max_attempts=1)
        sink.forget(list(held.values()))
        log.info("%d deliveries a relay that ended had sent were marked sent, not sent again", len(held))
    return [delivery for delivery in leased if delivery.outbox_id not in held]


def connection_spoke(conn: Connection) -> bool:
    """Whether the server sent something unasked on this idle connection: in practice, that it ended the session
    (terminated, shut down). A relay that marks once per lease checks this before each batch, so it sends nothing
    more once another relay may have taken its deliveries over."""
    readable, _, _ = select.select([conn.connection.dbapi_connection.fileno()], [], [], 0)  # type: ignore[union-attr]
    return bool(readable)


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


def count_sent(
    report: RelayReport, sink: str, claimed: Sequence[ClaimedDelivery], outcomes: Sequence[DeliveryOutcome]
) -> None:
    """Add a batch's accepted deliveries to the report, with the freshness of those this sink took first (a
    granule found: a deletion's announcement says nothing of how fresh the granule was)."""
    now = dt.datetime.now(dt.UTC)
    report.sent[sink] = report.sent.get(sink, 0) + sum(outcome.error is None for outcome in outcomes)
    for delivery, outcome in zip(claimed, outcomes, strict=True):
        published = delivery.granule["published"] if delivery.granule is not None else None
        # A deletion's announcement says nothing of how fresh the granule was.
        found = delivery.event == FOUND
        if outcome.error is None and delivery.first_sent_at is None and published is not None and found:
            source = delivery.granule["source"] if delivery.granule is not None else "unknown"
            report.freshness.setdefault(source, []).append((now - published).total_seconds())


def relay_sink(
    engine: Engine, sink: Sink, *, batch_size: int, max_attempts: int, workers: int, report: RelayReport
) -> None:
    """Drain `sink`'s pending deliveries with `workers` workers, each on a connection of its own. A worker leases
    up to LEASE_BATCHES batches in one statement (one at first, twice as many each time), then sends them a batch
    at a time and marks each batch (one statement) before the next one leaves: workers and concurrent relays never
    share a delivery, a crash or a lost connection repeats at most the batch each worker has in flight, and what a
    worker leased without sending is free for the next relay as soon as its session ends. The statements overlap
    the sends (`InFlight`): a batch's mark runs in PostgreSQL while the next batch is built and serialized, and is
    collected by the sink's `before_send`, right before that batch leaves; the next lease goes with a lease's last
    batch and is collected once the sink has answered. To a ReceiptSink (Redis) the batches go with the worker's
    receipt and a lease is marked once, after its last batch: a relay taking over skips what the sink holds under a
    dead relay's receipt, so nothing is repeated; a worker whose session the server ended sends nothing more."""
    stop = threading.Event()
    lock = threading.Lock()
    refused_this_run: set[int] = set()  # outbox ids: left for the next relay instead of being leased again
    report.sent.setdefault(sink.name, 0)
    report.refused.setdefault(sink.name, 0)
    # A ReceiptSink keeps this relay's receipt with each batch, so the batches of a lease are marked together.
    receipt_sink = sink if isinstance(sink, ReceiptSink) else None

    def drain() -> None:
        with relay_connection(engine) as (conn, token):
            # What PostgreSQL runs while the worker builds and sends: the mark of the batch just sent, or the next
            # lease (sent as the lease's last batch leaves, collected when the sink answered).
            in_flight = InFlight(conn)
            leased: collections.deque[ClaimedDelivery] = collections.deque()
            cursor = 0  # deliveries committed behind it while this run passed stay pending for the next run
            lease_batches = 1
            lease_size = 0  # of the lease in flight or last taken
            lease_sent = False
            caught_up = False
            unmarked: list[DeliveryOutcome] = []  # a ReceiptSink's outcomes sent since the last mark
            unmarked_ids: list[str] = []

            def send_next_lease() -> None:
                nonlocal lease_size, lease_batches, lease_sent
                with lock:
                    exclude = list(refused_this_run)
                lease_size = batch_size * lease_batches
                lease_batches = min(LEASE_BATCHES, 2 * lease_batches)
                send_lease(in_flight, sink.name, token, lease_size, exclude=exclude, after_id=cursor)
                lease_sent = True

            def take_lease() -> list[ClaimedDelivery] | None:
                """The lease in flight (or a new one), settled with a ReceiptSink; None when the sink is down."""
                nonlocal cursor, caught_up, lease_sent
                if not lease_sent:
                    in_flight.collect()
                    send_next_lease()
                chunk = collect_lease(in_flight, sink.name)
                lease_sent = False
                if chunk:
                    cursor = chunk[-1].outbox_id
                # A short lease means the backlog is drained: what is recorded from now on waits for the next
                # relay, so a background relay that keeps up sends full batches instead of spinning on ones.
                caught_up = len(chunk) < lease_size
                if receipt_sink is None:
                    return chunk
                try:
                    return settle_received(conn, receipt_sink, chunk, token)
                except SinkUnavailable as exc:
                    with lock:
                        report.unavailable[sink.name] = str(exc)
                    stop.set()
                    release_leases(conn, token, [delivery.outbox_id for delivery in chunk])
                    return None

            def before_send() -> None:
                """Right before a batch leaves: the previous batch's mark has committed (a crash repeats this batch
                at most), and when the batch is its lease's last, the next lease goes to PostgreSQL meanwhile."""
                in_flight.collect()
                if not leased and not caught_up and not stop.is_set():
                    send_next_lease()

            def mark_unmarked() -> None:
                in_flight.collect()
                send_mark(in_flight, unmarked, max_attempts)
                in_flight.collect()
                if receipt_sink is not None:
                    receipt_sink.forget(unmarked_ids)
                unmarked.clear()
                unmarked_ids.clear()

            while not stop.is_set():
                if not leased:
                    if caught_up:
                        break
                    chunk = take_lease()
                    if chunk is None:
                        break
                    leased.extend(chunk)
                    continue
                batch = [leased.popleft() for _ in range(min(batch_size, len(leased)))]
                last_of_lease = not leased
                if receipt_sink is not None and connection_spoke(conn):
                    mark_unmarked()  # raises if the session ended: nothing more is sent
                receipt = None if receipt_sink is None else str(token)
                refused, outage, outcomes, sent_ids = send_batch(sink, batch, receipt, before_send)
                if lease_sent:
                    chunk = take_lease()
                    leased.extend(chunk or ())
                in_flight.collect()  # the previous batch's mark, if the sink called no before_send
                if receipt_sink is None:
                    send_mark(in_flight, outcomes, max_attempts)  # collected before the next batch leaves
                else:
                    unmarked.extend(outcomes)
                    unmarked_ids.extend(sent_ids)
                    if last_of_lease or outage is not None:
                        mark_unmarked()
                with lock:
                    count_sent(report, sink.name, batch, outcomes)
                    if outage is not None:
                        report.unavailable[sink.name] = outage
                    else:
                        report.refused[sink.name] += len(refused)
                        refused_this_run.update(o.outbox_id for o in outcomes if o.error is not None)
                if outage is not None:
                    stop.set()
                    log.warning("sink %s unavailable, deliveries stay pending: %s", sink.name, outage)
                elif refused:
                    log.warning("sink %s refused %d of %d messages: %s", sink.name, len(refused), len(batch), refused)
            mark_unmarked()
            release_leases(conn, token, [delivery.outbox_id for delivery in leased])

    def drain_or_stop_all() -> None:
        try:
            drain()
        except BaseException:
            stop.set()  # e.g. the database went away: the other workers stop too
            raise

    if workers == 1:
        drain_or_stop_all()
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"relay-{sink.name}") as pool:
        for future in [pool.submit(drain_or_stop_all) for _ in range(workers)]:
            future.result()


def relay(
    engine: Engine,
    sinks: Sequence[Sink],
    *,
    batch_size: int = 10,
    max_attempts: int = 10,
    retry_failed: bool = False,
    workers: int = 1,
) -> RelayReport:
    """Deliver what is pending to each sink; a sink that is down does not stop the others."""
    report = RelayReport()
    sink_names = [sink.name for sink in sinks]
    with engine.begin() as conn:
        assign_unbound(conn, sink_names)
        if retry_failed:
            db_retry_failed(conn, sink_names)
    for sink in sinks:
        relay_sink(engine, sink, batch_size=batch_size, max_attempts=max_attempts, workers=workers, report=report)
    report.pending, report.failed = delivery_backlog(engine, sink_names)
    return report


def relay_with_settings(
    engine: Engine, settings: Settings, sinks: Sequence[Sink], *, retry_failed: bool = False
) -> RelayReport:
    """`relay` with the batch size, attempts and workers the settings give (CLI, Lambdas, watches)."""
    return relay(
        engine,
        sinks,
        batch_size=settings.relay_batch_size,
        max_attempts=settings.relay_max_attempts,
        retry_failed=retry_failed,
        workers=settings.relay_workers,
    )


class BackgroundRelay:
    """Relays continuously from a thread of a long-running process (`serve`): woken when something was
    recorded, and every `interval` seconds to catch up what a sink that was down left pending.

    A wake-up lingers `linger` seconds before relaying, so that under load it finds full batches of 10: a busy
    endpoint makes one sink call per ten granules instead of one per granule, for a delay no consumer notices.
    The guarantees are the relay's.
    """

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        sinks: Sequence[Sink],
        *,
        interval: float = 30.0,
        linger: float = 0.05,
    ) -> None:
        self._engine = engine
        self._settings = settings
        self._sinks = list(sinks)
        self._interval = interval
        self._linger = linger
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="background-relay", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self, *_: object) -> None:
        self._wake.set()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = 30.0) -> None:
        """Deliver what is pending one last time, then stop."""
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            if self._wake.wait(self._interval):
                self._stopping.wait(self._linger)
            # Read before the pass: a stop asked while it runs gets one more pass, for what was recorded meanwhile.
            stopping = self._stopping.is_set()
            self._wake.clear()
            try:
                report = relay_with_settings(self._engine, self._settings, self._sinks)
            except Exception:  # the database may be away for a while: log and try again on the next wake-up
                log.exception("background relay failed; deliveries stay pending")
            else:
                for sink, error in report.unavailable.items():
                    log.warning("sink %s unavailable, %d deliveries pending: %s", sink, report.pending, error)
            if stopping:
                return


def delivery_backlog(engine: Engine, sink_names: Sequence[str]) -> tuple[int, int]:
    """(pending, failed) deliveries of the given sinks (those a sink no longer configured still holds do not
    count: `status` and `pending` show them); with no sink, the unassigned ones."""
    counted = set(sink_names) or {UNASSIGNED_SINK}
    with engine.connect() as conn:
        counts = db_count_by_status(conn, [DeliveryStatus.PENDING, DeliveryStatus.FAILED])
    pending = sum(n for (sink, status), n in counts.items() if sink in counted and status == DeliveryStatus.PENDING)
    failed = sum(n for (sink, status), n in counts.items() if sink in counted and status == DeliveryStatus.FAILED)
    return pending, failed


def sink_names_for_recording(sinks: Sequence[Sink]) -> list[str]:
    """Sink names to schedule deliveries for at record time; UNASSIGNED_SINK when none is configured."""
    return [sink.name for sink in sinks] or [UNASSIGNED_SINK]


def deliver_recorded(
    engine: Engine, sinks: Sequence[Sink], granule_ids: Sequence[str], *, batch_size: int, max_attempts: int
) -> RelayReport:
    """Deliver granules just recorded (the push endpoint's request) to each sink now: only these, so a backlog
    never lands on one request. Leased and sent after the recording committed, as `relay_sink` does; whatever
    is not delivered stays pending for the scheduled relay."""
    report = RelayReport()
    with relay_connection(engine) as (conn, token):
        for sink in sinks:
            report.sent.setdefault(sink.name, 0)
            report.refused.setdefault(sink.name, 0)
            # Those a concurrent relay holds are not leased here: that relay delivers them.
            leased = lease_pending(conn, sink.name, token, len(granule_ids), granule_ids=granule_ids)
            if isinstance(sink, ReceiptSink):
                try:
                    leased = settle_received(conn, sink, leased, token)
                except SinkUnavailable as exc:
                    report.unavailable[sink.name] = str(exc)
                    release_leases(conn, token, [delivery.outbox_id for delivery in leased])
                    continue
            for start in range(0, len(leased), batch_size):
                batch = leased[start : start + batch_size]
                refused, outage, outcomes = send_claimed(conn, sink, batch, max_attempts)
                count_sent(report, sink.name, batch, outcomes)
                if outage is not None:
                    report.unavailable[sink.name] = outage
                    release_leases(conn, token, [delivery.outbox_id for delivery in leased[start + batch_size :]])
                    break
                report.refused[sink.name] += len(refused)
    return report

"""Relay: deliver pending outbox rows to every configured sink, a batch at a time, each in one transaction."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, wait

from sqlalchemy import Connection, Engine, RootTransaction

from db import (
    UNASSIGNED_SINK,
    ClaimedDelivery,
    DeliveryOutcome,
    DeliveryStatus,
    assign_unbound,
    claim_pending,
    mark_outcomes,
)
from db import count_by_status as db_count_by_status
from db import retry_failed as db_retry_failed
from link_fetcher.messages import to_download_body
from link_fetcher.settings import Settings
from link_fetcher.sinks import Message, Sink, SinkUnavailable

log = logging.getLogger(__name__)

# Entries a sink refuses (SQS partial batch failures: throttling, internal errors) are resent alone, this many
# times with doubling pauses, before the run leaves them pending for the next relay.
RESENDS = 2
RESEND_PAUSE_S = 0.1


@dataclasses.dataclass
class RelayReport:
    sent: dict[str, int] = dataclasses.field(default_factory=dict)
    refused: dict[str, int] = dataclasses.field(default_factory=dict)
    unavailable: dict[str, str] = dataclasses.field(default_factory=dict)
    pending: int = 0
    failed: int = 0

    @property
    def total_sent(self) -> int:
        return sum(self.sent.values())


def to_message(granule: dict) -> Message:
    return Message(
        id=granule["id"],
        body=to_download_body(granule),
        group=granule.get("tile_id") or "none",
        recorded_at=granule.get("first_seen"),
    )


def deliver_batch(sink: Sink, messages: Sequence[Message]) -> tuple[dict[str, str], str | None]:
    """Send a batch, then resend only the entries the sink refused. Returns ({message id: error} for those
    still not accepted, the outage if the sink went down, in which case every entry not yet accepted is listed)."""
    outstanding = list(messages)
    refused: dict[str, str] = {}
    for resend in range(RESENDS + 1):
        if resend:
            time.sleep(RESEND_PAUSE_S * 2 ** (resend - 1))
        try:
            refused = sink.send(outstanding)
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
        if delivery.unreadable is not None:
            unusable[delivery.outbox_id] = delivery.unreadable
            continue
        try:
            messages.append(to_message(delivery.granule))
        except (KeyError, TypeError, ValueError, OverflowError, AttributeError) as exc:  # what a bad row can cause
            unusable[delivery.outbox_id] = f"cannot build the message: {type(exc).__name__}: {exc}"
    for outbox_id, error in unusable.items():
        log.error("delivery %d failed for good: %s", outbox_id, error)
    return messages, unusable


def send_claimed(
    conn: Connection, sink: Sink, claimed: Sequence[ClaimedDelivery], max_attempts: int
) -> tuple[dict[str, str], str | None, list[DeliveryOutcome]]:
    """Send claimed deliveries and record the outcomes in the claiming transaction: (refused, outage, outcomes).
    The outcomes also hold the deliveries that failed for good (see `prepare_messages`)."""
    messages, unusable = prepare_messages(claimed)
    refused, outage = deliver_batch(sink, messages) if messages else ({}, None)
    outcomes = []
    for d in claimed:
        if d.outbox_id in unusable:
            outcomes.append(DeliveryOutcome(d.outbox_id, unusable[d.outbox_id], final=True))
        else:
            outcomes.append(DeliveryOutcome(d.outbox_id, refused.get(d.granule["id"]), attempted=outage is None))
    mark_outcomes(conn, outcomes, max_attempts)
    return refused, outage, outcomes


@contextlib.contextmanager
def relay_connection(engine: Engine) -> Iterator[Connection]:
    """A connection whose commits do not wait for the WAL flush. Marking a batch sent is the only write, and a
    PostgreSQL crash losing the last fraction of a second of such commits only repeats those batches (consumers
    dedupe on id); a relay crash or a lost connection still repeats at most the batch in flight. Recording
    elsewhere keeps synchronous commits: the setting is reset before the connection goes back to the pool."""
    with engine.connect() as conn:
        conn.exec_driver_sql("SET synchronous_commit = off")
        conn.commit()
        try:
            yield conn
        except BaseException:
            # Its state is unknown (the database may have dropped it): discarded, not reset, so that the error
            # raised is the one that stopped the relay, not a failed cleanup.
            conn.invalidate()
            raise
        conn.rollback()
        conn.exec_driver_sql("RESET synchronous_commit")
        conn.commit()


def relay_sink(
    engine: Engine, sink: Sink, *, batch_size: int, max_attempts: int, workers: int, report: RelayReport
) -> None:
    """Drain `sink`'s pending deliveries with `workers` workers. Each batch is sent while its rows are locked
    (FOR UPDATE SKIP LOCKED), so workers and concurrent relays never share a delivery, and a crash before
    COMMIT repeats at most the batch each worker has in flight."""
    stop = threading.Event()
    lock = threading.Lock()
    refused_this_run: set[int] = set()  # outbox ids: left for the next relay instead of being claimed again
    report.sent.setdefault(sink.name, 0)
    report.refused.setdefault(sink.name, 0)

    def claim_after(conn: Connection, cursor: int) -> tuple[RootTransaction, list[ClaimedDelivery]]:
        # Deliveries committed behind the cursor while this run passed (or held by another relay that then
        # failed) stay pending for the next run.
        transaction = conn.begin()
        with lock:
            exclude = list(refused_this_run)
        return transaction, claim_pending(conn, sink.name, batch_size, exclude, after_id=cursor)

    def drain_batches(stack: contextlib.ExitStack) -> None:
        """While one batch is sent and marked on one connection, the next is claimed (locked, not yet sent) on
        another: the database's latency hides behind the sink's, and only the batch sent is ever at risk."""
        sending = stack.enter_context(relay_connection(engine))
        claiming: Connection | None = None  # opened once a second batch is needed
        claimer = stack.enter_context(ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"claim-{sink.name}"))
        transaction, claimed = claim_after(sending, 0)
        while claimed and not stop.is_set():
            # A short batch means the backlog is drained: what is recorded from now on waits for the next relay,
            # so a background relay that keeps up sends full batches instead of spinning on batches of one.
            next_claim = None
            if len(claimed) == batch_size:
                claiming = claiming or stack.enter_context(relay_connection(engine))
                next_claim = claimer.submit(claim_after, claiming, claimed[-1].outbox_id)
            try:
                refused, outage, outcomes = send_claimed(sending, sink, claimed, max_attempts)
                transaction.commit()
            finally:
                if next_claim is not None:
                    wait([next_claim])  # its connection is idle again before anything else happens
            with lock:
                report.sent[sink.name] += sum(outcome.error is None for outcome in outcomes)
                if outage is not None:
                    report.unavailable[sink.name] = outage
                else:
                    report.refused[sink.name] += len(refused)
                    refused_this_run.update(o.outbox_id for o in outcomes if o.error is not None)
            if outage is not None:
                stop.set()
                log.warning("sink %s unavailable, deliveries stay pending: %s", sink.name, outage)
            elif refused:
                log.warning("sink %s refused %d of %d messages: %s", sink.name, len(refused), len(claimed), refused)
            if next_claim is None:
                return
            transaction, claimed = next_claim.result()
            sending, claiming = claiming, sending
        transaction.rollback()  # releases a batch claimed ahead when stopping

    def drain() -> None:
        try:
            with contextlib.ExitStack() as stack:
                drain_batches(stack)
        except BaseException:
            stop.set()  # e.g. the database went away: the other workers stop too
            raise

    if workers == 1:
        drain()
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix=f"relay-{sink.name}") as pool:
        for future in [pool.submit(drain) for _ in range(workers)]:
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
            self._wake.clear()
            try:
                report = relay_with_settings(self._engine, self._settings, self._sinks)
            except Exception:  # the database may be away for a while: log and try again on the next wake-up
                log.exception("background relay failed; deliveries stay pending")
            else:
                for sink, error in report.unavailable.items():
                    log.warning("sink %s unavailable, %d deliveries pending: %s", sink, report.pending, error)
            if self._stopping.is_set():
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
    never lands on one request. Sent after the recording committed, while the deliveries are locked, as
    `relay_sink` does; whatever is not delivered stays pending for the scheduled relay."""
    report = RelayReport()
    with engine.connect() as conn:
        for sink in sinks:
            report.sent.setdefault(sink.name, 0)
            report.refused.setdefault(sink.name, 0)
            for start in range(0, len(granule_ids), batch_size):
                with conn.begin():
                    # As in relay_connection: marking sent is the only write; an unflushed one only repeats a send.
                    conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
                    chunk = granule_ids[start : start + batch_size]
                    claimed = claim_pending(conn, sink.name, batch_size, granule_ids=chunk)
                    if not claimed:  # a concurrent relay holds them: it delivers them
                        continue
                    refused, outage, outcomes = send_claimed(conn, sink, claimed, max_attempts)
                report.sent[sink.name] += sum(outcome.error is None for outcome in outcomes)
                if outage is not None:
                    report.unavailable[sink.name] = outage
                    break
                report.refused[sink.name] += len(refused)
    return report

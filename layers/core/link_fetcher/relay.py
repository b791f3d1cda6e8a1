"""Relay: deliver pending outbox rows to every configured sink, a batch at a time, each in one transaction."""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import Engine

from db import UNASSIGNED_SINK, DeliveryOutcome, DeliveryStatus, assign_unbound, claim_pending, mark_outcomes
from db import count_by_status as db_count_by_status
from db import retry_failed as db_retry_failed
from link_fetcher.messages import to_download_body
from link_fetcher.sinks import Message, Sink, SinkUnavailable

log = logging.getLogger(__name__)


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
    return Message(id=granule["id"], body=to_download_body(granule), group=granule.get("tile_id") or "none")


def relay_sink(
    engine: Engine, sink: Sink, *, batch_size: int, max_attempts: int, workers: int, report: RelayReport
) -> None:
    """Drain `sink`'s pending deliveries with `workers` threads. Each batch is sent while its rows are locked
    (FOR UPDATE SKIP LOCKED), so workers and concurrent relays never share a delivery, and a crash before
    COMMIT repeats at most the batches in flight."""
    stop = threading.Event()
    lock = threading.Lock()
    report.sent.setdefault(sink.name, 0)
    report.refused.setdefault(sink.name, 0)

    def drain() -> None:
        while not stop.is_set():
            with engine.begin() as conn:
                claimed = claim_pending(conn, sink.name, batch_size)
                if not claimed:
                    return
                messages = [to_message(delivery.granule) for delivery in claimed]
                try:
                    refused = sink.send(messages)
                except SinkUnavailable as exc:
                    stop.set()
                    mark_outcomes(conn, [DeliveryOutcome(d.outbox_id, str(exc)) for d in claimed], max_attempts)
                    with lock:
                        report.unavailable[sink.name] = str(exc)
                    log.warning("sink %s unavailable, deliveries stay pending: %s", sink.name, exc)
                    return
                mark_outcomes(
                    conn, [DeliveryOutcome(d.outbox_id, refused.get(d.granule["id"])) for d in claimed], max_attempts
                )
            with lock:
                report.sent[sink.name] += len(claimed) - len(refused)
                report.refused[sink.name] += len(refused)
            if refused:
                log.warning("sink %s refused %d of %d messages: %s", sink.name, len(refused), len(claimed), refused)
                # Refused entries stay pending; retrying them in this run would only repeat the refusal.
                stop.set()

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
    report.pending, report.failed = delivery_backlog(engine)
    return report


def delivery_backlog(engine: Engine) -> tuple[int, int]:
    """(pending, failed) deliveries across sinks, unassigned ones included."""
    with engine.connect() as conn:
        counts = db_count_by_status(conn)
    pending = sum(n for (_, status), n in counts.items() if status == DeliveryStatus.PENDING)
    failed = sum(n for (_, status), n in counts.items() if status == DeliveryStatus.FAILED)
    return pending, failed


def sink_names_for_recording(sinks: Sequence[Sink]) -> list[str]:
    """Sink names to schedule deliveries for at record time; UNASSIGNED_SINK when none is configured."""
    return [sink.name for sink in sinks] or [UNASSIGNED_SINK]

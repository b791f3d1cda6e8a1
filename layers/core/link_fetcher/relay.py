"""Relay: deliver pending outbox rows to every configured sink, a batch at a time, each in one transaction."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

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


def relay_sink(engine: Engine, sink: Sink, *, batch_size: int, max_attempts: int, report: RelayReport) -> None:
    """Drain `sink`'s pending deliveries. Sending happens while the rows are locked, so a concurrent relay
    skips them; a crash before COMMIT repeats at most this one batch."""
    report.sent.setdefault(sink.name, 0)
    report.refused.setdefault(sink.name, 0)
    while True:
        with engine.begin() as conn:
            claimed = claim_pending(conn, sink.name, batch_size)
            if not claimed:
                return
            messages = [to_message(delivery.granule) for delivery in claimed]
            try:
                refused = sink.send(messages)
            except SinkUnavailable as exc:
                error = str(exc)
                mark_outcomes(conn, [DeliveryOutcome(d.outbox_id, error) for d in claimed], max_attempts)
                report.unavailable[sink.name] = error
                log.warning("sink %s unavailable, %d deliveries stay pending: %s", sink.name, len(claimed), error)
                return
            mark_outcomes(
                conn,
                [DeliveryOutcome(d.outbox_id, refused.get(d.granule["id"])) for d in claimed],
                max_attempts,
            )
        report.sent[sink.name] += len(claimed) - len(refused)
        report.refused[sink.name] += len(refused)
        if refused:
            log.warning("sink %s refused %d of %d messages: %s", sink.name, len(refused), len(claimed), refused)
            # Refused entries stay pending; retrying them in this run would only repeat the refusal.
            return


def relay(
    engine: Engine,
    sinks: Sequence[Sink],
    *,
    batch_size: int = 10,
    max_attempts: int = 10,
    retry_failed: bool = False,
) -> RelayReport:
    """Deliver what is pending to each sink; a sink that is down does not stop the others."""
    report = RelayReport()
    sink_names = [sink.name for sink in sinks]
    with engine.begin() as conn:
        assign_unbound(conn, sink_names)
        if retry_failed:
            db_retry_failed(conn, sink_names)
    for sink in sinks:
        relay_sink(engine, sink, batch_size=batch_size, max_attempts=max_attempts, report=report)
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

"""Relay: deliver pending outbox rows to every configured sink, a batch at a time, each marked before the next
(the workers that do it: `relay_worker`)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine

from db import UNASSIGNED_SINK, DeliveryStatus, assign_unbound
from db import count_by_status as db_count_by_status
from db import retry_failed as db_retry_failed
from link_fetcher.relay_worker import RESENDS, RelayReport, relay_sink, to_message
from link_fetcher.sinks import Sink

__all__ = [
    "RESENDS",
    "RelayReport",
    "deliver_recorded",
    "relay",
    "to_message",
]


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


def delivery_backlog(engine: Engine, sink_names: Sequence[str]) -> tuple[int, int]:
    """(pending, failed) deliveries of the given sinks (those a sink no longer configured still holds do not
    count: `status` and `pending` show them); with no sink, the unassigned ones."""
    counted = set(sink_names) or {UNASSIGNED_SINK}
    with engine.connect() as conn:
        counts = db_count_by_status(conn, [DeliveryStatus.PENDING, DeliveryStatus.FAILED])
    pending = sum(n for (sink, status), n in counts.items() if sink in counted and status == DeliveryStatus.PENDING)
    failed = sum(n for (sink, status), n in counts.items() if sink in counted and status == DeliveryStatus.FAILED)
    return pending, failed


def deliver_recorded(
    engine: Engine, sinks: Sequence[Sink], granule_ids: Sequence[str], *, batch_size: int, max_attempts: int
) -> RelayReport:
    """Deliver granules just recorded (the push endpoint's request) to each sink now: only these, so a backlog
    never lands on one request; those a concurrent relay holds are that relay's to deliver. Leased and sent after
    the recording committed, by the relay's own worker; whatever is not delivered stays pending for the scheduled
    relay."""
    report = RelayReport()
    for sink in sinks:
        relay_sink(
            engine, sink, batch_size=batch_size, max_attempts=max_attempts, workers=1, report=report,
            granule_ids=granule_ids,
        )  # fmt: skip
    return report

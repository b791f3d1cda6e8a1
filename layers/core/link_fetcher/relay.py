"""Relay: deliver pending outbox rows to every configured sink, a batch at a time, each marked before the next
(the workers that do it: `relay_worker`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from sqlalchemy import Engine

from db import UNASSIGNED_SINK, DeliveryStatus, assign_unbound
from db import count_by_status as db_count_by_status
from db import retry_failed as db_retry_failed
from link_fetcher.database import database_failure, engine_description
from link_fetcher.relay_worker import RESENDS, RelayReport, relay_sink, to_message
from link_fetcher.settings import Settings
from link_fetcher.sinks import Sink

__all__ = [
    "RESENDS",
    "BackgroundRelay",
    "RelayReport",
    "deliver_recorded",
    "relay",
    "relay_with_settings",
    "to_message",
]

log = logging.getLogger(__name__)


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
            except Exception as exc:  # the database may be away for a while: log and try again on the next wake-up
                if failure := database_failure(exc, engine_description(self._engine)):
                    log.error("background relay failed, deliveries stay pending: %s", failure)
                else:
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

"""The relay of a long-running process (`serve`): a thread delivering what the process records."""

from __future__ import annotations

import logging
import threading

from link_fetcher.database import database_failure, engine_description
from link_fetcher.recording import Recorder

log = logging.getLogger(__name__)


class BackgroundRelay:
    """Relays continuously from a thread of a long-running process (`serve`): woken when something was
    recorded, and every `interval` seconds to catch up what a sink that was down left pending.

    A wake-up lingers `linger` seconds before relaying, so that under load it finds full batches of 10: a busy
    endpoint makes one sink call per ten granules instead of one per granule, for a delay no consumer notices.
    The guarantees are the relay's.
    """

    def __init__(self, recorder: Recorder, *, interval: float = 30.0, linger: float = 0.05) -> None:
        self._recorder = recorder
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
                report = self._recorder.deliver()
            except Exception as exc:  # the database may be away for a while: log and try again on the next wake-up
                if failure := database_failure(exc, engine_description(self._recorder.engine)):
                    log.error("background relay failed, deliveries stay pending: %s", failure)
                else:
                    log.exception("background relay failed; deliveries stay pending")
            else:
                for sink, error in report.unavailable.items():
                    log.warning("sink %s unavailable, %d deliveries pending: %s", sink, report.pending, error)
            if stopping:
                return

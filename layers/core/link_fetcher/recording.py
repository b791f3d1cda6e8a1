"""One ingestion path: every source (poll, deletions, push, PULL, STAC) records what it found through a Recorder,
which owns the sinks deliveries are scheduled for, the reprocessing policy, how long deletions are remembered,
the relay after recording and the freshness it publishes.

A source records a page in its own transaction (with its progress, or its acknowledgement's preconditions):
`granules` and `deletions` take the caller's connection. `deliver` relays what is pending once the source is
done; `deliver_now` delivers only the granules one request recorded (the push endpoint's).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from sqlalchemy import Connection, Engine

from db import UNASSIGNED_SINK, DeletionOutcome, DeletionRecord, GranuleRecord, record_deletions, record_granules
from db.deletions import DEFAULT_MEMORY_DAYS
from link_fetcher.freshness import publish_freshness
from link_fetcher.relay import RelayReport, deliver_recorded, relay
from link_fetcher.settings import LifecycleSettings, RelaySettings, Settings, SinkSettings
from link_fetcher.sinks import Sink


def sink_names_for_recording(sinks: Sequence[Sink]) -> list[str]:
    """Sink names to schedule deliveries for at record time; UNASSIGNED_SINK when none is configured."""
    return [sink.name for sink in sinks] or [UNASSIGNED_SINK]


# What a function recording and delivering reads: Recorder.from_settings() (the lifecycle policies, the relay) and
# the sinks it is given (link_fetcher.sinks).
RECORDING_SETTINGS = (LifecycleSettings, RelaySettings, SinkSettings)


@dataclasses.dataclass(frozen=True)
class Recorder:
    """Thread-safe (it holds no state of its own): one per process is enough."""

    engine: Engine
    sinks: Sequence[Sink] = ()
    _: dataclasses.KW_ONLY
    # Deliveries scheduled at record time; default: the sinks' names. Tests may name sinks that have no client.
    sink_names: Sequence[str] = ()
    reprocessed_policy: str = "deliver"
    deletion_memory_days: int = DEFAULT_MEMORY_DAYS
    relay_batch_size: int = 10
    relay_max_attempts: int = 10
    relay_workers: int = 1
    # Freshness as CloudWatch embedded metrics (the Lambdas); the CLI reports its deliveries its own way.
    publish: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "sinks", tuple(self.sinks))
        object.__setattr__(self, "sink_names", tuple(self.sink_names or sink_names_for_recording(self.sinks)))

    @classmethod
    def from_settings(
        cls, settings: Settings, engine: Engine, sinks: Sequence[Sink], *, publish: bool = True
    ) -> Recorder:
        return cls(
            engine,
            sinks,
            reprocessed_policy=settings.lifecycle.reprocessed_policy,
            deletion_memory_days=settings.lifecycle.deletion_memory_days,
            relay_batch_size=settings.relay.batch_size,
            relay_max_attempts=settings.relay.max_attempts,
            relay_workers=settings.relay.workers,
            publish=publish,
        )

    def granules(self, conn: Connection, records: Sequence[GranuleRecord]) -> list[str]:
        """Record once, with their deliveries, in the caller's transaction; the ids recorded now."""
        if not records:
            return []
        return record_granules(conn, records, self.sink_names, reprocessed_policy=self.reprocessed_policy)

    def deletions(self, conn: Connection, deletions: Sequence[DeletionRecord]) -> DeletionOutcome:
        """Mark deleted and announce, or remember, in the caller's transaction (also prunes old memories)."""
        return record_deletions(conn, deletions, self.sink_names, memory_days=self.deletion_memory_days)

    def deliver(self, *, retry_failed: bool = False) -> RelayReport:
        """Relay what is pending to every sink, then publish the freshness it measured."""
        report = relay(
            self.engine,
            self.sinks,
            batch_size=self.relay_batch_size,
            max_attempts=self.relay_max_attempts,
            retry_failed=retry_failed,
            workers=self.relay_workers,
        )
        self._publish(report)
        return report

    def deliver_now(self, granule_ids: Sequence[str]) -> RelayReport:
        """Deliver only these just-recorded granules (one request's), then publish their freshness."""
        report = deliver_recorded(
            self.engine,
            self.sinks,
            granule_ids,
            batch_size=self.relay_batch_size,
            max_attempts=self.relay_max_attempts,
        )
        self._publish(report)
        return report

    def _publish(self, report: RelayReport) -> None:
        if self.publish:
            publish_freshness(report.freshness)

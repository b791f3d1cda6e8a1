"""The faults of the twin's month: what CDSE's catalogue answers instead of a page (rates and a two-day outage of one
publication day), and the plan of the faults the month driver plays through the twin (Lambda timeouts, database
restarts, a relay killed mid-batch, SQS throttling). Deterministic from a seed."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import threading
from collections.abc import Callable
from urllib.parse import parse_qs

from tests.fakes.cdse_catalogue import DELETED_PATH, PRODUCTS_PATH, search_hint
from twin.world import _Draws

CATALOGUE_FAULT = 9  # the draws' purpose (twin.world numbers its own from 1)


@dataclasses.dataclass(frozen=True)
class CatalogueFaults:
    """Per search request: 429 (Retry-After), 500, 503, a body cut mid-way, a reply held past the client's timeout.
    And one publication day that no search can read (500) for two days of simulated time."""

    seed: int = 20261205
    rate_429: float = 0.01
    rate_500: float = 0.003
    rate_503: float = 0.005
    rate_drop: float = 0.005
    rate_timeout: float = 0.0005
    outage_day: dt.date | None = None
    outage_from: dt.datetime | None = None
    outage_hours: float = 48.0

    def policy(self, now: Callable[[], dt.datetime]) -> FaultPolicy:
        return FaultPolicy(self, now)


class FaultPolicy:
    """FakeCatalogue's `fault_policy`: asked (path, query) for each request. The same request (the same text)
    meets the same fault each n-th time it is sent, whatever the order of the requests around it."""

    def __init__(self, faults: CatalogueFaults, now: Callable[[], dt.datetime]) -> None:
        self.faults, self.now = faults, now
        self.seen: collections.Counter[str] = collections.Counter()
        self.played: collections.Counter[str] = collections.Counter()
        self.lock = threading.Lock()

    def outage(self, path: str, query: str) -> bool:
        faults = self.faults
        if faults.outage_day is None or faults.outage_from is None or path != PRODUCTS_PATH:
            return False
        if not faults.outage_from <= self.now() < faults.outage_from + dt.timedelta(hours=faults.outage_hours):
            return False
        hint = search_hint(path, {key: values[-1] for key, values in parse_qs(query).items()})
        day_start = dt.datetime.combine(faults.outage_day, dt.time(), tzinfo=dt.UTC)
        day_end = day_start + dt.timedelta(days=1)
        return (hint.start is None or hint.start < day_end) and (hint.end is None or hint.end > day_start)

    def __call__(self, path: str, query: str) -> str | None:
        if path not in (PRODUCTS_PATH, DELETED_PATH):
            return None
        if self.outage(path, query):
            return self._played("outage", "500")
        text = f"{path}?{query}"
        with self.lock:
            self.seen[text] += 1
            occurrence = self.seen[text]
        draw = _Draws(self.faults.seed, CATALOGUE_FAULT, hash_text(text) ^ occurrence).random()
        faults = self.faults
        for kind, rate in (
            ("429", faults.rate_429),
            ("500", faults.rate_500),
            ("503", faults.rate_503),
            ("drop", faults.rate_drop),
            ("timeout", faults.rate_timeout),
        ):
            if draw < rate:
                return self._played(kind, kind)
            draw -= rate
        return None

    def _played(self, name: str, fault: str) -> str:
        with self.lock:
            self.played[name] += 1
        return fault


def hash_text(text: str) -> int:
    """A stable 64-bit number of a text (Python's own str hash changes with each process)."""
    value = 0xCBF29CE484222325
    for byte in text.encode():
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return value


@dataclasses.dataclass(frozen=True)
class FaultPlan:
    """When, in days from the month's start, the driver plays each fault through the twin."""

    # The polling run on these days meets a link_fetcher whose Lambda time runs out mid-day.
    fetcher_timeouts: tuple[float, ...] = (2.0, 9.0, 17.0, 24.0)
    # The twin database's connections terminated (pg_terminate_backend), as a failover or restart would.
    database_restarts: tuple[float, ...] = (3.3, 11.6, 20.1, 27.8)
    # A relay container killed while it sends a batch.
    relay_kills: tuple[float, ...] = (5.4, 14.2, 22.9)
    # SQS answers SendMessageBatch with throttling for this long (hours) from these days.
    sqs_throttles: tuple[float, ...] = (7.5, 19.25)
    sqs_throttle_hours: float = 2.0
    # The publication day CDSE cannot serve, and from when (days) for two days.
    outage_day: int = 12
    outage_from: float = 13.0

    def catalogue(self, seed: int, start: dt.date) -> CatalogueFaults:
        return CatalogueFaults(
            seed=seed,
            outage_day=start + dt.timedelta(days=self.outage_day),
            outage_from=dt.datetime.combine(start, dt.time(), tzinfo=dt.UTC) + dt.timedelta(days=self.outage_from),
        )

    def throttled(self, day: float) -> bool:
        return any(start <= day < start + self.sqs_throttle_hours / 24 for start in self.sqs_throttles)

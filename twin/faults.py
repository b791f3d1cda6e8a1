"""The faults of the twin's month: what CDSE's catalogue answers instead of a page (rates and a two-day outage of one
publication day), and the plan of the faults the month driver plays through the twin (Lambda timeouts, database
restarts, a relay killed mid-batch, SQS throttling). Deterministic from a seed."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import threading
from collections.abc import Callable, Mapping
from urllib.parse import parse_qs

from tests.fakes.cdse_catalogue import DELETED_PATH, PRODUCTS_PATH, search_hint
from twin.world import _Draws

CATALOGUE_FAULT = 9  # the draws' purpose (twin.world numbers its own from 1)
MONTH_DAYS = 30
# Per search request, by what the catalogue answers instead of a page: 429 (with Retry-After), 500, 503, a body cut
# mid-way, a reply held past the client's timeout.
FAULT_RATES = {"429": 0.01, "500": 0.003, "503": 0.005, "drop": 0.005, "timeout": 0.0005}


@dataclasses.dataclass(frozen=True)
class CatalogueFaults:
    """Per search request, a fault drawn at `rates` (see FAULT_RATES). And one publication day that no search can
    read (500) for two days of simulated time."""

    seed: int = 20261205
    rates: Mapping[str, float] = dataclasses.field(default_factory=lambda: dict(FAULT_RATES))
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
        for kind, rate in self.faults.rates.items():
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
    """When, in days from the month's start, the driver plays each fault through the twin (for a 30-day month;
    `scaled` moves them into a shorter one)."""

    # The polling run of these days meets a link_fetcher whose Lambda time runs out in the middle of a page.
    fetcher_timeouts: tuple[float, ...] = (2.0, 9.0, 17.0, 24.0)
    # The twin database's connections terminated (pg_terminate_backend), as a failover or restart would: during
    # the polling run of these days, and at these moments between the schedules' runs.
    database_restarts: tuple[float, ...] = (3.0, 11.0, 20.0, 27.0)
    database_restarts_between: tuple[float, ...] = (6.6, 16.4, 25.55)
    # A relay container killed while it sends: at these moments, and at the end of each SQS throttling.
    relay_kills: tuple[float, ...] = (5.4, 14.2, 22.9)
    # SQS answers SendMessageBatch with throttling for `sqs_throttle_hours` from these moments (over a polling run).
    sqs_throttles: tuple[float, ...] = (7.1, 19.1)
    sqs_throttle_hours: float = 2.0
    # The publication day CDSE cannot serve, and from when (days) for two days.
    outage_day: int = 12
    outage_from: float = 13.0

    def scaled(self, days: int) -> FaultPlan:
        """The same faults in a month of `days` publication days, at the same share of it (times of day kept)."""
        if days == MONTH_DAYS:
            return self

        def move(moments: tuple[float, ...]) -> tuple[float, ...]:
            return tuple(int(m * days / MONTH_DAYS) + m % 1 for m in moments)

        outage_day = int(self.outage_day * days / MONTH_DAYS)
        return dataclasses.replace(
            self,
            fetcher_timeouts=move(self.fetcher_timeouts),
            database_restarts=move(self.database_restarts),
            database_restarts_between=move(self.database_restarts_between),
            relay_kills=move(self.relay_kills),
            sqs_throttles=move(self.sqs_throttles),
            outage_day=outage_day,
            outage_from=outage_day + 1.0,
        )

    def catalogue(self, seed: int, start: dt.date) -> CatalogueFaults:
        return CatalogueFaults(
            seed=seed,
            outage_day=start + dt.timedelta(days=self.outage_day),
            outage_from=dt.datetime.combine(start, dt.time(), tzinfo=dt.UTC) + dt.timedelta(days=self.outage_from),
        )

    def throttled(self, day: float) -> bool:
        return any(start <= day < start + self.sqs_throttle_hours / 24 for start in self.sqs_throttles)

    def relay_killed(self, day: float, step_days: float) -> bool:
        """Whether the relay run at `day` (within a step of `step_days`) is the one to kill."""
        ends = (start + self.sqs_throttle_hours / 24 for start in self.sqs_throttles)
        return any(kill <= day < kill + step_days for kill in (*self.relay_kills, *ends))

    def restart_between(self, day: float, step_days: float) -> bool:
        return any(moment <= day < moment + step_days for moment in self.database_restarts_between)

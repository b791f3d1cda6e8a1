"""The month's audit: what the world published in scope against what the database recorded and the queue carried.

`read_state` reads the database (granule and outbox rows); `audit` compares it, pure, with the world and with what
the month driver saw (notifications delivered, polling runs, messages drained, the database's clock against the
simulated one); `Audit.table()` prints it and `Audit.to_json()` writes it.

Times: the database stamps `outbox.first_sent_at` with its own clock (real time), the world with simulated time.
The driver notes both clocks at each step (`Checkpoint`), and freshness maps a database time onto the simulated
clock between the two checkpoints around it.
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import datetime as dt
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import Engine, text

from twin.world import World, WorldProduct


@dataclasses.dataclass(frozen=True)
class GranuleRow:
    id: str
    filename: str
    source: str
    published: dt.datetime | None
    deleted_at: dt.datetime | None
    downloaded: bool
    supersedes: str | None


@dataclasses.dataclass(frozen=True)
class DeliveryRow:
    granule_id: str
    sink: str
    event: str
    status: str
    first_sent_at: dt.datetime | None


@dataclasses.dataclass(frozen=True)
class Checkpoint:
    """The database's clock and the simulated clock read at the same moment."""

    database: dt.datetime
    simulated: dt.datetime


@dataclasses.dataclass
class Observed:
    """What the month driver saw besides the database."""

    polls: list[dt.datetime] = dataclasses.field(default_factory=list)  # simulated times of the polling runs
    lookback_days: int = 5
    notified: set[tuple[str, str]] = dataclasses.field(default_factory=set)  # (id, event) answered 2xx
    messages: collections.Counter[tuple[str, str]] = dataclasses.field(default_factory=collections.Counter)
    checkpoints: list[Checkpoint] = dataclasses.field(default_factory=list)
    queue_left: int = 0  # messages still in the To Download queue at the end
    dead_letters: int = 0


def read_state(engine: Engine) -> tuple[list[GranuleRow], list[DeliveryRow]]:
    with engine.connect() as conn:
        granules = [
            GranuleRow(*row)
            for row in conn.execute(
                text("SELECT id, filename, source, published, deleted_at, downloaded, supersedes FROM granule")
            )
        ]
        deliveries = [
            DeliveryRow(*row)
            for row in conn.execute(text("SELECT granule_id, sink, event, status, first_sent_at FROM outbox"))
        ]
    return granules, deliveries


def database_now(engine: Engine) -> dt.datetime:
    with engine.connect() as conn:
        value: dt.datetime = conn.execute(text("SELECT clock_timestamp()")).scalar_one()
    return value


def to_simulated(checkpoints: Sequence[Checkpoint], moment: dt.datetime) -> dt.datetime:
    """A database time on the simulated clock: interpolated between the checkpoints around it, clamped at the ends."""
    if not checkpoints:
        return moment
    times = [c.database for c in checkpoints]
    index = bisect.bisect_right(times, moment)
    if index == 0:
        return checkpoints[0].simulated
    if index == len(checkpoints):
        return checkpoints[-1].simulated
    before, after = checkpoints[index - 1], checkpoints[index]
    span = (after.database - before.database).total_seconds()
    share = (moment - before.database).total_seconds() / span if span > 0 else 0.0
    return before.simulated + (after.simulated - before.simulated) * share


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (`share` in 0..1); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def polled_while_visible(product: WorldProduct, polls: Iterable[dt.datetime], lookback_days: int) -> bool:
    """Whether a polling run read the product's publication day while the product was visible in search."""
    day = product.published.date()
    return any(1 <= (poll.date() - day).days <= lookback_days and product.visible(poll) for poll in polls)


@dataclasses.dataclass
class Audit:
    in_scope: int = 0
    expected: int = 0  # in scope and seen by CDSE's notifications or a polling run
    recorded: int = 0
    missed: list[str] = dataclasses.field(default_factory=list)
    withdrawn_before_seen: int = 0  # deleted before any source recorded them (remembered, not delivered)
    recorded_twice: list[str] = dataclasses.field(default_factory=list)
    recorded_out_of_scope: list[str] = dataclasses.field(default_factory=list)
    reprocessings: int = 0
    reprocessings_linked: int = 0  # recorded with `supersedes` naming the product they reprocess
    messages: dict[str, int] = dataclasses.field(default_factory=dict)  # found messages per product: histogram
    without_message: list[str] = dataclasses.field(default_factory=list)
    deletions_expected: int = 0
    deletions_announced: int = 0
    deletions_not_announced: list[str] = dataclasses.field(default_factory=list)
    deliveries: dict[str, int] = dataclasses.field(default_factory=dict)  # outbox rows per status
    not_downloaded: list[str] = dataclasses.field(default_factory=list)
    queue_left: int = 0
    dead_letters: int = 0
    freshness: dict[str, dict[str, float]] = dataclasses.field(default_factory=dict)  # per source

    @property
    def stuck(self) -> int:
        """Deliveries that did not end sent, messages left in the queues, granules never downloaded."""
        unfinished = self.deliveries.get("pending", 0) + self.deliveries.get("failed", 0)
        return unfinished + self.queue_left + self.dead_letters + len(self.not_downloaded)

    @property
    def ok(self) -> bool:
        return not self.missed and not self.recorded_twice and not self.stuck

    def to_json(self) -> dict[str, Any]:
        values = dataclasses.asdict(self)
        values["stuck"] = self.stuck
        values["ok"] = self.ok
        return values

    def table(self) -> str:
        rows = [
            ("products in scope", self.in_scope, ""),
            ("  seen by a notification or a poll", self.expected, ""),
            ("  recorded", self.recorded, ""),
            ("  missed", len(self.missed), "0"),
            ("  withdrawn before any source saw them", self.withdrawn_before_seen, ""),
            ("recorded twice", len(self.recorded_twice), "0"),
            ("recorded out of scope", len(self.recorded_out_of_scope), "0"),
            ("reprocessings recorded / linked", f"{self.reprocessings} / {self.reprocessings_linked}", "equal"),
            ("found messages per product", _histogram(self.messages), ">= 1"),
            ("  products without a message", len(self.without_message), "0"),
            ("deletions expected / announced", f"{self.deletions_expected} / {self.deletions_announced}", "equal"),
            ("deliveries sent / pending / failed", _statuses(self.deliveries), "pending 0, failed 0"),
            ("granules not downloaded (not deleted)", len(self.not_downloaded), "0"),
            ("messages left in queue / dead letters", f"{self.queue_left} / {self.dead_letters}", "0 / 0"),
            ("stuck", self.stuck, "0"),
        ]
        for source, figures in sorted(self.freshness.items()):
            rows.append(
                (
                    f"freshness {source} (n={int(figures['count'])})",
                    ", ".join(f"{key} {_duration(figures[key])}" for key in ("p50", "p95", "max")),
                    "",
                )
            )
        width = max(len(name) for name, _, _ in rows)
        value_width = max(len(str(value)) for _, value, _ in rows)
        lines = [f"{'audit':<{width}}  {'measured':<{value_width}}  expected", "-" * (width + value_width + 12)]
        lines += [f"{name:<{width}}  {value!s:<{value_width}}  {want}".rstrip() for name, value, want in rows]
        return "\n".join(lines)


def _histogram(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n}x: {count}" for n, count in sorted(counts.items(), key=lambda item: int(item[0]))) or "-"


def _statuses(deliveries: Mapping[str, int]) -> str:
    return " / ".join(str(deliveries.get(status, 0)) for status in ("sent", "pending", "failed"))


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def audit(world: World, granules: Sequence[GranuleRow], deliveries: Sequence[DeliveryRow], observed: Observed) -> Audit:
    """Compare the world's month in scope with the database and the driver's observations."""
    products = {p.id: p for p in world.month()}
    result = Audit(in_scope=len(products), queue_left=observed.queue_left, dead_letters=observed.dead_letters)
    rows = {row.id: row for row in granules}
    recorded = {row.id for row in granules if row.source != "deletion"}
    expected = {
        product_id
        for product_id, product in products.items()
        if (product_id, "created") in observed.notified
        or polled_while_visible(product, observed.polls, observed.lookback_days)
    }
    result.expected = len(expected)
    result.recorded = len(recorded & set(products))
    remembered = {row.id for row in granules if row.source == "deletion"}
    result.missed = sorted(expected - recorded - remembered)
    result.withdrawn_before_seen = len((expected & remembered) - recorded)
    names = collections.Counter(row.filename for row in granules if row.source != "deletion")
    result.recorded_twice = sorted(name for name, count in names.items() if count > 1)
    result.recorded_out_of_scope = sorted(recorded - set(products))
    reprocessings = [p for p in products.values() if p.supersedes and p.id in recorded]
    result.reprocessings = len(reprocessings)
    result.reprocessings_linked = sum(rows[p.id].supersedes == p.supersedes for p in reprocessings)
    _messages(result, recorded & set(products), observed)
    _deletions(result, products, recorded, deliveries, observed)
    statuses = collections.Counter(row.status for row in deliveries)
    result.deliveries = {status: statuses.get(status, 0) for status in ("sent", "pending", "failed")}
    result.not_downloaded = sorted(
        row.id for row in granules if row.id in recorded and row.deleted_at is None and not row.downloaded
    )
    result.freshness = _freshness(rows, deliveries, observed.checkpoints)
    return result


def _messages(result: Audit, recorded: set[str], observed: Observed) -> None:
    histogram: collections.Counter[int] = collections.Counter()
    for product_id in recorded:
        histogram[observed.messages.get((product_id, "found"), 0)] += 1
    result.messages = {str(n): count for n, count in sorted(histogram.items())}
    result.without_message = sorted(p for p in recorded if observed.messages.get((p, "found"), 0) == 0)


def _deletions(
    result: Audit,
    products: Mapping[str, WorldProduct],
    recorded: set[str],
    deliveries: Sequence[DeliveryRow],
    observed: Observed,
) -> None:
    """A recorded product that CDSE withdrew where a notification or a DeletedProducts poll could tell."""
    expected = set()
    for product_id in recorded:
        product = products.get(product_id)
        if product is None or product.deleted_at is None:
            continue
        told = (product_id, "deleted") in observed.notified
        polled = any(
            1 <= (poll.date() - product.deleted_at.date()).days <= observed.lookback_days and poll >= product.deleted_at
            for poll in observed.polls
        )
        if told or polled:
            expected.add(product_id)
    announced = {row.granule_id for row in deliveries if row.event == "deleted" and row.status == "sent"}
    result.deletions_expected = len(expected)
    result.deletions_announced = len(expected & announced)
    result.deletions_not_announced = sorted(expected - announced)


def _freshness(
    rows: Mapping[str, GranuleRow], deliveries: Sequence[DeliveryRow], checkpoints: Sequence[Checkpoint]
) -> dict[str, dict[str, float]]:
    """Per source: first delivery (on the simulated clock) minus PublicationDate, over the granules delivered."""
    first: dict[str, dt.datetime] = {}
    for row in deliveries:
        if row.event == "found" and row.first_sent_at is not None:
            first[row.granule_id] = min(first.get(row.granule_id, row.first_sent_at), row.first_sent_at)
    ages: dict[str, list[float]] = collections.defaultdict(list)
    for granule_id, sent in first.items():
        granule = rows.get(granule_id)
        if granule is None or granule.published is None:
            continue
        ages[granule.source].append((to_simulated(checkpoints, sent) - granule.published).total_seconds())
    return {
        source: {
            "count": float(len(values)),
            "p50": percentile(values, 0.5),
            "p95": percentile(values, 0.95),
            "max": max(values),
        }
        for source, values in sorted(ages.items())
    }

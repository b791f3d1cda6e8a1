"""The month's audit (twin/audit.py) over a small world and database rows written by hand."""

from __future__ import annotations

import collections
import datetime as dt
import json

import pytest

from twin.audit import (
    Audit,
    Checkpoint,
    DeliveryRow,
    GranuleRow,
    Observed,
    audit,
    percentile,
    polled_while_visible,
    to_simulated,
)
from twin.world import World, WorldConfig, WorldProduct

pytestmark = pytest.mark.unit

START = dt.date(2026, 11, 1)
T0 = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
REAL = dt.datetime(2026, 12, 5, 8, 0, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def world() -> World:
    tiles = sorted(World(WorldConfig(scope_tiles=1)).tiles)[::40]
    return World(
        WorldConfig(start=START, days=4, scope_tiles=60, deletion_share=0.2, reprocessing_share=0.1), tiles=tiles
    )


def polls(days: int = 10) -> list[dt.datetime]:
    return [T0 + dt.timedelta(days=day, hours=3) for day in range(1, days)]


def granule(product: WorldProduct, source: str = "search", **changes: object) -> GranuleRow:
    values: dict[str, object] = {
        "id": product.id,
        "filename": product.name,
        "source": source,
        "published": product.published,
        "deleted_at": product.deleted_at,
        "downloaded": product.deleted_at is None,
        "supersedes": product.supersedes,
    }
    values.update(changes)
    return GranuleRow(**values)  # type: ignore[arg-type]


def perfect(world: World) -> tuple[list[GranuleRow], list[DeliveryRow], Observed]:
    """The database and observations of a month where everything went right."""
    products = list(world.month())
    checkpoints = [Checkpoint(REAL + dt.timedelta(seconds=i), T0 + dt.timedelta(hours=i)) for i in range(24 * 12)]
    # Each product delivered 10 simulated minutes after its publication.
    sent_real = {
        p.id: REAL + dt.timedelta(seconds=(p.published - T0).total_seconds() / 3600 + 10 / 60) for p in products
    }
    granules = [granule(p) for p in products]
    deliveries = [DeliveryRow(p.id, "sqs", "found", "sent", sent_real[p.id]) for p in products]
    deliveries += [DeliveryRow(p.id, "sqs", "deleted", "sent", sent_real[p.id]) for p in products if p.deleted_at]
    messages = collections.Counter({(p.id, "found"): 1 for p in products})
    notified = {(p.id, "created") for p in products}
    return granules, deliveries, Observed(polls=polls(), notified=notified, messages=messages, checkpoints=checkpoints)


def test_a_month_where_everything_went_right_audits_clean(world: World) -> None:
    granules, deliveries, observed = perfect(world)
    result = audit(world, granules, deliveries, observed)
    assert result.in_scope == result.expected == result.recorded == len(granules) > 100
    assert result.ok and result.stuck == 0
    assert not result.missed and not result.recorded_twice and not result.recorded_out_of_scope
    assert result.messages == {"1": len(granules)}
    assert result.deletions_expected == result.deletions_announced > 0
    assert result.reprocessings == result.reprocessings_linked > 0
    freshness = result.freshness["search"]
    assert freshness["count"] == len(granules)
    assert freshness["p50"] == pytest.approx(600, abs=1) and freshness["max"] == pytest.approx(600, abs=1)


def test_missing_doubled_foreign_and_undelivered_granules_are_each_counted(world: World) -> None:
    granules, deliveries, observed = perfect(world)
    plain = [g for g in granules if not g.supersedes and not g.deleted_at]
    missing, doubled, undelivered = plain[:3]
    reprocessing = next(g for g in granules if g.supersedes)
    granules = [g for g in granules if g is not missing]
    granules.append(GranuleRow("someone-else", doubled.filename, "subscription", doubled.published, None, True, None))
    granules = [g if g is not reprocessing else granule_without_link(g) for g in granules]
    deliveries = [
        DeliveryRow(d.granule_id, d.sink, d.event, "pending", None) if d.granule_id == undelivered.id else d
        for d in deliveries
    ]
    deleted = next(d for d in deliveries if d.event == "deleted")
    deliveries.remove(deleted)
    observed.messages[(doubled.id, "found")] = 2
    del observed.messages[(undelivered.id, "found")]
    observed.queue_left, observed.dead_letters = 3, 1
    result = audit(world, granules, deliveries, observed)
    assert result.missed == [missing.id]
    assert result.recorded_twice == [doubled.filename]
    assert result.recorded_out_of_scope == ["someone-else"]
    assert result.without_message == [undelivered.id]
    assert result.messages["2"] == 1 and result.messages["0"] == 1
    assert result.deliveries["pending"] == 1
    assert result.deletions_not_announced == [deleted.granule_id]
    assert result.reprocessings_linked == result.reprocessings - 1
    assert result.stuck == 1 + 3 + 1 and not result.ok
    table = result.table()
    assert "missed" in table and "recorded twice" in table and "freshness search" in table
    assert json.loads(json.dumps(result.to_json()))["stuck"] == 5


def granule_without_link(row: GranuleRow) -> GranuleRow:
    return GranuleRow(row.id, row.filename, row.source, row.published, row.deleted_at, row.downloaded, None)


def test_a_product_no_source_could_see_is_not_expected(world: World) -> None:
    """Withdrawn before any poll read its day and with its notification lost: not missed; one the system remembered
    as deleted before seeing it is counted apart."""
    products = list(world.month())
    granules, deliveries, observed = perfect(world)
    gone = next(p for p in products if p.deleted_at)
    assert not polled_while_visible(gone, [gone.deleted_at + dt.timedelta(hours=1)], 5)  # type: ignore[operator]
    observed.polls = []
    observed.notified = {(p.id, "created") for p in products if p is not gone}
    granules = [g for g in granules if g.id != gone.id]
    result = audit(world, granules, deliveries, observed)
    assert result.expected == len(products) - 1 and not result.missed
    granules.append(granule(gone, source="deletion"))
    observed.notified.add((gone.id, "created"))
    result = audit(world, granules, deliveries, observed)
    assert not result.missed and result.withdrawn_before_seen == 1


def test_a_poll_sees_a_product_only_while_it_is_visible_and_its_day_is_looked_back_on(world: World) -> None:
    late = next(p for p in world.month() if p.deleted_at)
    day = dt.datetime.combine(late.published.date(), dt.time(), tzinfo=dt.UTC)
    assert late.deleted_at is not None
    before_visible = late.visible_at - dt.timedelta(seconds=1)
    assert not polled_while_visible(late, [before_visible], 5)
    if late.visible_at < day + dt.timedelta(days=1):  # visible on its own day: a poll then reads another day
        assert not polled_while_visible(late, [late.visible_at], 5)
    within = [day + dt.timedelta(days=k, hours=3) for k in range(1, 6)]
    visible_polls = [t for t in within if late.visible(t)]
    assert polled_while_visible(late, within, 5) == bool(visible_polls)
    assert not polled_while_visible(late, [day + dt.timedelta(days=6, hours=3)], 5)


def test_database_times_map_onto_the_simulated_clock_between_checkpoints() -> None:
    checkpoints = [Checkpoint(REAL, T0), Checkpoint(REAL + dt.timedelta(seconds=10), T0 + dt.timedelta(hours=1))]
    assert to_simulated(checkpoints, REAL + dt.timedelta(seconds=5)) == T0 + dt.timedelta(minutes=30)
    assert to_simulated(checkpoints, REAL - dt.timedelta(days=1)) == T0
    assert to_simulated(checkpoints, REAL + dt.timedelta(days=1)) == T0 + dt.timedelta(hours=1)
    assert to_simulated([], REAL) == REAL


def test_percentiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (percentile(values, 0.5), percentile(values, 0.95), percentile(values, 1.0)) == (50.0, 95.0, 100.0)
    assert percentile([], 0.5) == 0.0 and percentile([7.0], 0.95) == 7.0


def test_an_empty_audit_prints_and_serialises() -> None:
    result = Audit()
    assert result.ok and "stuck" in result.table()
    assert json.loads(json.dumps(result.to_json()))["ok"] is True

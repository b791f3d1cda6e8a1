"""What the ops console shows from Postgres: deliveries per sink with the backlog's age, the oldest pending or
failed ones, granules recorded per day, freshness (last 24 h per source, and per day), and deletions and
reprocessings per day.

Blocking SQLAlchemy calls; the app runs them in a worker thread.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Iterable
from typing import Any

from sqlalchemy import Engine, text

from db import DeliveryStatus, list_deliveries
from db.status import deleted, deliveries, freshness, freshness_per_day, reprocessed

CHART_DAYS = 30
LISTED_DELIVERIES = 20


def chart_series(rows: Iterable[tuple[dt.date, str, int]], today: dt.date, days: int = CHART_DAYS) -> dict[str, Any]:
    """(day, platform, granules) rows → one count per day (oldest first, missing days as 0) per platform."""
    labels = [today - dt.timedelta(days=offset) for offset in range(days - 1, -1, -1)]
    position = {day: index for index, day in enumerate(labels)}
    series: dict[str, list[int]] = {}
    for day, platform, granules in rows:
        if day in position:
            series.setdefault(platform, [0] * days)[position[day]] += granules
    return {"days": [day.isoformat() for day in labels], "platforms": dict(sorted(series.items()))}


def recorded_per_day(engine: Engine, today: dt.date, days: int = CHART_DAYS) -> dict[str, Any]:
    """Granules first recorded on each of the last `days` UTC days, per platform."""
    since = dt.datetime.combine(today - dt.timedelta(days=days - 1), dt.time(), tzinfo=dt.UTC)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                """
                SELECT (first_seen AT TIME ZONE 'UTC')::date AS day, coalesce(platform, 'unknown'), count(*)
                FROM granule WHERE first_seen >= :since GROUP BY 1, 2
                """
            ),
            {"since": since},
        ).all()
    return chart_series(rows, today, days)


def delivery_summary(engine: Engine) -> dict[str, Any]:
    """Deliveries per sink and status with the oldest pending one's age, and the oldest pending and failed ones
    (with their last error)."""
    with engine.connect() as conn:
        by_sink = deliveries(conn)
        failed = list(itertools.islice(list_deliveries(conn, [DeliveryStatus.FAILED]), LISTED_DELIVERIES))
        pending = list(itertools.islice(list_deliveries(conn, [DeliveryStatus.PENDING]), LISTED_DELIVERIES))
    return {"by_sink": by_sink, "oldest_pending": pending, "oldest_failed": failed}


def freshness_summary(engine: Engine, today: dt.date, days: int = CHART_DAYS) -> dict[str, Any]:
    """`last_24h`: the figures of `status` per source; `per_day`: per UTC day of recording (the last `days`) and
    source, the delivered granules and their p50 / p95 / max freshness."""
    since = dt.datetime.combine(today - dt.timedelta(days=days - 1), dt.time(), tzinfo=dt.UTC)
    with engine.connect() as conn:
        return {"last_24h": freshness(conn), "per_day": freshness_per_day(conn, since)}


def lifecycle_summary(engine: Engine) -> dict[str, Any]:
    """Per day of the last 30: deletions (announced, remembered) and reprocessings (and replacements)."""
    with engine.connect() as conn:
        return {"deleted": deleted(conn), "reprocessed": reprocessed(conn)}


def console_data(engine: Engine, today: dt.date) -> dict[str, Any]:
    return {
        "deliveries": delivery_summary(engine),
        "recorded": recorded_per_day(engine, today),
        "freshness": freshness_summary(engine, today),
        "lifecycle": lifecycle_summary(engine),
    }


def check_database(engine: Engine) -> None:
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))

"""What `status` and the ops console report: the days polled, the deliveries per sink (with the backlog's age)
and freshness per source (SPEC §10). Every query reads through an index bounded by what it reports: the last
day's (or days') granules, the unsent deliveries; never the whole history of `granule` or `outbox`.

Freshness of a granule = its first delivery to any sink (`outbox.first_sent_at`, kept across requeues) minus its
publication; split into recording (first_seen - published) and relaying (delivered - first_seen). The figures
cover the granules *recorded* in the window, so a granule still waiting for a sink counts as `undelivered`
instead of vanishing from the figures.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, text

from db.models import DeliveryStatus
from db.outbox import count_by_status

FRESHNESS_WINDOW = dt.timedelta(hours=24)

# One row per granule recorded since :since with its publication, recording and first delivery (of the granule
# found: a deletion's announcement comes later and says nothing of freshness); the delivery through the outbox's
# (granule_id, sink, event) unique index. Reads granules through ix_granule_first_seen.
_RECORDED_SINCE = """
    WITH lags AS (
        SELECT g.source, g.first_seen,
               extract(epoch FROM d.delivered - g.published) AS fresh,
               extract(epoch FROM g.first_seen - g.published) AS recording,
               extract(epoch FROM d.delivered - g.first_seen) AS relaying
        FROM granule g
        CROSS JOIN LATERAL (
            SELECT min(o.first_sent_at) AS delivered FROM outbox o WHERE o.granule_id = g.id AND o.event = 'found'
        ) d
        WHERE g.first_seen >= :since AND g.published IS NOT NULL
    )
"""


def _figures(prefix: str) -> str:
    return (
        f"percentile_cont(0.5) WITHIN GROUP (ORDER BY {prefix}) AS {prefix}_p50, "
        f"percentile_cont(0.95) WITHIN GROUP (ORDER BY {prefix}) AS {prefix}_p95, "
        f"max({prefix}) AS {prefix}_max"
    )


FRESHNESS_SQL = text(
    f"""{_RECORDED_SINCE}
    SELECT source, count(*) AS recorded, count(fresh) AS delivered,
           {_figures("fresh")}, {_figures("recording")}, {_figures("relaying")}
    FROM lags GROUP BY source ORDER BY source
    """
)
FRESHNESS_PER_DAY_SQL = text(
    f"""{_RECORDED_SINCE}
    SELECT (first_seen AT TIME ZONE 'UTC')::date AS day, source, count(fresh) AS delivered, {_figures("fresh")}
    FROM lags GROUP BY 1, 2 HAVING count(fresh) > 0 ORDER BY 1, 2
    """
)
_OLDEST_PENDING_SQL = text(
    "SELECT sink, EXTRACT(EPOCH FROM now() - min(created_at)) FROM outbox WHERE status = 'pending' GROUP BY sink"
)


def _seconds(value: Any) -> float | None:
    return None if value is None else round(float(value), 1)


def _percentiles(row: Any, prefix: str) -> dict[str, float | None]:
    return {
        "p50_seconds": _seconds(getattr(row, f"{prefix}_p50")),
        "p95_seconds": _seconds(getattr(row, f"{prefix}_p95")),
        "max_seconds": _seconds(getattr(row, f"{prefix}_max")),
    }


def freshness(
    conn: Connection, *, now: dt.datetime | None = None, window: dt.timedelta = FRESHNESS_WINDOW
) -> dict[str, dict[str, Any]]:
    """{source: figures} over the granules recorded in the last `window`: `count` (delivered ones, the sample
    of the percentiles), `p50_seconds`, `p95_seconds`, `max_seconds` (publication → first delivery), `recorded`,
    `undelivered`, and the split `recording` / `relaying` (same three figures each)."""
    since = (now or dt.datetime.now(dt.UTC)) - window
    figures = {}
    for row in conn.execute(FRESHNESS_SQL, {"since": since}):
        figures[row.source] = {
            "count": row.delivered,
            **_percentiles(row, "fresh"),
            "recorded": row.recorded,
            "undelivered": row.recorded - row.delivered,
            "recording": _percentiles(row, "recording"),
            "relaying": _percentiles(row, "relaying"),
        }
    return figures


def freshness_per_day(conn: Connection, since: dt.datetime) -> list[dict[str, Any]]:
    """Per UTC day of recording (from `since`) and source with deliveries: how many, and their freshness."""
    return [
        {"day": row.day.isoformat(), "source": row.source, "count": row.delivered, **_percentiles(row, "fresh")}
        for row in conn.execute(FRESHNESS_PER_DAY_SQL, {"since": since})
    ]


def deliveries(conn: Connection) -> dict[str, dict[str, Any]]:
    """{sink: {pending, sent, failed, oldest_pending_seconds}}: the backlog and its age per sink."""
    counts = count_by_status(conn)
    oldest: dict[str, Any] = {sink: seconds for sink, seconds in conn.execute(_OLDEST_PENDING_SQL)}
    by_sink: dict[str, dict[str, Any]] = {}
    for sink in sorted({sink for sink, _ in counts}):
        by_sink[sink] = {str(status): counts.get((sink, status), 0) for status in DeliveryStatus}
        by_sink[sink]["oldest_pending_seconds"] = _seconds(oldest.get(sink)) or 0.0
    return by_sink


def days(conn: Connection) -> list[dict[str, Any]]:
    """The granule_count rows: per publication day and platform, what the server reported and what was read."""
    rows = conn.execute(
        text(
            "SELECT date, platform, available_links, fetched_links, completed, last_fetched_time "
            "FROM granule_count ORDER BY date, platform"
        )
    )
    return [
        {
            "day": row.date.isoformat(),
            "platform": row.platform,
            "available": row.available_links,
            "fetched": row.fetched_links,
            "completed": row.completed,
            "last_fetched_time": row.last_fetched_time.isoformat() if row.last_fetched_time else None,
        }
        for row in rows
    ]


LIFECYCLE_WINDOW = dt.timedelta(days=30)

# Per UTC day of deletion (CDSE's DeletionDate): granules recorded and then deleted (each announced), and deletions
# of products never recorded (remembered). Through ix_granule_deleted_at, bounded by the window.
_DELETED_SQL = text(
    """
    SELECT (deleted_at AT TIME ZONE 'UTC')::date AS day,
           count(*) FILTER (WHERE source <> 'deletion') AS announced,
           count(*) FILTER (WHERE source = 'deletion') AS remembered
    FROM granule WHERE deleted_at IS NOT NULL AND deleted_at >= :since
    GROUP BY 1 ORDER BY 1
    """
)
# Per UTC day of recording: granules that reprocess an earlier one (`supersedes`), and how many of those earlier
# ones a `replace` policy deleted. Through ix_granule_reprocessed, bounded by the window.
_REPROCESSED_SQL = text(
    """
    SELECT (g.first_seen AT TIME ZONE 'UTC')::date AS day, count(*) AS reprocessed,
           count(*) FILTER (WHERE earlier.deletion_cause = 'superseded by ' || g.id) AS replaced
    FROM granule g LEFT JOIN granule earlier ON earlier.id = g.supersedes
    WHERE g.first_seen >= :since AND g.supersedes IS NOT NULL
    GROUP BY 1 ORDER BY 1
    """
)


# Per first source and the sources that brought the same product after it (SPEC §11), over the granules recorded
# in the window (through ix_granule_first_seen). Remembered deletions are not products recorded: left out.
_SOURCES_SQL = text(
    """
    SELECT source, other_sources, count(*) AS granules FROM granule
    WHERE first_seen >= :since AND source <> 'deletion'
    GROUP BY 1, 2 ORDER BY 1, 2
    """
)


def sources(
    conn: Connection, *, now: dt.datetime | None = None, window: dt.timedelta = FRESHNESS_WINDOW
) -> list[dict[str, Any]]:
    """Over the granules recorded in the last `window`, per source that brought a product first (`source`) and the
    other sources that brought the same product after it (`also`, sorted; empty: no other): how many `granules`."""
    since = (now or dt.datetime.now(dt.UTC)) - window
    counts: dict[tuple[str, tuple[str, ...]], int] = {}
    for row in conn.execute(_SOURCES_SQL, {"since": since}):
        key = (row.source, tuple(sorted(set(row.other_sources))))
        counts[key] = counts.get(key, 0) + row.granules
    return [{"source": first, "also": list(also), "granules": n} for (first, also), n in sorted(counts.items())]


def deleted(
    conn: Connection, *, now: dt.datetime | None = None, window: dt.timedelta = LIFECYCLE_WINDOW
) -> list[dict[str, Any]]:
    """Per UTC day of deletion in the last `window`: `announced` (recorded granules deleted, each announced once)
    and `remembered` (deletions of products never recorded)."""
    since = (now or dt.datetime.now(dt.UTC)) - window
    return [
        {"day": row.day.isoformat(), "announced": row.announced, "remembered": row.remembered}
        for row in conn.execute(_DELETED_SQL, {"since": since})
    ]


def reprocessed(
    conn: Connection, *, now: dt.datetime | None = None, window: dt.timedelta = LIFECYCLE_WINDOW
) -> list[dict[str, Any]]:
    """Per UTC day of recording in the last `window`: `reprocessed` (granules superseding an earlier one) and
    `replaced` (earlier granules a `replace` policy deleted)."""
    since = (now or dt.datetime.now(dt.UTC)) - window
    return [
        {"day": row.day.isoformat(), "reprocessed": row.reprocessed, "replaced": row.replaced}
        for row in conn.execute(_REPROCESSED_SQL, {"since": since})
    ]


def status_document(conn: Connection, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """The whole status as one JSON-ready object (SPEC §10), a function per section."""
    return {
        "days": days(conn),
        "deliveries": deliveries(conn),
        "freshness": freshness(conn, now=now),
        "deleted": deleted(conn, now=now),
        "reprocessed": reprocessed(conn, now=now),
        "sources": sources(conn, now=now),
    }

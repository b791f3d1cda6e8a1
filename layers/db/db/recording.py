"""Once-only recording: a batch of granules and their deliveries in one statement, in the caller's transaction."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, text

from db.models import Source


@dataclasses.dataclass(frozen=True, slots=True)
class GranuleRecord:
    """What any source knows about a product when it first sees it (columns of `granule`)."""

    id: str
    filename: str
    download_url: str
    source: Source
    tile_id: str | None = None
    platform: str | None = None
    product_type: str | None = None
    size: int | None = None
    checksum: str | None = None
    blake3: str | None = None
    sensing_start: dt.datetime | None = None
    sensing_end: dt.datetime | None = None
    published: dt.datetime | None = None
    collection: str | None = None
    cloud_cover: float | None = None
    assets: dict[str, Any] | None = None
    item: dict[str, Any] | None = None
    online: bool | None = None  # CDSE `Online`: false means the product must be ordered before it can be downloaded


# (column, SQL type in the record set). Order is the INSERT column order.
_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "text"),
    ("filename", "text"),
    ("download_url", "text"),
    ("source", "text"),
    ("tile_id", "text"),
    ("platform", "text"),
    ("product_type", "text"),
    ("size", "bigint"),
    ("checksum", "text"),
    ("blake3", "text"),
    ("sensing_start", "timestamptz"),
    ("sensing_end", "timestamptz"),
    ("published", "timestamptz"),
    ("collection", "text"),
    ("cloud_cover", "double precision"),
    ("assets", "jsonb"),
    ("item", "jsonb"),
    ("online", "boolean"),
)
_NAMES = ", ".join(name for name, _ in _COLUMNS)
_FIELDS = tuple(name for name, _ in _COLUMNS)

# What REPROCESSED_POLICY asks of a granule whose identity matches an earlier granule's (SPEC §9).
REPROCESSED_POLICIES = ("deliver", "skip", "replace")

# The whole batch travels as one JSON parameter, so a page of 1,000 granules is one statement and one round
# trip whatever its size. Rows are sorted by id so concurrent batches lock in the same order (no deadlock);
# DISTINCT ON drops duplicates inside the batch. Outbox rows are written only for ids this statement
# inserted: a granule seen before (or being recorded by a concurrent transaction, which we wait for on the
# unique index) yields no row in `inserted` and so no delivery. A product deleted before it was ever
# recorded already has its (deleted) row: it conflicts, so its `created` is not delivered either, unless it was
# published after that deletion (or after the deletion was remembered, for one dated in the future): no genuine
# deletion precedes its product's publication, so that row was a made-up deletion, and the product is recorded
# over it (`revived`: a row of source `deletion` found by its primary key, no earlier-granule lookup).
#
# Reprocessing: each new granule looks up the latest earlier granule of its identity through
# ix_granule_identity (an index probe per row, still one statement) and records it as `supersedes`. Under
# `skip` such a granule gets no delivery; under `replace` the earlier granule is marked deleted and announced so.
_RECORD_SQL = text(
    f"""
    WITH incoming AS (
        SELECT DISTINCT ON (id) {_NAMES}
        FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r({", ".join(f"{n} {t}" for n, t in _COLUMNS)})
        ORDER BY id
    ),
    inserted AS (
        INSERT INTO granule ({_NAMES}, supersedes)
        SELECT {", ".join(f"incoming.{name}" for name in _FIELDS)}, earlier.id FROM incoming
        LEFT JOIN LATERAL (
            SELECT g.id FROM granule g
            WHERE g.identity = granule_identity(incoming.filename) AND g.id <> incoming.id
            ORDER BY g.published DESC NULLS LAST, g.first_seen DESC
            LIMIT 1
        ) AS earlier ON true
        ON CONFLICT (id) DO NOTHING
        RETURNING id, supersedes
    ),
    revived AS (
        UPDATE granule g SET ({", ".join(_FIELDS[1:])}, first_seen, deleted_at, deletion_cause) =
            ({", ".join(f"i.{name}" for name in _FIELDS[1:])}, now(), NULL, NULL)
        FROM incoming i
        WHERE g.id = i.id AND g.source = 'deletion' AND i.published > LEAST(g.deleted_at, g.first_seen)
        RETURNING g.id, g.supersedes
    ),
    recorded AS (
        SELECT id, supersedes FROM inserted UNION ALL SELECT id, supersedes FROM revived
    ),
    replaced AS (
        UPDATE granule g SET deleted_at = now(), deletion_cause = 'superseded by ' || inserted.id
        FROM inserted
        WHERE CAST(:policy AS text) = 'replace' AND g.id = inserted.supersedes AND g.deleted_at IS NULL
        RETURNING g.id
    ),
    scheduled AS (
        INSERT INTO outbox (granule_id, sink, event)
        SELECT recorded.id, sinks.sink, 'found'
        FROM recorded CROSS JOIN unnest(CAST(:sinks AS text[])) AS sinks(sink)
        WHERE recorded.supersedes IS NULL OR CAST(:policy AS text) <> 'skip'
        UNION ALL
        SELECT replaced.id, sinks.sink, 'deleted'
        FROM replaced CROSS JOIN unnest(CAST(:sinks AS text[])) AS sinks(sink)
        ON CONFLICT DO NOTHING
    )
    SELECT id FROM recorded
    """
)


def _json_default(value: object) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__} in a granule record")


def record_granules(
    conn: Connection, records: Sequence[GranuleRecord], sinks: Sequence[str], *, reprocessed_policy: str = "deliver"
) -> list[str]:
    """Insert the granules not recorded before (or recorded over a made-up deletion, see _RECORD_SQL) and one
    pending delivery per sink for each; return their ids.
    `reprocessed_policy` (REPROCESSED_POLICIES) decides what a reprocessing of an earlier granule gets.

    Runs in the caller's transaction (`with engine.begin() as conn`), so a caller can commit its own
    progress (a paging cursor, say) atomically with the batch.
    """
    if not records:
        return []
    if not sinks:
        raise ValueError("record_granules needs at least one sink name (db.UNASSIGNED_SINK when none is configured)")
    if reprocessed_policy not in REPROCESSED_POLICIES:
        raise ValueError(f"reprocessed_policy must be one of {', '.join(REPROCESSED_POLICIES)}")
    # Plain getattr, not dataclasses.asdict: asdict deep-copies every value and dominates the cost of a batch.
    rows = json.dumps([{name: getattr(record, name) for name in _FIELDS} for record in records], default=_json_default)
    result = conn.execute(_RECORD_SQL, {"rows": rows, "sinks": list(sinks), "policy": reprocessed_policy})
    return [row[0] for row in result]

"""Once-only deletions (SPEC §9): a batch of CDSE deletions in one statement, in the caller's transaction."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Sequence

from sqlalchemy import Connection, text


@dataclasses.dataclass(frozen=True, slots=True)
class DeletionRecord:
    """One product CDSE withdrew. `remember`: a product we would record (configured platform, type, allowed
    tile), so that when it was never recorded its deletion is kept, and a `created` arriving later is not
    delivered; the other fields are what that remembered row holds."""

    id: str
    filename: str
    deleted_at: dt.datetime
    deletion_cause: str | None
    download_url: str
    remember: bool = False
    tile_id: str | None = None
    platform: str | None = None
    product_type: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class DeletionOutcome:
    announced: list[str]  # recorded granules marked deleted now: one deletion delivery per sink scheduled
    remembered: list[str]  # never recorded: kept as a deleted row, never announced


_FIELDS = tuple(field.name for field in dataclasses.fields(DeletionRecord))

# A deletion marks a recorded granule once (`deleted_at IS NULL`: a second source, or the same source again,
# finds it marked and changes nothing; a concurrent one waits on the row lock and then finds it marked). A
# deletion of a product never recorded inserts its row already deleted, with no delivery: the insert and a
# concurrent `created` meet on the primary key, so whichever commits second sees the other's row, and a later
# `created` conflicts with it (record_granules) and is not delivered. `xmax = 0` tells an inserted row from an
# updated one.
_DELETE_SQL = text(
    """
    WITH incoming AS (
        SELECT DISTINCT ON (id) *
        FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(
            id text, filename text, deleted_at timestamptz, deletion_cause text, download_url text,
            remember boolean, tile_id text, platform text, product_type text)
        ORDER BY id, deleted_at
    ),
    marked_only AS (
        UPDATE granule g SET deleted_at = i.deleted_at, deletion_cause = i.deletion_cause
        FROM incoming i
        WHERE g.id = i.id AND NOT i.remember AND g.deleted_at IS NULL
        RETURNING g.id
    ),
    upserted AS (
        INSERT INTO granule (id, filename, download_url, source, tile_id, platform, product_type, deleted_at,
                             deletion_cause)
        SELECT id, filename, download_url, 'deletion', tile_id, platform, product_type, deleted_at, deletion_cause
        FROM incoming WHERE remember
        ON CONFLICT (id) DO UPDATE SET deleted_at = EXCLUDED.deleted_at, deletion_cause = EXCLUDED.deletion_cause
        WHERE granule.deleted_at IS NULL
        RETURNING id, xmax = 0 AS inserted
    ),
    announced AS (
        SELECT id FROM marked_only UNION ALL SELECT id FROM upserted WHERE NOT inserted
    ),
    scheduled AS (
        INSERT INTO outbox (granule_id, sink, event)
        SELECT announced.id, sinks.sink, 'deleted'
        FROM announced CROSS JOIN unnest(CAST(:sinks AS text[])) AS sinks(sink)
        ON CONFLICT DO NOTHING
    )
    SELECT id, false AS remembered FROM announced
    UNION ALL
    SELECT id, true FROM upserted WHERE inserted
    """
)


def record_deletions(conn: Connection, deletions: Sequence[DeletionRecord], sinks: Sequence[str]) -> DeletionOutcome:
    """Mark the recorded granules deleted (once) and schedule their deletion deliveries; remember the rest."""
    if not deletions:
        return DeletionOutcome([], [])
    if not sinks:
        raise ValueError("record_deletions needs at least one sink name (db.UNASSIGNED_SINK when none is configured)")
    rows = json.dumps(
        [{name: getattr(record, name) for name in _FIELDS} for record in deletions],
        default=lambda value: value.isoformat(),
    )
    outcome = DeletionOutcome([], [])
    for granule_id, remembered in conn.execute(_DELETE_SQL, {"rows": rows, "sinks": list(sinks)}):
        (outcome.remembered if remembered else outcome.announced).append(granule_id)
    return outcome

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
    name_known: bool = True  # False: `filename` stands in for a name the source did not give (not compared)
    tile_id: str | None = None
    platform: str | None = None
    product_type: str | None = None
    product_name: str | None = None  # the ESA name without `.SAFE` (SPEC §11): finds the granule any source recorded


# Why a deletion of a recorded granule is not believed (logs, metrics): it names another product than the one
# recorded under its Id, or it is dated before the granule was published.
NAME_MISMATCH = "name_mismatch"
BEFORE_PUBLICATION = "before_publication"


@dataclasses.dataclass(frozen=True, slots=True)
class DeletionOutcome:
    announced: list[str]  # recorded granules marked deleted now: one deletion delivery per sink scheduled
    remembered: list[str]  # never recorded: kept as a deleted row, never announced
    refused: dict[str, str] = dataclasses.field(default_factory=dict)  # recorded, not believed: id → reason


_FIELDS = tuple(field.name for field in dataclasses.fields(DeletionRecord))

# A deletion marks a recorded granule once (`deleted_at IS NULL`: a second source, or the same source again,
# finds it marked and changes nothing; a concurrent one waits on the row lock and then finds it marked), and
# only when it names the recorded product and is not dated before its publication (`refused` says why not; it
# reads the rows as they were before this statement). A deletion whose source gave no name takes the recorded
# one (`named`). A deletion of a product never recorded inserts its row already deleted, with no delivery: the
# insert and a concurrent `created` meet on the primary key, so whichever commits second sees the other's row
# (record_granules says when a `created` still gets through). `xmax = 0` tells an inserted row from an updated
# one. Names are compared without `.SAFE` (SPEC §11: a product's name is its ESA name without it), by product name
# where known: a product recorded from a STAC API (granule id `collection/item`, its `filename` the item's id) is
# found by its product name, and the deletion applies to that granule (one product, one granule).
_BELIEVED = (
    r"coalesce({g}.product_name, regexp_replace({g}.filename, '\.SAFE$', ''))"
    r" = coalesce({i}.product_name, regexp_replace({i}.filename, '\.SAFE$', ''))"
    " AND ({g}.published IS NULL OR {g}.published <= {i}.deleted_at)"
)
_DELETE_SQL = text(
    f"""
    WITH incoming AS (
        SELECT DISTINCT ON (id) *
        FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(
            id text, filename text, deleted_at timestamptz, deletion_cause text, download_url text,
            remember boolean, name_known boolean, tile_id text, platform text, product_type text,
            product_name text)
        ORDER BY id, deleted_at
    ),
    named AS (
        SELECT coalesce(g.id, i.id) AS id,
               coalesce(CASE WHEN NOT i.name_known THEN g.filename END, i.filename) AS filename,
               coalesce(i.product_name, CASE WHEN NOT i.name_known THEN g.product_name END) AS product_name,
               i.deleted_at, i.deletion_cause, i.download_url, i.remember, i.tile_id, i.platform, i.product_type
        FROM incoming i LEFT JOIN LATERAL (  -- the granule of this Id, else the one of this product name
            SELECT g.id, g.filename, g.product_name FROM granule g
            WHERE g.id = i.id OR (g.product_name = i.product_name AND NOT g.own_deliveries)
            ORDER BY g.id = i.id DESC LIMIT 1
        ) AS g ON true
    ),
    marked_only AS (
        UPDATE granule g SET deleted_at = n.deleted_at, deletion_cause = n.deletion_cause
        FROM named n
        WHERE g.id = n.id AND NOT n.remember AND g.deleted_at IS NULL AND {_BELIEVED.format(g="g", i="n")}
        RETURNING g.id
    ),
    upserted AS (
        INSERT INTO granule (id, filename, download_url, source, tile_id, platform, product_type, deleted_at,
                             deletion_cause, product_name)
        SELECT id, filename, download_url, 'deletion', tile_id, platform, product_type, deleted_at, deletion_cause,
               product_name
        FROM named WHERE remember
        ON CONFLICT (id) DO UPDATE SET deleted_at = EXCLUDED.deleted_at, deletion_cause = EXCLUDED.deletion_cause
        WHERE granule.deleted_at IS NULL AND {_BELIEVED.format(g="granule", i="EXCLUDED")}
        RETURNING id, xmax = 0 AS inserted
    ),
    refused AS (
        SELECT n.id, CASE WHEN g.published > n.deleted_at THEN '{BEFORE_PUBLICATION}' ELSE '{NAME_MISMATCH}' END
        FROM named n JOIN granule g ON g.id = n.id
        WHERE g.deleted_at IS NULL AND NOT ({_BELIEVED.format(g="g", i="n")})
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
    SELECT id, 'announced' AS outcome FROM announced
    UNION ALL
    SELECT id, 'remembered' FROM upserted WHERE inserted
    UNION ALL
    SELECT * FROM refused
    """
)

# Remembered deletions are kept DELETION_MEMORY_DAYS from when they were remembered (ix_granule_remembered).
_PRUNE_SQL = text("DELETE FROM granule WHERE source = 'deletion' AND first_seen < now() - make_interval(days => :days)")
DEFAULT_MEMORY_DAYS = 90


def record_deletions(
    conn: Connection,
    deletions: Sequence[DeletionRecord],
    sinks: Sequence[str],
    *,
    memory_days: int = DEFAULT_MEMORY_DAYS,
) -> DeletionOutcome:
    """Mark the recorded granules deleted (once) and schedule their deletion deliveries; remember the rest, and
    forget what was remembered more than `memory_days` ago."""
    if not deletions:
        return DeletionOutcome([], [])
    if not sinks:
        raise ValueError("record_deletions needs at least one sink name (db.UNASSIGNED_SINK when none is configured)")
    conn.execute(_PRUNE_SQL, {"days": memory_days})
    rows = json.dumps(
        [{name: getattr(record, name) for name in _FIELDS} for record in deletions],
        default=lambda value: value.isoformat(),
    )
    outcome = DeletionOutcome([], [])
    for granule_id, kind in conn.execute(_DELETE_SQL, {"rows": rows, "sinks": list(sinks)}):
        if kind == "announced":
            outcome.announced.append(granule_id)
        elif kind == "remembered":
            outcome.remembered.append(granule_id)
        else:
            outcome.refused[granule_id] = kind
    return outcome

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
    # The ESA product name without `.SAFE` and its identity (link_fetcher.mission): the same name from any source
    # is the same granule; a different name of the same identity is a reprocessing. None: no name is known.
    product_name: str | None = None
    identity: str | None = None
    # A STAC watch's own granule: delivered on its own even when another source brought the same product.
    own_deliveries: bool = False


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
    ("product_name", "text"),
    ("identity", "text"),
    ("own_deliveries", "boolean"),
)
_NAMES = ", ".join(name for name, _ in _COLUMNS)
_FIELDS = tuple(name for name, _ in _COLUMNS)

# What REPROCESSED_POLICY asks of a granule whose identity matches an earlier granule's (SPEC §9).
REPROCESSED_POLICIES = ("deliver", "skip", "replace")

# The whole batch travels as one JSON parameter, so a page of 1,000 granules is one statement and one round
# trip whatever its size. DISTINCT ON drops duplicates inside the batch.
#
# One product, one granule (SPEC §11): a granule is unique by id and, among those sharing deliveries, by product
# name (uq_granule_product_name). `ON CONFLICT DO NOTHING` names no index, so it stands on both: a product seen
# before by any source (or being recorded by a concurrent transaction, which it waits for on the index) is not
# inserted, and only inserted rows get deliveries. Rows are inserted in product-name order (else id), so
# concurrent batches of different sources wait on each other's names in the same order (no deadlock). A product
# deleted before it was ever recorded already has its (deleted) row: it conflicts, so its `created` is not
# delivered either, unless it was published after that deletion (or after the deletion was remembered, for one
# dated in the future): no genuine deletion precedes its product's publication, so that row was a made-up
# deletion, and the product is recorded over it (`revived`: a row of source `deletion` found by its primary key,
# no earlier-granule lookup).
#
# A product seen before from another source is remembered beside it (`other_sources`, in `merged`). A row a
# concurrent transaction committed after this statement began conflicts but is not visible to `merged`: such
# rows come back as `unseen` and record_granules remembers their source in a statement of its own.
#
# Reprocessing: each new granule looks up the latest earlier granule of its identity under another name through
# ix_granule_identity (an index probe per row, still one statement) and records it as `supersedes`. Under
# `skip` such a granule gets no delivery; under `replace` the earlier granule is marked deleted and announced so.
_RECORD_SQL = text(
    f"""
    WITH incoming AS (
        SELECT * FROM (
            SELECT DISTINCT ON (id) {_NAMES}
            FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r({", ".join(f"{n} {t}" for n, t in _COLUMNS)})
            ORDER BY id
        ) AS batch
        ORDER BY coalesce(product_name, id)
    ),
    inserted AS (
        INSERT INTO granule ({_NAMES}, supersedes)
        SELECT {", ".join(f"incoming.{name}" for name in _FIELDS)}, earlier.id FROM incoming
        LEFT JOIN LATERAL (
            SELECT g.id FROM granule g
            WHERE g.identity = incoming.identity AND g.product_name <> incoming.product_name
              AND g.own_deliveries = incoming.own_deliveries
            ORDER BY g.published DESC NULLS LAST, g.first_seen DESC
            LIMIT 1
        ) AS earlier ON true
        ON CONFLICT DO NOTHING
        RETURNING id, supersedes
    ),
    revived AS (
        UPDATE granule g SET ({", ".join(_FIELDS[1:])}, first_seen, deleted_at, deletion_cause) =
            ({", ".join(f"i.{name}" for name in _FIELDS[1:])}, now(), NULL, NULL)
        FROM incoming i
        WHERE g.id = i.id AND g.source = 'deletion' AND i.published > LEAST(g.deleted_at, g.first_seen)
          AND NOT EXISTS (  -- its name already another granule's: that one stands for the product
              SELECT FROM granule o
              WHERE o.product_name = i.product_name AND o.id <> g.id AND NOT o.own_deliveries
                AND NOT i.own_deliveries)
        RETURNING g.id, g.supersedes
    ),
    recorded AS (
        SELECT id, supersedes FROM inserted UNION ALL SELECT id, supersedes FROM revived
    ),
    known AS (
        SELECT id, source, product_name, own_deliveries FROM incoming
        WHERE id NOT IN (SELECT id FROM recorded)
    ),
    merged AS (
        UPDATE granule g SET other_sources = array_append(g.other_sources, known.source)
        FROM known
        WHERE (g.id = known.id OR (g.product_name = known.product_name AND NOT g.own_deliveries
                                   AND NOT known.own_deliveries))
          AND g.source <> known.source AND known.source <> ALL(g.other_sources)
          AND (CAST(:policy AS text) <> 'replace'  -- then `replaced` writes the superseded rows
               OR g.id NOT IN (SELECT supersedes FROM inserted WHERE supersedes IS NOT NULL))
        RETURNING g.id
    ),
    unseen AS (
        SELECT known.id FROM known
        WHERE NOT EXISTS (
            SELECT FROM granule g
            WHERE g.id = known.id OR (g.product_name = known.product_name AND NOT g.own_deliveries
                                      AND NOT known.own_deliveries)
        )
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
    SELECT id, true FROM recorded
    UNION ALL
    SELECT id, false FROM unseen
    """
)

# The source of a product a concurrent transaction recorded first (see `unseen` above), remembered now that
# this statement's snapshot sees it.
_REMEMBER_SQL = text(
    """
    UPDATE granule g SET other_sources = array_append(g.other_sources, r.source)
    FROM jsonb_to_recordset(CAST(:rows AS jsonb)) AS r(id text, source text, product_name text, own_deliveries boolean)
    WHERE (g.id = r.id OR (g.product_name = r.product_name AND NOT g.own_deliveries AND NOT r.own_deliveries))
      AND g.source <> r.source AND r.source <> ALL(g.other_sources)
    """
)


def _json_default(value: object) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__} in a granule record")


def record_granules(
    conn: Connection, records: Sequence[GranuleRecord], sinks: Sequence[str], *, reprocessed_policy: str = "deliver"
) -> list[str]:
    """Insert the granules not recorded before (by id, or by product name from any source; or recorded over a
    made-up deletion, see _RECORD_SQL) and one pending delivery per sink for each; return their ids. A product
    recorded before from another source gets that source in its `other_sources`. `reprocessed_policy`
    (REPROCESSED_POLICIES) decides what a reprocessing of an earlier granule gets.

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
    inserted: list[str] = []
    unseen: set[str] = set()
    for granule_id, is_new in result:
        if is_new:
            inserted.append(granule_id)
        else:
            unseen.add(granule_id)
    if unseen:
        _remember_sources(conn, [record for record in records if record.id in unseen])
    return inserted


def _remember_sources(conn: Connection, records: Sequence[GranuleRecord]) -> None:
    fields = ("id", "source", "product_name", "own_deliveries")
    rows = json.dumps([{name: getattr(record, name) for name in fields} for record in records])
    conn.execute(_REMEMBER_SQL, {"rows": rows})

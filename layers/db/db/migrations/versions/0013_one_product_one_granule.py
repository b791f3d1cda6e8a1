"""one product, one granule (SPEC §11): the product name, the other sources, one granule per name; sensing in order

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05

- `product_name`: the ESA product name without `.SAFE`, from any source (link_fetcher.mission.product_name_of);
  NULL when a source gives none (an Earth Search item without `s2:product_uri`). Unique among the granules that
  share their deliveries (`own_deliveries` false): the same name from a second source is the same granule.
- `other_sources`: the sources that brought the product after the first (`source`).
- `own_deliveries`: a STAC granule of a watch that asked for its own deliveries (`own_deliveries = true` in
  watches.toml); it is outside the uniqueness of names, and a reprocessing only of granules of its kind.
- `identity` is now written by the recorder from the product name (link_fetcher.mission), no longer computed by
  the database from `filename`: an Earth Search item's identity comes from its `s2:product_uri`, not from its id.
  `granule_identity()` is dropped; nothing calls it.
- CHECK sensing_start <= sensing_end (SPEC §11: start after end is malformed).

Existing rows. Product names are filled in as the recorder would (the grammar below is link_fetcher.mission's,
and a test holds the two together). Granules that share a name (recorded twice before this revision, e.g. from
a CDSE STAC watch and the OData poll) are merged into the one recorded first (a remembered deletion only when no
granule of the product was recorded): the others' sources go into its
`other_sources`, what it lacks (checksums, size, STAC item and assets, download state) is taken from them, a
false "superseded by" between copies is undone (its pending `deleted` deliveries are dropped), references to
the copies point to the kept granule, and the copies are deleted with their pending deliveries (what was already
sent stays sent). Rows with sensing start after end: a STAC row takes both from its item's `start_datetime` and
`end_datetime` when they are given; any row still out of order loses its sensing end (unknown rather than wrong).
The range checks of 0005 are lifted for these updates and put back NOT VALID, as 0005 left them.
"""

from alembic import op

from db.models import TIMESTAMP_RANGE_CHECKS

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

NAME_GRAMMAR = r"^S2[A-D]_MSIL(1C|2A)_[0-9]{8}T[0-9]{6}_N[0-9]{4}_R[0-9]{3}_T[0-9]{2}[A-Z]{3}_[0-9]{8}T[0-9]{6}$"
SOURCES = ("search", "subscription", "stac", "deletion")
RANGE_CHECKS = {f"ck_granule_{name}": condition for name, condition in TIMESTAMP_RANGE_CHECKS.items()}
_RFC3339 = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})$"

_PRODUCT_NAME_OF = rf"""
CREATE OR REPLACE FUNCTION pg_temp.product_name_of(value text) RETURNS text LANGUAGE sql IMMUTABLE
RETURN CASE WHEN regexp_replace(value, '\.SAFE$', '') ~ '{NAME_GRAMMAR}' THEN regexp_replace(value, '\.SAFE$', '') END
"""
_TIMESTAMP_OF = rf"""
CREATE OR REPLACE FUNCTION pg_temp.timestamp_of(value text) RETURNS timestamptz LANGUAGE sql IMMUTABLE
RETURN CASE WHEN value ~ '{_RFC3339}' THEN CAST(value AS timestamptz) END
"""

# Every copy of a name but the first recorded, and the granule it folds into (a recorded product before a
# remembered deletion of it: the granule consumers were told of stays).
_COPIES = """
CREATE TEMPORARY TABLE copies AS
SELECT id, kept FROM (
    SELECT id, first_value(id) OVER named AS kept, row_number() OVER named AS position
    FROM granule WHERE product_name IS NOT NULL
    WINDOW named AS (PARTITION BY product_name ORDER BY source = 'deletion', first_seen, id)
) AS named WHERE position > 1
"""
_UNDO_FALSE_SUPERSESSIONS = [
    """
    CREATE TEMPORARY TABLE undone AS
    SELECT DISTINCT copies.kept AS id FROM copies JOIN granule g ON g.id = copies.kept
    WHERE g.deletion_cause = 'superseded by ' || copies.id
    """,
    "UPDATE granule SET deleted_at = NULL, deletion_cause = NULL WHERE id IN (SELECT id FROM undone)",
    "DELETE FROM outbox WHERE event = 'deleted' AND status <> 'sent' AND granule_id IN (SELECT id FROM undone)",
]
_FOLD = """
WITH folded AS (
    SELECT copies.kept,
        array_agg(DISTINCT c.source) AS sources,
        (array_agg(c.checksum) FILTER (WHERE c.checksum IS NOT NULL))[1] AS checksum,
        (array_agg(c.blake3) FILTER (WHERE c.blake3 IS NOT NULL))[1] AS blake3,
        (array_agg(c.size) FILTER (WHERE c.size IS NOT NULL))[1] AS size,
        (array_agg(c.online) FILTER (WHERE c.online IS NOT NULL))[1] AS online,
        (array_agg(c.collection) FILTER (WHERE c.collection IS NOT NULL))[1] AS collection,
        (array_agg(c.cloud_cover) FILTER (WHERE c.cloud_cover IS NOT NULL))[1] AS cloud_cover,
        (array_agg(c.assets) FILTER (WHERE c.assets IS NOT NULL))[1] AS assets,
        (array_agg(c.item) FILTER (WHERE c.item IS NOT NULL))[1] AS item,
        (array_agg(c.id ORDER BY c.downloaded_at) FILTER (WHERE c.downloaded))[1] AS downloaded_copy
    FROM copies JOIN granule c ON c.id = copies.id
    GROUP BY copies.kept
)
UPDATE granule g SET
    other_sources = ARRAY(SELECT DISTINCT s FROM unnest(g.other_sources || folded.sources) AS s
                          WHERE s <> g.source ORDER BY s),
    checksum = coalesce(g.checksum, folded.checksum),
    blake3 = coalesce(g.blake3, folded.blake3),
    size = coalesce(g.size, folded.size),
    online = coalesce(g.online, folded.online),
    collection = coalesce(g.collection, folded.collection),
    cloud_cover = coalesce(g.cloud_cover, folded.cloud_cover),
    assets = coalesce(g.assets, folded.assets),
    item = coalesce(g.item, folded.item)
FROM folded WHERE g.id = folded.kept
"""
# A copy's download stands for the product when the kept granule has none (reconcile finds it by object_key).
_TAKE_DOWNLOADS = """
UPDATE granule g SET downloaded = true, downloaded_at = c.downloaded_at, object_key = c.object_key,
    download_retries = c.download_retries, download_error = NULL
FROM (SELECT DISTINCT ON (copies.kept) copies.kept, d.* FROM copies JOIN granule d ON d.id = copies.id
      WHERE d.downloaded ORDER BY copies.kept, d.downloaded_at) AS c
WHERE g.id = c.kept AND NOT g.downloaded
"""
_REPOINT = [
    "UPDATE granule g SET supersedes = copies.kept FROM copies WHERE g.supersedes = copies.id",
    "UPDATE granule SET supersedes = NULL WHERE supersedes = id",
    """
    UPDATE granule g SET deletion_cause = 'superseded by ' || copies.kept
    FROM copies WHERE g.deletion_cause = 'superseded by ' || copies.id AND g.id <> copies.kept
    """,
    "DELETE FROM granule WHERE id IN (SELECT id FROM copies)",
]
_ORDER_SENSING = [
    """
    UPDATE granule SET
        sensing_start = pg_temp.timestamp_of(item -> 'properties' ->> 'start_datetime'),
        sensing_end = pg_temp.timestamp_of(item -> 'properties' ->> 'end_datetime')
    WHERE sensing_start > sensing_end AND source = 'stac'
      AND pg_temp.timestamp_of(item -> 'properties' ->> 'start_datetime')
          <= pg_temp.timestamp_of(item -> 'properties' ->> 'end_datetime')
    """,
    "UPDATE granule SET sensing_end = NULL WHERE sensing_start > sensing_end",
]

IDENTITY_FUNCTION_0011 = r"""
CREATE FUNCTION granule_identity(name text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE RETURNS NULL ON NULL INPUT
RETURN CASE WHEN name ~ '^S2[A-D]_MSIL[12][AC]_[0-9]{8}T[0-9]{6}_N[0-9]{4}_R[0-9]{3}_T[0-9]{2}[A-Z]{3}_'
    THEN left(name, 26) || substr(name, 33, 12) END
"""


def _lift_range_checks() -> None:
    for name in RANGE_CHECKS:
        op.execute(f"ALTER TABLE granule DROP CONSTRAINT {name}")


def _restore_range_checks() -> None:
    for name, condition in RANGE_CHECKS.items():
        op.execute(f"ALTER TABLE granule ADD CONSTRAINT {name} CHECK ({condition}) NOT VALID")


def upgrade() -> None:
    op.execute("ALTER TABLE granule ADD COLUMN product_name text")
    op.execute("ALTER TABLE granule ADD COLUMN other_sources text[] NOT NULL DEFAULT '{}'")
    op.execute("ALTER TABLE granule ADD COLUMN own_deliveries boolean NOT NULL DEFAULT false")
    op.execute("COMMENT ON COLUMN granule.product_name IS 'ESA product name without .SAFE, from any source'")
    op.execute("COMMENT ON COLUMN granule.other_sources IS 'sources that brought the product after the first'")
    op.execute("COMMENT ON COLUMN granule.own_deliveries IS 'a STAC watch''s own granule, outside name uniqueness'")
    op.execute(_PRODUCT_NAME_OF)
    op.execute(_TIMESTAMP_OF)
    _lift_range_checks()
    op.execute(
        """
        UPDATE granule SET product_name = coalesce(
            CASE WHEN source = 'stac' THEN pg_temp.product_name_of(item -> 'properties' ->> 's2:product_uri') END,
            pg_temp.product_name_of(filename))
        WHERE coalesce(
            CASE WHEN source = 'stac' THEN pg_temp.product_name_of(item -> 'properties' ->> 's2:product_uri') END,
            pg_temp.product_name_of(filename)) IS NOT NULL
        """
    )
    op.execute(_COPIES)
    for statement in _UNDO_FALSE_SUPERSESSIONS:
        op.execute(statement)
    op.execute(_FOLD)
    op.execute(_TAKE_DOWNLOADS)
    for statement in _REPOINT:
        op.execute(statement)

    # The identity from the product name, written by the recorder from now on.
    op.execute("ALTER TABLE granule ALTER COLUMN identity DROP EXPRESSION")
    op.execute(
        """
        UPDATE granule SET identity = left(product_name, 26) || substr(product_name, 33, 12)
        WHERE identity IS DISTINCT FROM left(product_name, 26) || substr(product_name, 33, 12)
        """
    )
    op.execute("DROP FUNCTION granule_identity(text)")

    for statement in _ORDER_SENSING:
        op.execute(statement)
    op.execute("DROP TABLE copies, undone")
    op.execute("DROP FUNCTION pg_temp.product_name_of(text), pg_temp.timestamp_of(text)")
    _restore_range_checks()
    op.execute("ALTER TABLE granule ADD CONSTRAINT ck_granule_sensing_ordered CHECK (sensing_start <= sensing_end)")
    known = ", ".join(f"'{source}'" for source in SOURCES)
    op.execute(
        f"ALTER TABLE granule ADD CONSTRAINT ck_granule_other_sources_known CHECK (other_sources <@ ARRAY[{known}])"
    )
    op.execute(
        "CREATE UNIQUE INDEX uq_granule_product_name ON granule (product_name) "
        "WHERE product_name IS NOT NULL AND NOT own_deliveries"
    )


def downgrade() -> None:
    op.execute("DROP INDEX uq_granule_product_name")
    op.execute("ALTER TABLE granule DROP CONSTRAINT ck_granule_other_sources_known")
    op.execute("ALTER TABLE granule DROP CONSTRAINT ck_granule_sensing_ordered")
    op.execute(IDENTITY_FUNCTION_0011)
    op.execute("DROP INDEX ix_granule_identity")
    op.execute("ALTER TABLE granule DROP COLUMN identity")
    op.execute("ALTER TABLE granule ADD COLUMN identity text GENERATED ALWAYS AS (granule_identity(filename)) STORED")
    op.execute("CREATE INDEX ix_granule_identity ON granule (identity) WHERE identity IS NOT NULL")
    for column in ("own_deliveries", "other_sources", "product_name"):
        op.execute(f"ALTER TABLE granule DROP COLUMN {column}")

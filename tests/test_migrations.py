from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from db import get_engine, metadata
from db.migrate import current_revision, downgrade_base, head_revision, upgrade_head

EXPECTED_TABLES = {"granule", "granule_count", "deletion_count", "status", "outbox", "alembic_version"}


@pytest.fixture
def scratch_url(server_url: str, unique_name: str):
    """An empty database of its own: these tests migrate it up and down."""
    name = unique_name.replace("-", "_")
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    get_engine(make_url(server_url).set(database=name).render_as_string(hide_password=False)).dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_upgrade_creates_tables_and_is_idempotent(scratch_url: str) -> None:
    engine = get_engine(scratch_url)
    upgrade_head(engine)
    assert set(inspect(engine).get_table_names()) >= EXPECTED_TABLES
    head = current_revision(engine)
    upgrade_head(engine)
    assert current_revision(engine) == head == head_revision()


def test_downgrade_base_then_upgrade_head(scratch_url: str) -> None:
    engine = get_engine(scratch_url)
    upgrade_head(engine)
    downgrade_base(engine)
    assert set(inspect(engine).get_table_names()) == {"alembic_version"}
    assert current_revision(engine) is None
    upgrade_head(engine)
    assert set(inspect(engine).get_table_names()) >= EXPECTED_TABLES


def test_models_and_migrations_agree(database_url: str) -> None:
    with get_engine(database_url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
    assert diff == []


def test_cli_migrate_twice_changes_nothing(scratch_url: str) -> None:
    env_run = lambda: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "link_fetcher", "migrate"],
        # PYTHONPATH kept: a worktree runs its own code, not the installed package.
        env={"DATABASE_URL": scratch_url, "PATH": "/usr/bin:/bin", "PYTHONPATH": os.environ.get("PYTHONPATH", "")},
        capture_output=True,
        text=True,
        check=False,
    )
    first, second = env_run(), env_run()
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert head_revision() in second.stdout
    assert set(inspect(get_engine(scratch_url)).get_table_names()) >= EXPECTED_TABLES


def test_0006_stores_cdse_ids_lower_case_once_and_size_0_as_unknown(scratch_url: str) -> None:
    from alembic import command

    from db.migrate import alembic_config

    engine = get_engine(scratch_url)
    command.upgrade(alembic_config(engine), "0005")
    upper, twin, alone = "AAAAAAAA-0000-0000-0000-000000000001", "BBBBBBBB-0000-0000-0000-000000000002", "cc-1"
    rows = [
        (upper, "search", 0),  # only spelling: renamed, with its delivery
        (twin, "subscription", 5),  # a lower-case twin exists: this row goes, the twin stays
        (twin.lower(), "search", 5),
        ("sentinel-2-l2a/S2A_ITEM", "stac", None),  # STAC ids are case-sensitive: untouched
        (alone, "search", 7),
    ]
    with engine.begin() as conn:
        for granule_id, source, size in rows:
            conn.execute(
                text(
                    "INSERT INTO granule (id, filename, download_url, source, size) "
                    "VALUES (:id, 'n', 'https://x', :source, :size)"
                ),
                {"id": granule_id, "source": source, "size": size},
            )
            conn.execute(text("INSERT INTO outbox (granule_id, sink) VALUES (:id, 'sqs')"), {"id": granule_id})
    upgrade_head(engine)
    with engine.connect() as conn:
        granules = dict(conn.execute(text("SELECT id, size FROM granule")).all())
        deliveries = sorted(conn.execute(text("SELECT granule_id FROM outbox")).scalars())
    assert granules == {upper.lower(): None, twin.lower(): 5, "sentinel-2-l2a/S2A_ITEM": None, alone: 7}
    assert deliveries == sorted(granules)
    with engine.begin() as conn, pytest.raises(Exception, match="foreign key"):
        conn.execute(text("INSERT INTO outbox (granule_id, sink) VALUES ('nowhere', 'sqs')"))


def test_0012_repairs_deletion_dates_no_reader_can_read(scratch_url: str) -> None:
    """Rows a year-10000 DeletionDate left (issue 26): a remembered one is forgotten, an unannounced deletion
    undone (its pending delivery dropped), an announced one dated when it was recorded; then the CHECK holds
    and `status` reads everything."""
    from alembic import command

    from db.migrate import alembic_config
    from db.status import status_document

    engine = get_engine(scratch_url)
    command.upgrade(alembic_config(engine), "0011")
    year_10000 = "10000-01-01 00:00:00+00"
    with engine.begin() as conn:
        for granule_id, source, deleted_at in [
            ("remembered", "deletion", year_10000),
            ("unannounced", "subscription", year_10000),
            ("announced", "subscription", year_10000),
            ("fine", "search", "2024-09-14 00:00:00+00"),
        ]:
            conn.execute(
                text(
                    "INSERT INTO granule (id, filename, download_url, source, deleted_at, deletion_cause) "
                    "VALUES (:id, 'n', 'https://x', :source, CAST(:deleted_at AS timestamptz), 'forged')"
                ),
                {"id": granule_id, "source": source, "deleted_at": deleted_at},
            )
        conn.execute(
            text(
                "INSERT INTO outbox (granule_id, sink, event, status, created_at) VALUES "
                "('unannounced', 'sqs', 'found', 'sent', now()), ('unannounced', 'sqs', 'deleted', 'failed', now()), "
                "('announced', 'sqs', 'deleted', 'sent', '2026-01-02 03:04:05+00'), "
                "('announced', 'redis', 'deleted', 'pending', '2026-01-02 03:04:06+00')"
            )
        )
    upgrade_head(engine)
    with engine.connect() as conn:
        granules = {row.id: (row.deleted_at, row.deletion_cause) for row in conn.execute(text("SELECT * FROM granule"))}
        deliveries = sorted(tuple(row) for row in conn.execute(text("SELECT granule_id, sink, event FROM outbox")))
        document = status_document(conn)
    utc = dt.UTC
    assert granules == {
        "unannounced": (None, None),
        "announced": (dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=utc), "forged"),
        "fine": (dt.datetime(2024, 9, 14, tzinfo=utc), "forged"),
    }
    assert deliveries == [
        ("announced", "redis", "deleted"),
        ("announced", "sqs", "deleted"),
        ("unannounced", "sqs", "found"),
    ]
    assert document["deliveries"]
    with pytest.raises(Exception, match="ck_granule_deleted_at_in_range"), engine.begin() as conn:
        conn.execute(text(f"UPDATE granule SET deleted_at = '{year_10000}' WHERE id = 'fine'"))


def test_0013_merges_the_copies_of_a_product_and_orders_sensing(scratch_url: str) -> None:
    """What 0012's schema let in (issue 24): one product recorded from a CDSE STAC watch and again from the OData
    poll, the second taken for a reprocessing that `replace` deleted the first for; a STAC row sensed after its
    end. After 0013: one granule per name (the first recorded, the other source remembered, the false deletion
    and its unsent announcement undone), ordered sensing, and the index that keeps names unique."""
    from alembic import command

    from db.migrate import alembic_config

    engine = get_engine(scratch_url)
    command.upgrade(alembic_config(engine), "0012")
    name = "S2A_MSIL2A_20240912T112541_N0511_R137_T28PHQ_20240912T133420"
    item = {
        "id": name,
        "properties": {"start_datetime": "2024-09-12T11:25:41Z", "end_datetime": "2024-09-12T11:26:00Z"},
    }
    rows = [
        # id, filename, source, first_seen, sensing start, sensing end, supersedes, deletion_cause, item, checksum
        ("sentinel-2-l2a/" + name, name, "stac", "2024-09-12 14:00+00", "2024-09-12 11:30+00", "2024-09-12 11:26+00",
         None, "superseded by u-1", item, None),
        ("u-1", name + ".SAFE", "search", "2024-09-12 15:00+00", None, None, "sentinel-2-l2a/" + name, None, None,
         "700a3f2014ab3670408b94e4310924dd"),
        ("u-2", "S2B_MSIL1C_20240912T112541_N0511_R137_T28PHQ_20240912T133420.SAFE", "search", "2024-09-12 16:00+00",
         "2024-09-12 11:30+00", "2024-09-12 11:00+00", None, None, None, None),
    ]  # fmt: skip
    with engine.begin() as conn:
        for granule_id, filename, source, seen, start, end, supersedes, cause, stac, checksum in rows:
            conn.execute(
                text(
                    "INSERT INTO granule (id, filename, download_url, source, first_seen, sensing_start, sensing_end, "
                    "supersedes, deleted_at, deletion_cause, item, checksum) VALUES (:id, :filename, 'https://x', "
                    ":source, CAST(:seen AS timestamptz), CAST(:start AS timestamptz), CAST(:end AS timestamptz), "
                    ":supersedes, CASE WHEN CAST(:cause AS text) IS NOT NULL THEN now() END, :cause, "
                    "CAST(:item AS jsonb), :checksum)"
                ),
                {"id": granule_id, "filename": filename, "source": source, "seen": seen, "start": start, "end": end,
                 "supersedes": supersedes, "cause": cause, "item": json.dumps(stac) if stac else None,
                 "checksum": checksum},
            )  # fmt: skip
        conn.execute(
            text(
                "INSERT INTO outbox (granule_id, sink, event, status) VALUES "
                "(:stac, 'sqs', 'found', 'sent'), ('u-1', 'sqs', 'found', 'pending'), (:stac, 'sqs', 'deleted', "
                "'pending'), ('u-2', 'sqs', 'found', 'sent')"
            ),
            {"stac": "sentinel-2-l2a/" + name},
        )
    upgrade_head(engine)
    with engine.connect() as conn:
        granules = {row.id: row for row in conn.execute(text("SELECT * FROM granule"))}
        deliveries = sorted(tuple(row) for row in conn.execute(text("SELECT granule_id, event FROM outbox")))
    kept = granules["sentinel-2-l2a/" + name]
    assert set(granules) == {kept.id, "u-2"}
    assert (kept.product_name, kept.source, kept.other_sources) == (name, "stac", ["search"])
    assert kept.deleted_at is None and kept.deletion_cause is None and kept.supersedes is None
    assert kept.checksum == "700a3f2014ab3670408b94e4310924dd"  # what the copy knew
    assert kept.identity == "S2A_MSIL2A_20240912T112541_R137_T28PHQ"
    assert (kept.sensing_start, kept.sensing_end) == (
        dt.datetime(2024, 9, 12, 11, 25, 41, tzinfo=dt.UTC),
        dt.datetime(2024, 9, 12, 11, 26, tzinfo=dt.UTC),
    )  # from the item's range
    assert granules["u-2"].sensing_end is None  # no range to take: the end is unknown rather than wrong
    assert deliveries == [(kept.id, "found"), ("u-2", "found")]
    with engine.begin() as conn, pytest.raises(Exception, match="uq_granule_product_name"):
        conn.execute(
            text("INSERT INTO granule (id, filename, download_url, source, product_name) VALUES ('u-3', 'n', 'x', "
                 "'search', :name)"),
            {"name": name},
        )  # fmt: skip
    with engine.begin() as conn, pytest.raises(Exception, match="ck_granule_sensing_ordered"):
        conn.execute(text("UPDATE granule SET sensing_end = sensing_start - interval '1 s' WHERE id = 'u-2'"))

from __future__ import annotations

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

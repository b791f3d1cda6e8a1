"""One SQLAlchemy engine per process and database URL, from DATABASE_URL or a Secrets Manager secret."""

from __future__ import annotations

import json
import os
import threading
from urllib.parse import quote

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url

_engines: dict[str, Engine] = {}
_lock = threading.Lock()
_secret_urls: dict[str, str] = {}


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


def url_from_secret(secret_arn: str) -> str:
    """Build a URL from an RDS-style secret ({host, port, username, password, dbname}); read once per process."""
    if secret_arn not in _secret_urls:
        import boto3  # imported here: only AWS deployments read the secret

        try:
            secret = json.loads(boto3.client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"])
            _secret_urls[secret_arn] = (
                f"postgresql+psycopg://{quote(secret['username'], safe='')}:{quote(secret['password'], safe='')}"
                f"@{secret['host']}:{secret.get('port', 5432)}/{secret.get('dbname', 'postgres')}"
            )
        except Exception as exc:
            raise DatabaseUnavailable(f"cannot read database secret {secret_arn}: {type(exc).__name__}") from exc
    return _secret_urls[secret_arn]


def database_url_from_env() -> str | None:
    """DATABASE_URL, else the URL built from the secret named by DATABASE_SECRET_ARN, else None."""
    if url := os.environ.get("DATABASE_URL"):
        return normalise_url(url)
    if arn := os.environ.get("DATABASE_SECRET_ARN"):
        return url_from_secret(arn)
    return None


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

"""Secrets Manager, read the same way for every secret: the database (DATABASE_SECRET_ARN), the CDSE account
(CDSE_SECRET_ARN) and the push credentials (SUBSCRIPTION_SECRET_ARN).

Cache policy: each secret is fetched at most once per SECRET_MAX_AGE_SECONDS per process (powertools' parameter
cache), never on every request or invocation; a rotated secret takes effect within that time, without a restart."""

from __future__ import annotations

from typing import Any

# Imported with the module, not on first use: every deployed function reads its database secret, and Lambda gives
# INIT its full CPU, so this belongs to the cold start rather than to the first request.
from aws_lambda_powertools.utilities import parameters

SECRET_MAX_AGE_SECONDS = 300


class SecretUnavailable(RuntimeError):
    """A secret cannot be read, is not JSON or lacks a field. The message names the secret, never a value."""


def read_secret(arn: str, *, what: str, fields: tuple[str, ...]) -> dict[str, Any]:
    """The JSON secret named by `arn`, which must hold `fields`; `what` names it in errors."""
    try:
        secret = parameters.get_secret(arn, transform="json", max_age=SECRET_MAX_AGE_SECONDS)
        if not isinstance(secret, dict):
            raise TypeError("not a JSON object")
        missing = [field for field in fields if field not in secret]
        if missing:
            raise KeyError(", ".join(missing))
    except Exception as exc:  # any failure means "not readable now"; say which secret, never its content
        raise SecretUnavailable(f"cannot read the {what} secret {arn}: {type(exc).__name__}") from exc
    return secret


def clear_cache() -> None:
    """Forget the secrets read so far (tests; a process that must see a rotation at once)."""
    parameters.clear_caches()  # type: ignore[no-untyped-call]  # powertools leaves it unannotated

"""One kind of credentials for every account link-fetcher signs in with (the database, the CDSE account, the push
endpoint's): a Secrets Manager secret named by `<PREFIX>_SECRET_ARN`, else `<PREFIX>_USERNAME` and
`<PREFIX>_PASSWORD` given directly (the database: its RDS secret only); one resolver reads them and one error says
what is wrong, never a password.

Cache policy: each secret is fetched at most once per SECRET_MAX_AGE_SECONDS per process (powertools' parameter
cache), never on every request or invocation; a rotated secret takes effect within that time, without a restart."""

from __future__ import annotations

import dataclasses
from typing import Any, Self

# Imported with the module, not on first use: every deployed function reads its database secret, and Lambda gives
# INIT its full CPU, so this belongs to the cold start rather than to the first request. (link_fetcher.settings
# imports this module only when credentials are asked for, so the CLI's other commands do not load it.)
from aws_lambda_powertools.utilities import parameters
from pydantic import SecretStr

SECRET_MAX_AGE_SECONDS = 300


class CredentialsUnavailable(RuntimeError):
    """Credentials that are not configured (`not_set`: a configuration to fix, exit 2 in the CLI), or a secret that
    cannot be read, is not JSON or lacks a field. The message names the variables or the secret, never a value."""

    def __init__(self, message: str, *, not_set: bool = False) -> None:
        super().__init__(message)
        self.not_set = not_set


@dataclasses.dataclass(frozen=True, slots=True)
class Credentials:
    username: str
    password: str = dataclasses.field(repr=False)


@dataclasses.dataclass(frozen=True, slots=True)
class CredentialSource:
    """Where one account's credentials are. `what` names the account in messages; `prefix` names its variables."""

    what: str
    prefix: str
    secret_arn: str | None = None
    username: str | None = None
    password: SecretStr | None = None

    @property
    def configured(self) -> bool:
        return bool(self.secret_arn or (self.username and self.password))

    def required(self) -> Self:
        """This source; CredentialsUnavailable (saying what to set) when it names no credentials."""
        if not self.configured:
            p = self.prefix
            message = f"set {p}_USERNAME and {p}_PASSWORD (or {p}_SECRET_ARN) for the {self.what}"
            raise CredentialsUnavailable(message, not_set=True)
        return self

    def fields(self, *also: str) -> dict[str, Any]:
        """The credentials as a secret holds them: username, password and the fields `also` (an RDS secret's
        host, port, dbname), which only a secret can give."""
        if self.secret_arn:
            return read_secret(self.secret_arn, what=self.what, fields=("username", "password", *also))
        if also:
            message = f"set {self.prefix}_SECRET_ARN: the {self.what} needs {', '.join(also)}"
            raise CredentialsUnavailable(message, not_set=True)
        self.required()
        assert self.username is not None and self.password is not None  # required() checked both
        return {"username": self.username, "password": self.password.get_secret_value()}

    def resolve(self) -> Credentials:
        """The username and password (a secret is re-read as the cache policy above says)."""
        found = self.fields()
        return Credentials(str(found["username"]), str(found["password"]))


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
        raise CredentialsUnavailable(f"cannot read the {what} secret {arn}: {type(exc).__name__}") from exc
    return secret


def clear_cache() -> None:
    """Forget the secrets read so far (tests; a process that must see a rotation at once)."""
    parameters.clear_caches()  # type: ignore[no-untyped-call]  # powertools leaves it unannotated

"""One resolver for every account (database, CDSE, push endpoint): a Secrets Manager secret, else a username and
password; one error, CredentialsUnavailable, naming the variables or the secret and never a password."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws
from pydantic import SecretStr

from link_fetcher.cdse.identity import token_provider
from link_fetcher.credentials import Credentials, CredentialSource, CredentialsUnavailable
from link_fetcher.database import configured_url
from link_fetcher.push.auth import credentials_source
from link_fetcher.settings import read_settings

pytestmark = pytest.mark.unit
MISSING_ARN = "arn:aws:secretsmanager:us-east-1:1:secret:missing"


def test_a_username_and_password_given_directly() -> None:
    settings = read_settings(None, cdse_username="u", cdse_password="p")
    assert settings.cdse.credentials.resolve() == Credentials("u", "p")
    assert "p" not in repr(Credentials("u", "p"))
    assert not read_settings(None, cdse_username="u").cdse.credentials.configured
    assert token_provider(read_settings(None)) is None  # no CDSE account: enough for STAC items


def test_a_secret_wins_over_a_username_and_password(aws_env) -> None:
    with mock_aws():
        arn = boto3.client("secretsmanager").create_secret(
            Name="cdse-account", SecretString=json.dumps({"username": "alice", "password": "pw"})
        )["ARN"]
        settings = read_settings(None, cdse_secret_arn=arn, cdse_username="ignored", cdse_password="x")
        assert settings.cdse.credentials.resolve() == Credentials("alice", "pw")


@pytest.mark.parametrize(
    ("settings", "what"),
    [
        ({"cdse_secret_arn": MISSING_ARN}, "CDSE account"),
        ({"subscription_secret_arn": MISSING_ARN}, "push endpoint"),
        ({"database_secret_arn": MISSING_ARN, "database_url": None}, "database"),
    ],
)
def test_an_unreadable_secret_is_the_same_error_for_every_account(aws_env, settings, what) -> None:
    configured = read_settings(None, **settings)
    with (
        mock_aws(),
        pytest.raises(CredentialsUnavailable, match=f"^cannot read the {what} secret {MISSING_ARN}: ") as raised,
    ):
        if what == "CDSE account":
            token_provider(configured)
        elif what == "push endpoint":
            credentials_source(configured)()
        else:
            configured_url(configured)
    assert not raised.value.not_set  # a failed run (exit 1), not a configuration to fix


def test_credentials_not_configured_say_what_to_set_and_never_the_password() -> None:
    source = CredentialSource("push endpoint", "SUBSCRIPTION", username="u")
    with pytest.raises(CredentialsUnavailable) as raised:
        source.resolve()
    assert str(raised.value) == (
        "set SUBSCRIPTION_USERNAME and SUBSCRIPTION_PASSWORD (or SUBSCRIPTION_SECRET_ARN) for the push endpoint"
    )
    assert raised.value.not_set  # the CLI exits 2: bad configuration
    with pytest.raises(CredentialsUnavailable, match="SUBSCRIPTION_USERNAME"):
        credentials_source(read_settings(None, subscription_username="u"))
    direct = CredentialSource("database", "DATABASE", username="u", password=SecretStr("hunter2"))
    with pytest.raises(CredentialsUnavailable, match="set DATABASE_SECRET_ARN: the database needs host") as raised:
        direct.fields("host")  # a host only a secret gives
    assert "hunter2" not in str(raised.value) and "hunter2" not in repr(direct)

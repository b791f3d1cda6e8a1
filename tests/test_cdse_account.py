from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from link_fetcher.cdse.identity import cdse_account, token_provider
from link_fetcher.http import HttpError
from link_fetcher.settings import Settings

pytestmark = pytest.mark.unit


def test_account_from_settings_or_none() -> None:
    assert cdse_account(Settings(_env_file=None, cdse_username="u", cdse_password="p")) == ("u", "p")
    assert cdse_account(Settings(_env_file=None)) is None
    assert token_provider(Settings(_env_file=None)) is None


def test_account_from_secret_wins_over_settings(aws_env) -> None:
    with mock_aws():
        arn = boto3.client("secretsmanager").create_secret(
            Name="cdse-account", SecretString=json.dumps({"username": "alice", "password": "pw"})
        )["ARN"]
        settings = Settings(_env_file=None, cdse_secret_arn=arn, cdse_username="ignored", cdse_password="x")
        assert cdse_account(settings) == ("alice", "pw")


def test_unreadable_secret_is_a_clear_error(aws_env) -> None:
    with mock_aws(), pytest.raises(HttpError, match="cannot read the CDSE account secret"):
        cdse_account(Settings(_env_file=None, cdse_secret_arn="arn:aws:secretsmanager:us-east-1:1:secret:missing"))

"""The CLI's shared pieces without a database: how a relay run is reported, and the cached secrets."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from link_fetcher.cli_support import report_delivery
from link_fetcher.credentials import CredentialsUnavailable, clear_cache, read_secret
from link_fetcher.relay import RelayReport

pytestmark = pytest.mark.unit


def test_everything_delivered_is_one_line_and_exit_0(capsys) -> None:
    assert report_delivery(RelayReport(sent={"sqs": 12, "redis": 12})) == 0
    assert capsys.readouterr().err == "delivered: sqs 12, redis 12\n"


def test_a_backlog_names_each_problem_and_the_next_step(capsys) -> None:
    report = RelayReport(
        sent={"sqs": 3, "redis": 0},
        refused={"sqs": 2},
        unavailable={"redis": "Redis stream s: Connection refused"},
        pending=7,
        failed=2,
    )
    assert report_delivery(report) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("delivered: sqs 3, redis 0; 7 deliveries pending, 2 failed (")
    assert "redis unavailable: Redis stream s: Connection refused" in err and "sqs refused 2" in err
    assert "`link-fetcher relay`" in err and "`--retry-failed`" in err


def test_pending_without_failures_does_not_suggest_retry_failed(capsys) -> None:
    assert report_delivery(RelayReport(sent={"sqs": 0}, pending=4)) == 1
    err = capsys.readouterr().err
    assert "4 deliveries pending:" in err and "--retry-failed" not in err


def test_without_a_sink_pending_is_reported_but_not_a_failure(capsys) -> None:
    assert report_delivery(RelayReport(pending=5), sinks_configured=False) == 0
    assert "5 deliveries pending (no sink configured" in capsys.readouterr().err
    assert report_delivery(RelayReport(), sinks_configured=False) == 0
    assert capsys.readouterr().err == ""


@pytest.fixture
def secretsmanager(aws_env):
    with mock_aws():
        yield boto3.client("secretsmanager", region_name="us-east-1")


def test_a_secret_is_read_once_per_max_age(secretsmanager) -> None:
    arn = secretsmanager.create_secret(Name="s", SecretString=json.dumps({"username": "u", "password": "p1"}))["ARN"]
    assert read_secret(arn, what="test", fields=("username", "password"))["password"] == "p1"
    secretsmanager.put_secret_value(SecretId=arn, SecretString=json.dumps({"username": "u", "password": "p2"}))
    assert read_secret(arn, what="test", fields=("password",))["password"] == "p1"  # the cached value
    clear_cache()  # what the expiry of SECRET_MAX_AGE_SECONDS does
    assert read_secret(arn, what="test", fields=("password",))["password"] == "p2"


@pytest.mark.parametrize(
    ("secret_string", "error"),
    [("not json", "TransformParameterError"), ('["a list"]', "TypeError"), ('{"username": "u"}', "KeyError")],
)
def test_an_unusable_secret_names_the_secret_and_never_its_content(secretsmanager, secret_string, error) -> None:
    arn = secretsmanager.create_secret(Name="bad", SecretString=secret_string)["ARN"]
    with pytest.raises(CredentialsUnavailable) as raised:
        read_secret(arn, what="test account", fields=("username", "password"))
    assert str(raised.value) == f"cannot read the test account secret {arn}: {error}"


def test_a_missing_secret_is_unavailable(secretsmanager) -> None:
    with pytest.raises(CredentialsUnavailable, match="cannot read the database secret arn:missing"):
        read_secret("arn:missing", what="database", fields=())

"""`link-fetcher subscriptions create|list|delete` against a fake CDSE identity + Subscriptions server."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from link_fetcher.cdse.subscriptions import filter_param
from link_fetcher.cli import main
from tests.fakes.cdse_identity import FakeIdentity
from tests.fakes.cdse_subscriptions import FakeSubscriptions

ENDPOINT = "https://push.example.org/events"


@pytest.fixture
def cdse(monkeypatch: pytest.MonkeyPatch, tmp_path) -> Iterator[FakeSubscriptions]:
    monkeypatch.chdir(tmp_path)  # no developer .env
    with FakeIdentity("alice", "alice-pw") as identity, FakeSubscriptions(identity) as subscriptions:
        for key, value in {
            "CDSE_IDENTITY_URL": identity.url,
            "CDSE_CATALOGUE_URL": subscriptions.url,
            "CDSE_USERNAME": "alice",
            "CDSE_PASSWORD": "alice-pw",
            "SUBSCRIPTION_USERNAME": "push-user",
            "SUBSCRIPTION_PASSWORD": "push-pw",
            "PRODUCT_TYPE": "S2MSI1C",
        }.items():
            monkeypatch.setenv(key, value)
        monkeypatch.delenv("SUBSCRIPTION_SECRET_ARN", raising=False)
        yield subscriptions


def test_create_list_delete(cdse: FakeSubscriptions, capsys) -> None:
    assert main(["subscriptions", "create", "--endpoint", ENDPOINT]) == 0
    [created] = cdse.subscriptions.values()
    assert "created subscription " + created["Id"] in capsys.readouterr().out
    assert created["NotificationEndpoint"] == ENDPOINT
    assert (created["NotificationEpUsername"], created["NotificationEpPassword"]) == ("push-user", "push-pw")
    assert created["FilterParam"] == filter_param("S2MSI1C")
    assert "Collection/Name eq 'SENTINEL-2'" in created["FilterParam"]
    assert "att/OData.CSC.StringAttribute/Value eq 'S2MSI1C'" in created["FilterParam"]
    assert (created["Status"], created["SubscriptionEvent"], created["SubscriptionType"]) == (
        "running",
        ["created", "deleted"],
        "push",
    )
    assert (created["StageOrder"], created["Priority"]) == (True, 1)

    assert main(["subscriptions", "list"]) == 0
    [listed] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (listed["Id"], listed["Status"], listed["NotificationEndpoint"]) == (created["Id"], "running", ENDPOINT)
    assert "NotificationEpPassword" not in listed

    assert main(["subscriptions", "delete", created["Id"]]) == 0
    assert cdse.subscriptions == {}
    assert cdse.identity.password_grants == 3  # one token per command


def test_second_running_subscription_is_refused_with_one_line(cdse: FakeSubscriptions, capsys) -> None:
    assert main(["subscriptions", "create", "--endpoint", ENDPOINT]) == 0
    capsys.readouterr()
    assert main(["subscriptions", "create", "--endpoint", ENDPOINT]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "403" in err and "one running subscription" in err
    assert len(cdse.subscriptions) == 1


def test_unknown_id_is_404_exit_1(cdse: FakeSubscriptions, capsys) -> None:
    assert main(["subscriptions", "delete", "0b9f1c52-0000-4000-8000-000000000000"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not found (404)" in err


def test_wrong_cdse_password_exit_1(cdse: FakeSubscriptions, monkeypatch, capsys) -> None:
    monkeypatch.setenv("CDSE_PASSWORD", "wrong")
    assert main(["subscriptions", "list"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "credentials refused" in err and "wrong" not in err


def test_token_refused_by_the_api_exit_1(cdse: FakeSubscriptions, monkeypatch, capsys) -> None:
    # Tokens that CDSE's identity issues but the API rejects (e.g. revoked between the two): retried once, then 401.
    monkeypatch.setattr(cdse.identity, "is_valid", lambda authorization: False)
    assert main(["subscriptions", "list"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "(401)" in err
    assert cdse.identity.password_grants + cdse.identity.refresh_grants == 2  # the retry got a fresh token


@pytest.mark.parametrize(
    ("argv", "unset", "message"),
    [
        (["subscriptions", "list"], "CDSE_PASSWORD", "CDSE_USERNAME and CDSE_PASSWORD"),
        (["subscriptions", "create", "--endpoint", ENDPOINT], "SUBSCRIPTION_PASSWORD", "SUBSCRIPTION_USERNAME"),
        (["subscriptions", "create", "--endpoint", "push.example.org"], None, "http(s) URL"),
        (["subscriptions", "create"], None, "--endpoint"),
    ],
)
def test_configuration_and_usage_errors_exit_2(cdse, monkeypatch, capsys, argv, unset, message) -> None:
    if unset:
        monkeypatch.delenv(unset)
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert cdse.subscriptions == {}

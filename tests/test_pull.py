"""PULL subscriptions (SPEC §9) through the CLI against fake CDSE identity, Subscriptions (Read/Ack) and catalogue
servers, with the real database: recording like push, acknowledging after the commit, re-reading after a crash."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from link_fetcher.cli import main
from link_fetcher.recording import Recorder
from link_fetcher.settings import Settings
from link_fetcher.subscriptions.pull import FOLLOW_PAUSES_S, PullSession
from tests.fakes.cdse_catalogue import FakeCatalogue
from tests.fakes.cdse_identity import FakeIdentity
from tests.fakes.cdse_subscriptions import FakeSubscriptions
from tests.push_support import deleted_notification, notification


@pytest.fixture
def cdse(cli_env: pytest.MonkeyPatch) -> Iterator[FakeSubscriptions]:
    with (
        FakeIdentity("alice", "alice-pw") as identity,
        FakeCatalogue() as catalogue,
        FakeSubscriptions(identity, catalogue) as subscriptions,
    ):
        for key, value in {
            "CDSE_IDENTITY_URL": identity.url,
            "CDSE_CATALOGUE_URL": subscriptions.url,
            "CDSE_USERNAME": "alice",
            "CDSE_PASSWORD": "alice-pw",
            "PLATFORMS": "S2A,S2B",
        }.items():
            cli_env.setenv(key, value)
        yield subscriptions


@pytest.fixture
def subscription(cdse: FakeSubscriptions, capsys) -> str:
    assert main(["subscriptions", "create", "--pull"]) == 0
    capsys.readouterr()
    [created] = cdse.subscriptions.values()
    return created["Id"]


def granules(engine: Engine) -> dict[str, tuple]:
    with engine.connect() as conn:
        return {row.id: (row.source, row.deletion_cause) for row in conn.execute(text("SELECT * FROM granule"))}


def deliveries(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text("SELECT granule_id, event FROM outbox ORDER BY id"))]


def test_create_pull_asks_for_created_and_deleted(cdse: FakeSubscriptions, subscription: str, capsys) -> None:
    created = cdse.subscriptions[subscription]
    assert (created["SubscriptionType"], created["SubscriptionEvent"], created["Status"]) == (
        "pull",
        ["created", "deleted"],
        "running",
    )
    assert not any(key.startswith("NotificationE") for key in created)
    assert main(["subscriptions", "create", "--pull", "--endpoint", "https://x/events"]) == 2


def test_pull_records_like_push_in_reads_of_20_and_acks_each(engine, cdse, subscription, capsys) -> None:
    kept = [notification() for _ in range(40)]
    filtered = [notification(tile="01AAA"), notification(platform="S2C"), notification("modified")]
    deleted = [deleted_notification(n["value"]) for n in kept[:5]]
    cdse.enqueue(subscription, *kept[:30], *filtered, *deleted, *kept[30:], *kept[:2])  # the last two: repeats

    assert main(["subscriptions", "pull"]) == 0

    assert cdse.queues[subscription] == [] and len(cdse.acked) == 3  # 50 notifications: reads of 20, 20, 10
    reads = [path for method, path in cdse.requests if path.startswith(f"/odata/v1/Subscriptions({subscription})/Read")]
    assert len(reads) == 4 and all("%24top=20" in path for path in reads)  # the fourth finds the queue empty
    assert sorted(granules(engine)) == sorted(n["value"]["Id"] for n in kept)
    events = deliveries(engine)
    assert len(events) == 45 and sorted(event for _, event in events).count("deleted") == 5
    err = capsys.readouterr().err
    assert "50 notifications read, 40 recorded, 5 deletions announced" in err


@pytest.mark.parametrize(
    "order", ["deleted_first", "created_first", "in_one_read", "deleted_first_in_one_read", "across_reads"]
)
def test_pull_deletion_in_every_order(engine, cdse, subscription, order) -> None:
    """A deletion read in an earlier batch than its `created` keeps the product from being announced; within one
    read, products are recorded before deletions, so consumers get `found` then `deleted` whatever the order."""
    created = notification()
    deleted = deleted_notification(created["value"])
    if order == "deleted_first":
        cdse.enqueue(subscription, deleted)
        assert main(["subscriptions", "pull"]) == 0
        cdse.enqueue(subscription, created)
    elif order == "in_one_read":
        cdse.enqueue(subscription, created, deleted)
    elif order == "deleted_first_in_one_read":
        cdse.enqueue(subscription, deleted, created)
    else:
        cdse.enqueue(subscription, created)
        if order == "across_reads":
            assert main(["subscriptions", "pull"]) == 0
        cdse.enqueue(subscription, deleted, deleted)
    assert main(["subscriptions", "pull"]) == 0
    product_id = created["value"]["Id"]
    assert granules(engine)[product_id][1] == "Corrupted product"
    expected = [] if order == "deleted_first" else [(product_id, "found"), (product_id, "deleted")]
    assert deliveries(engine) == expected


def test_notifications_that_lost_their_value_are_completed(engine, cdse, subscription) -> None:
    """After 3 days CDSE drops `value` (and ProductName): a `created` is completed by reading the product by Id,
    a `deleted` from the notification itself; a product CDSE no longer has is skipped."""
    recorded_earlier, complete, gone = notification(), notification(), notification()
    cdse.catalogue.add([complete["value"]])
    cdse.enqueue(subscription, recorded_earlier)
    assert main(["subscriptions", "pull"]) == 0
    deleted = deleted_notification(recorded_earlier["value"])
    cdse.enqueue(subscription, complete, gone, deleted)
    cdse.age_out(subscription)

    assert main(["subscriptions", "pull"]) == 0

    rows = granules(engine)
    assert set(rows) == {recorded_earlier["value"]["Id"], complete["value"]["Id"]}
    assert rows[complete["value"]["Id"]] == ("subscription", None)
    with engine.connect() as conn:
        deleted_at = conn.execute(
            text("SELECT deleted_at FROM granule WHERE id = :id"), {"id": recorded_earlier["value"]["Id"]}
        ).scalar_one()
    assert deleted_at == dt.datetime.fromisoformat(deleted["NotificationDate"])  # the value's DeletionDate is gone
    assert cdse.queues[subscription] == []


@pytest.mark.parametrize("fault", ["refused", "killed"])
def test_a_session_dying_between_commit_and_ack_records_and_delivers_nothing_twice(
    engine, cdse, subscription, fault, capsys, monkeypatch
) -> None:
    from link_fetcher.cdse.subscriptions import SubscriptionsApi

    created = [notification() for _ in range(25)]
    cdse.enqueue(subscription, *created, deleted_notification(created[0]["value"]))
    if fault == "refused":
        cdse.ack_faults.append("500")  # CDSE refuses the first Ack
        assert main(["subscriptions", "pull"]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "could not acknowledge" in err and "read again" in err
    else:
        ack = SubscriptionsApi.ack

        def killed(self: SubscriptionsApi, *args: object) -> None:  # dies after its commit, before its Ack
            monkeypatch.setattr(SubscriptionsApi, "ack", ack)
            raise SystemExit(137)

        monkeypatch.setattr(SubscriptionsApi, "ack", killed)
        with pytest.raises(SystemExit):
            main(["subscriptions", "pull"])
    after_crash = (granules(engine), deliveries(engine))
    assert len(after_crash[0]) == 20 and len(cdse.queues[subscription]) == 26  # recorded, still queued

    assert main(["subscriptions", "pull"]) == 0

    assert len(granules(engine)) == 25 and cdse.queues[subscription] == []
    events = deliveries(engine)
    assert len(events) == len(set(events)) == 26  # 25 found + 1 deleted, each once
    assert events[:20] == after_crash[1]


def test_max_stops_after_n(engine, cdse, subscription) -> None:
    cdse.enqueue(subscription, *[notification() for _ in range(30)])
    assert main(["subscriptions", "pull", "--max", "7"]) == 0
    assert len(granules(engine)) == 7 and len(cdse.queues[subscription]) == 23


def test_no_pull_subscription_is_one_line_exit_1(cdse, capsys) -> None:
    assert main(["subscriptions", "pull"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "subscriptions create --pull" in err


def test_follow_keeps_reading_and_backs_off_while_empty(engine, cdse, subscription, make_settings) -> None:
    from link_fetcher.cdse.identity import token_provider
    from link_fetcher.cdse.subscriptions import SubscriptionsApi
    from link_fetcher.http import make_session

    settings: Settings = make_settings(
        cdse_catalogue_url=cdse.url,
        cdse_identity_url=cdse.identity.url,
        cdse_username="alice",
        cdse_password="alice-pw",
    )
    api = SubscriptionsApi(settings.cdse.catalogue_url, token_provider(settings), make_session())
    session = PullSession.from_settings(settings, Recorder(engine), api)
    later = notification()
    pauses: list[float] = []

    def sleep(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 3:
            cdse.enqueue(subscription, later)  # arrives while the session waits

    cdse.enqueue(subscription, notification())
    report = session.run(follow=True, sleep=sleep, should_stop=lambda: len(pauses) >= 8)
    assert report.read == report.recorded == 2 and later["value"]["Id"] in granules(engine)
    assert pauses == [*FOLLOW_PAUSES_S[:3], *FOLLOW_PAUSES_S[:5]]  # back to short pauses after news, capped
    assert json.dumps(pauses)


def test_the_scheduled_puller_lambda_reads_until_empty(engine, cdse, subscription, cli_env) -> None:
    """lambdas/subscription_puller: the same pull, until the queue is empty or its time is nearly up."""
    import types

    from lambdas.subscription_puller import handler

    cli_env.setenv("PULL_SUBSCRIPTION_ID", subscription)
    created = [notification() for _ in range(30)]
    cdse.enqueue(subscription, *created, deleted_notification(created[0]["value"]))
    context = types.SimpleNamespace(
        get_remaining_time_in_millis=lambda: 600_000,
        function_name="subscription_puller",
        memory_limit_in_mb=512,
        invoked_function_arn="arn:aws:lambda:us-east-1:123456789012:function:subscription_puller",
        aws_request_id="test",
    )
    result = handler.handler({}, context)
    assert (result["read"], result["recorded"], result["announced"]) == (31, 30, 1)
    assert cdse.queues[subscription] == [] and len(granules(engine)) == 30
    assert handler.handler({}, context)["read"] == 0  # the queue is empty: one Read, nothing else

"""Deletions that can be trusted (issue 26, SPEC §3, §9): a DeletionDate out of range is malformed (400 on push,
skipped and counted on poll and pull) and can no longer be stored; SUBSCRIPTION_IDS keeps other subscriptions'
notifications out; a deletion naming another product or dated before its publication is not announced;
remembered deletions are pruned; a made-up deletion does not block a later genuine `created` for good.
Against real PostgreSQL, the fake CDSE and the push endpoint's own code."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.exc import IntegrityError

from db import DeletionRecord, record_deletions, record_granules
from link_fetcher.cdse.deleted_products import parse_items
from link_fetcher.cli import main
from link_fetcher.push import PushEndpoint
from tests.factories import granule_record
from tests.fakes.cdse_catalogue import FakeCatalogue
from tests.fakes.cdse_identity import FakeIdentity
from tests.fakes.cdse_subscriptions import FakeSubscriptions
from tests.push_support import PASSWORD, PUSH_FIXTURE, USERNAME, basic, deleted_notification, encode, notification

AUTH = {"Authorization": basic()}
OURS = PUSH_FIXTURE["SubscriptionId"]  # the subscription of every notification the helpers build


def granule(engine: Engine, granule_id: str) -> dict | None:
    with engine.connect() as conn:
        row = conn.execute(text("SELECT * FROM granule WHERE id = :id"), {"id": granule_id}).mappings().first()
    return dict(row) if row else None


def events(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text("SELECT granule_id, event FROM outbox ORDER BY id"))]


def counts(endpoint: PushEndpoint) -> dict[str, float]:
    return {name: sum(metric["Value"]) for name, metric in endpoint.metrics.metric_set.items()}


@pytest.fixture
def make_endpoint(make_settings, engine: Engine):
    def make(**settings: object) -> PushEndpoint:
        made = PushEndpoint.from_settings(
            make_settings(subscription_username=USERNAME, subscription_password=PASSWORD, **settings), lambda: engine
        )
        made.metrics.clear_metrics()  # powertools keeps metrics at class level
        return made

    return make


@pytest.fixture
def endpoint(make_endpoint) -> PushEndpoint:
    return make_endpoint()


# --- DeletionDate in range ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "date", ["9999-12-31T23:59:59-14:00", "2201-01-01T00:00:00Z", "1899-12-31T23:59:59Z", "2024-09-14T08:00:00+15:00"]
)
def test_a_deletion_dated_out_of_range_is_400_and_status_keeps_working(engine, endpoint, cli_env, capsys, date) -> None:
    created = notification()
    assert endpoint.handle(AUTH, encode(created)).status == 204
    deleted = deleted_notification(created["value"])
    deleted["value"]["DeletionDate"] = date
    reply = endpoint.handle(AUTH, encode(deleted))
    assert reply.status == 400 and json.loads(reply.content())["error"].startswith("value.DeletionDate")
    assert granule(engine, created["value"]["Id"])["deleted_at"] is None
    assert events(engine) == [(created["value"]["Id"], "found")]
    assert main(["status"]) == 0
    assert main(["status", "--json"]) == 0


def test_status_json_after_a_refused_year_10000_deletion(engine, endpoint, cli_env, capsys) -> None:
    created = notification()
    endpoint.handle(AUTH, encode(created))
    deleted = deleted_notification(created["value"])
    deleted["value"]["DeletionDate"] = "9999-12-31T23:59:59-14:00"
    assert endpoint.handle(AUTH, encode(deleted)).status == 400
    capsys.readouterr()
    assert main(["status", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["deleted"] == [] and document["deliveries"]


def test_the_database_refuses_a_deletion_date_no_reader_can_read(engine) -> None:
    record = granule_record(0)
    with engine.begin() as conn:
        record_granules(conn, [record], ["sqs"])
    for value in ("10000-01-01 00:00:00+00", "1800-01-01 00:00:00+00"):
        with pytest.raises(IntegrityError, match="ck_granule_deleted_at_in_range"), engine.begin() as conn:
            conn.execute(text("UPDATE granule SET deleted_at = CAST(:value AS timestamptz)"), {"value": value})


@pytest.mark.unit
def test_a_polled_deletion_out_of_range_is_skipped_and_counted() -> None:
    good = {"Id": "f867a59a-9336-46d0-93ae-e55bf29403f8", "Name": "S2A_X.SAFE", "DeletionDate": "2024-09-14T08:00:00Z"}
    bad = {**good, "DeletionDate": "9999-12-31T23:59:59-14:00"}
    products, malformed = parse_items([good, bad, {**good, "DeletionDate": "2300-01-01T00:00:00Z"}])
    assert [product.product_id for product in products] == [good["Id"]] and malformed == 2


# --- SUBSCRIPTION_IDS ------------------------------------------------------------------------------------


def test_push_notifications_of_other_subscriptions_are_counted_and_ignored(engine, make_endpoint) -> None:
    endpoint = make_endpoint(subscription_ids=f"{OURS.upper()}, another-of-ours")
    recorded = notification()
    assert endpoint.handle(AUTH, encode(recorded)).status == 204  # ours (Ids compare in lower case)
    theirs = {**notification(), "SubscriptionId": "4b1d0000-0000-0000-0000-000000000000"}
    anonymous = {key: value for key, value in notification().items() if key != "SubscriptionId"}
    their_deletion = {**deleted_notification(recorded["value"]), "SubscriptionId": "someone-else"}
    for body in (theirs, anonymous, their_deletion, [theirs, anonymous]):
        assert endpoint.handle(AUTH, encode(body)).status == 204
    assert events(engine) == [(recorded["value"]["Id"], "found")]
    assert granule(engine, recorded["value"]["Id"])["deleted_at"] is None
    assert granule(engine, theirs["value"]["Id"]) is None and granule(engine, anonymous["value"]["Id"]) is None
    assert counts(endpoint)["other_subscription"] == 5
    ours_again = {**deleted_notification(recorded["value"]), "SubscriptionId": "Another-Of-Ours"}
    assert endpoint.handle(AUTH, encode(ours_again)).status == 204
    assert events(engine)[-1] == (recorded["value"]["Id"], "deleted")


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
        }.items():
            cli_env.setenv(key, value)
        yield subscriptions


def test_pull_ignores_other_subscriptions_and_skips_out_of_range_deletions(engine, cdse, cli_env, capsys) -> None:
    assert main(["subscriptions", "create", "--pull"]) == 0
    [subscription] = cdse.subscriptions
    cli_env.setenv("SUBSCRIPTION_IDS", "11111111-2222-3333-4444-555555555555")  # the queue read is ours as well
    kept, foreign = notification(), notification()
    bad_deletion = deleted_notification(kept["value"])
    bad_deletion["value"]["DeletionDate"] = "9999-12-31T23:59:59-14:00"
    cdse.enqueue(subscription, kept, foreign, bad_deletion)
    cdse.queues[subscription][1]["SubscriptionId"] = "someone-else"
    capsys.readouterr()

    assert main(["subscriptions", "pull"]) == 0

    assert cdse.queues[subscription] == []  # all acknowledged
    assert events(engine) == [(kept["value"]["Id"], "found")] and granule(engine, foreign["value"]["Id"]) is None
    assert granule(engine, kept["value"]["Id"])["deleted_at"] is None
    err = capsys.readouterr().err
    assert "1 recorded" in err and "1 of other subscriptions" in err and "1 unreadable" in err


# --- Deletions of recorded granules that are not believed -------------------------------------------------


def test_a_pushed_deletion_naming_another_product_is_not_announced(engine, endpoint) -> None:
    created = notification()
    endpoint.handle(AUTH, encode(created))
    forged = deleted_notification(created["value"])
    forged["value"]["Name"] = "S2B_MSIL1C_20240912T112541_N0511_R137_T28PHQ_20240912T133420.SAFE"
    assert endpoint.handle(AUTH, encode(forged)).status == 204
    assert granule(engine, created["value"]["Id"])["deleted_at"] is None
    assert events(engine) == [(created["value"]["Id"], "found")]
    assert counts(endpoint)["name_mismatch"] == 1 and counts(endpoint)["deletion_refused"] == 1
    genuine = deleted_notification(created["value"])
    genuine["value"]["Name"] = created["value"]["Name"].removesuffix(".SAFE")  # the same name, without `.SAFE`
    assert endpoint.handle(AUTH, encode(genuine)).status == 204
    assert endpoint.handle(AUTH, encode(genuine)).status == 204
    assert events(engine) == [(created["value"]["Id"], "found"), (created["value"]["Id"], "deleted")]


def test_a_pushed_deletion_dated_before_publication_is_not_announced(engine, endpoint) -> None:
    created = notification()
    endpoint.handle(AUTH, encode(created))
    published = dt.datetime.fromisoformat(created["value"]["PublicationDate"])
    early = deleted_notification(created["value"], when=published - dt.timedelta(minutes=1))
    assert endpoint.handle(AUTH, encode(early)).status == 204
    assert granule(engine, created["value"]["Id"])["deleted_at"] is None
    assert counts(endpoint)["before_publication"] == 1
    at_publication = deleted_notification(created["value"], when=published)
    assert endpoint.handle(AUTH, encode(at_publication)).status == 204
    assert granule(engine, created["value"]["Id"])["deleted_at"] == published


def test_the_statement_says_why_a_deletion_is_refused(engine) -> None:
    named, early, unnamed = granule_record(0), granule_record(1), granule_record(2)
    with engine.begin() as conn:
        record_granules(conn, [named, early, unnamed], ["sqs"])
        outcome = record_deletions(
            conn,
            [
                _deletion(named.id, "S2A_OTHER.SAFE", named.published),
                _deletion(early.id, early.filename, early.published - dt.timedelta(seconds=1), remember=True),
                # A PULL notification that lost its name: the Id stands for it.
                _deletion(unnamed.id, unnamed.id, unnamed.published, name_known=False),
            ],
            ["sqs"],
        )
    assert outcome.refused == {named.id: "name_mismatch", early.id: "before_publication"}
    assert outcome.announced == [unnamed.id] and outcome.remembered == []


def _deletion(
    granule_id: str, name: str, when: dt.datetime | None, *, remember: bool = False, name_known: bool = True
) -> DeletionRecord:
    assert when is not None
    return DeletionRecord(
        id=granule_id,
        filename=name,
        deleted_at=when,
        deletion_cause="Duplicated product",
        download_url=f"https://d/{granule_id}",
        remember=remember,
        name_known=name_known,
        tile_id="28PHQ",
        platform="S2A",
        product_type="S2MSI1C",
    )


# --- Remembered deletions: pruned, and no lasting block ----------------------------------------------------


def test_remembered_deletions_are_pruned_after_the_memory(engine) -> None:
    old, fresh, recorded = "0ld0", "fre5h", granule_record(0)
    when = dt.datetime(2024, 9, 14, tzinfo=dt.UTC)
    with engine.begin() as conn:
        record_granules(conn, [recorded], ["sqs"])
        record_deletions(conn, [_deletion(old, "S2A_OLD.SAFE", when, remember=True)], ["sqs"])
        record_deletions(conn, [_deletion(fresh, "S2A_FRESH.SAFE", when, remember=True)], ["sqs"])
        record_deletions(conn, [_deletion(recorded.id, recorded.filename, when)], ["sqs"])
        conn.execute(
            text("UPDATE granule SET first_seen = now() - interval '11 days' WHERE id IN (:old, :recorded)"),
            {"old": old, "recorded": recorded.id},
        )
        conn.execute(text("UPDATE granule SET first_seen = now() - interval '9 days' WHERE id = :id"), {"id": fresh})
    with engine.begin() as conn:
        record_deletions(conn, [_deletion("n3w", "S2A_NEW.SAFE", when, remember=True)], ["sqs"], memory_days=10)
    with engine.connect() as conn:
        left = set(conn.execute(text("SELECT id FROM granule")).scalars())
    assert left == {fresh, recorded.id, "n3w"}  # a recorded granule, deleted or not, is never pruned


def test_pruning_can_use_its_index(engine) -> None:
    from db.deletions import _PRUNE_SQL

    with engine.begin() as conn:
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        plan = "\n".join(conn.execute(text(f"EXPLAIN {_PRUNE_SQL.text}"), {"days": 90}).scalars())
    assert "ix_granule_remembered" in plan


def test_a_made_up_deletion_does_not_block_a_later_created_for_good(engine, endpoint) -> None:
    """A remembered deletion blocks the product's `created` only when the product was published no later than
    the deletion (and than when it was remembered): no genuine deletion precedes its product's publication."""
    genuine, made_up, future = notification(), notification(), notification()
    for created in (genuine, made_up, future):
        published = dt.datetime.fromisoformat(created["value"]["PublicationDate"])
        when = {
            id(genuine): published + dt.timedelta(hours=1),  # deleted after publication: blocks
            id(made_up): published - dt.timedelta(hours=1),  # "deleted" before it was published: does not
            id(future): dt.datetime(2200, 1, 1, tzinfo=dt.UTC),  # dated in the future: counts from when it came
        }[id(created)]
        assert endpoint.handle(AUTH, encode(deleted_notification(created["value"], when=when))).status == 204
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE granule SET first_seen = now() - interval '2 days' WHERE id = :id"),
            {"id": future["value"]["Id"]},
        )
    assert counts(endpoint)["deletion_remembered"] == 3
    for created in (genuine, made_up, future):
        assert endpoint.handle(AUTH, encode(created)).status == 204
    assert sorted(events(engine)) == sorted([(made_up["value"]["Id"], "found"), (future["value"]["Id"], "found")])
    revived = granule(engine, made_up["value"]["Id"])
    assert (revived["source"], revived["deleted_at"], revived["deletion_cause"]) == ("subscription", None, None)
    assert revived["published"] == dt.datetime.fromisoformat(made_up["value"]["PublicationDate"])
    assert granule(engine, genuine["value"]["Id"])["source"] == "deletion"
    assert endpoint.handle(AUTH, encode(made_up)).status == 204  # seen again: nothing more
    assert len(events(engine)) == 2

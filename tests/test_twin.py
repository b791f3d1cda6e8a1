"""The stack as AWS runs it (twin/, docs/twin.md): the synthesized template on moto, every function from its bundle
in a warm container of its own, the state machine in moto's ASL interpreter, PostgreSQL real, CDSE faked."""

from __future__ import annotations

import datetime as dt
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote_plus

import boto3
import pytest
from sqlalchemy import create_engine, make_url, text

from tests.fakes.cdse_catalogue import PRODUCTS_PATH, FakeCatalogue, day_products
from tests.fakes.cdse_download import FakeCdseDownload
from tests.fakes.cdse_identity import FakeIdentity
from tests.fakes.cdse_subscriptions import FakeSubscriptions
from tests.push_support import basic, encode, notification
from twin import FunctionError, TemplateError, Twin
from twin.synth import synthesize

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]
NOW = dt.datetime.now(dt.UTC).replace(hour=3, minute=0, second=0, microsecond=0)
# Timeouts, retry waits and visibility timeouts at a hundredth: a 15-minute function has 9 s.
SCALE = 0.01


@pytest.fixture(scope="session")
def cdk_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stack synthesized with its bundles, as `make synth` makes it (reusing its bundles when present)."""
    return synthesize(tmp_path_factory.mktemp("cdk.out"))


@pytest.fixture
def twin_database(server_url: str) -> Iterator[str]:
    """An empty database: the twin's migration custom resource creates the schema."""
    name = f"lf_twin_{secrets.token_hex(4)}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture
def catalogue() -> Iterator[FakeCatalogue]:
    with FakeCatalogue() as fake:
        yield fake


def count(url: str, sql: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text(sql)).scalar_one())
    finally:
        engine.dispose()


def days_back(days: int) -> dt.date:
    return (NOW - dt.timedelta(days=days)).date()


def queued(twin: Twin) -> int:
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url=twin.endpoint,
                       aws_access_key_id="twin-internal", aws_secret_access_key="x")  # fmt: skip
    attributes = sqs.get_queue_attributes(QueueUrl=twin.queue_url("ToDownload3"), AttributeNames=["All"])
    return int(attributes["Attributes"]["ApproximateNumberOfMessages"])


def test_the_schedule_polls_records_and_delivers_through_the_stack(
    cdk_out: Path, twin_database: str, catalogue: FakeCatalogue
) -> None:
    for day in (1, 2):
        catalogue.add(day_products(days_back(day), "S2A", 40))
    with Twin(cdk_out, database_url=twin_database, cdse_base_url=catalogue.url, time_scale=SCALE) as twin:
        twin.clock.set(NOW)
        run = twin.run_rule("PollingSchedule")
        assert run.succeeded, run.cause
        # The schedule's time reached the date generator: the five days before it, every platform.
        assert run.entered("FetchLinks") >= 15
        assert count(twin_database, "SELECT count(*) FROM granule") == 48  # 60 % of 80 on allowed tiles
        assert queued(twin) == 48
        usage = twin.usage()
        assert usage.functions["link_fetcher"].invocations >= 20  # 15 days-platforms and 5 deletion days
        assert usage.functions["link_fetcher"].cold_starts == 1  # one warm container
        assert usage.requests_of("secretsmanager") >= 1
        assert usage.requests["sqs"]["SendMessageBatch"] >= 5
        assert usage.state_transitions == len([e for e in run.events if e["entered"]])


def test_push_notifications_go_through_api_gateway_with_the_generated_credentials(
    cdk_out: Path, twin_database: str, catalogue: FakeCatalogue
) -> None:
    with Twin(cdk_out, database_url=twin_database, cdse_base_url=catalogue.url, time_scale=SCALE) as twin:
        credentials = twin.push_credentials()
        assert credentials["username"] == "cdse-push" and len(credentials["password"]) == 40
        body = encode(notification())
        status, reply = twin.push(body, {"Authorization": basic(credentials["username"], credentials["password"]),
                                         "Content-Type": "application/json"})  # fmt: skip
        assert status in (200, 201, 204), reply
        status, reply = twin.push(body, {"Authorization": basic("cdse-push", "wrong")})
        assert status == 401
        assert count(twin_database, "SELECT count(*) FROM granule") == 1
        assert twin.usage().api_gateway_requests == 2


def test_the_downloader_reports_the_records_that_failed_and_only_those(
    cdk_out: Path, twin_database: str, catalogue: FakeCatalogue
) -> None:
    with FakeIdentity() as identity, FakeCdseDownload(identity) as download:
        environment = {"CDSE_DOWNLOAD_URL": download.url, "CDSE_IDENTITY_URL": identity.url}
        with Twin(
            cdk_out, database_url=twin_database, cdse_base_url=catalogue.url, time_scale=SCALE,
            cdse_account={"username": identity.username, "password": identity.password},
            function_env={"link_subscription": environment, "downloader": environment},
        ) as twin:  # fmt: skip
            auth = basic(**twin.push_credentials())
            for index in range(6):
                product = notification()
                served = download.add_product(2048 + index)
                value = product["value"]
                value.update(Id=served.id, ContentLength=served.size)
                value["Checksum"] = [{"Algorithm": "MD5", "Value": served.md5},
                                     {"Algorithm": "BLAKE3", "Value": served.blake3}]  # fmt: skip
                product["ProductId"] = served.id
                if index % 3 == 0:  # every third one CDSE cannot serve
                    del download.products[served.id]
                assert twin.push(encode(product), {"Authorization": auth})[0] < 300
            drained = twin.drain_downloads()
            assert (drained.records, drained.succeeded, len(drained.reported_failures)) == (6, 4, 2)
            assert drained.batches == 2  # the mapping's BatchSize of 4
            s3 = boto3.client("s3", region_name="us-east-1", endpoint_url=twin.endpoint,
                              aws_access_key_id="twin-internal", aws_secret_access_key="x")  # fmt: skip
            assert s3.list_objects_v2(Bucket=twin.bucket).get("KeyCount") == 4
            assert count(twin_database, "SELECT count(*) FROM granule WHERE downloaded") == 4


def test_the_migration_custom_resource_creates_updates_and_deletes(
    cdk_out: Path, twin_database: str, catalogue: FakeCatalogue
) -> None:
    with Twin(cdk_out, database_url=twin_database, cdse_base_url=catalogue.url, time_scale=SCALE) as twin:
        # Create ran when the twin started: the schema is there.
        assert count(twin_database, "SELECT count(*) FROM alembic_version") == 1
        updated = twin.custom_resource("Update", properties={"MigrationsFingerprint": "changed"})
        assert updated["PhysicalResourceId"] == "link-fetcher-schema"
        assert updated["Data"]["Revision"]
        deleted = twin.custom_resource("Delete")
        assert deleted["PhysicalResourceId"] == "link-fetcher-schema"
        assert count(twin_database, "SELECT count(*) FROM alembic_version") == 1  # Delete leaves the schema


def test_a_lambda_timeout_in_the_middle_of_a_day_resumes_from_its_cursor(cdk_out: Path, twin_database: str) -> None:
    day = {"query_date": days_back(1).isoformat(), "platform": "S2B"}
    # At a twentieth: the fetcher's 60 s margin is 3 s here, time for it to deliver what it read before it stops.
    # Each page takes a quarter of a second (five simulated), so the day's 25 pages outlast the timeout below on
    # any machine.
    with FakeCatalogue(answer_seconds=0.25) as catalogue, Twin(
        cdk_out, database_url=twin_database, cdse_base_url=catalogue.url, time_scale=0.05,
        function_env={"link_fetcher": {"PLATFORMS": "S2B", "CDSE_PAGE_SIZE": "100"}},
    ) as twin:  # fmt: skip
        catalogue.add(day_products(days_back(1), "S2B", 2500))
        twin.invoke("date_generator", {})  # warm: the timeout below is the fetch's, not a cold start's
        # A timeout 70 s in: the fetcher stops at its 60 s margin, or Lambda stops it mid-page.
        twin.timeout_next("link_fetcher", 70)
        try:
            assert twin.invoke("link_fetcher", day)["completed"] is False
        except FunctionError as error:
            assert error.error["errorType"] == "Sandbox.Timedout"
        assert count(twin_database, "SELECT fetched_links FROM granule_count") < 2500
        twin.kill_next("link_fetcher", 30)  # and a container killed 30 s into the next invocation
        with pytest.raises(FunctionError, match=r"Runtime\.ExitError"):
            twin.invoke("link_fetcher", day)
        # The state machine calls again until completed: each call resumes from the stored cursor.
        for _ in range(10):
            if twin.invoke("link_fetcher", day)["completed"]:
                break
        assert count(twin_database, "SELECT count(*) FROM granule") == 1500
        assert count(twin_database, "SELECT fetched_links FROM granule_count") == 2500
        assert twin.usage().functions["link_fetcher"].cold_starts >= 2  # the kill cost a container


def test_a_poisoned_day_leaves_the_other_days_and_the_deletions_done_and_is_retried_next_schedule(
    cdk_out: Path, twin_database: str
) -> None:
    """CDSE answers 500 for one publication day whatever is asked: the execution records every other day, runs the
    deletions step, counts the day in UnfinishedDays; the next schedule, days later, offers it again."""
    poisoned = days_back(3)
    broken = {"on": True}

    def poison(path: str, query: str) -> str | None:
        on_the_day = f"PublicationDate ge {poisoned.isoformat()}T" in unquote_plus(query)
        return "500" if broken["on"] and path == PRODUCTS_PATH and on_the_day else None

    with FakeCatalogue(fault_policy=poison) as catalogue:
        for day in range(1, 6):
            catalogue.add(day_products(days_back(day), "S2A", 20))
        with Twin(
            cdk_out, database_url=twin_database, cdse_base_url=catalogue.url, time_scale=SCALE,
            min_timeout_seconds=3, function_env={"date_generator": {"PLATFORMS": "S2A"}},
        ) as twin:  # fmt: skip
            twin.clock.set(NOW)
            run = twin.run_rule("PollingSchedule")
            assert run.succeeded, run.cause
            assert count(twin_database, "SELECT count(*) FROM granule") == 4 * 12  # every other day, whole
            assert count(twin_database, "SELECT count(*) FROM granule_count WHERE NOT completed") == 1
            # The deletions step ran, for every day.
            assert run.entered("FetchEachDeletionDay") == 1
            assert count(twin_database, "SELECT count(*) FROM deletion_count WHERE completed") == 5
            assert run.entered("DayUnfinished") == 1
            assert unfinished_days_metric(twin) == 1
            # Days later, CDSE serves the day again: the next schedule offers it among its own days.
            broken["on"] = False
            twin.clock.advance(dt.timedelta(days=6))
            again = twin.run_rule("PollingSchedule")
            assert again.succeeded, again.cause
            assert [poisoned.isoformat(), "S2A"] in again.output["query_dates_platforms"]
            assert count(twin_database, "SELECT count(*) FROM granule") == 5 * 12
            assert count(twin_database, "SELECT count(*) FROM granule_count WHERE NOT completed") == 0
            assert unfinished_days_metric(twin) == 1  # nothing new left unfinished


def unfinished_days_metric(twin: Twin) -> float:
    cloudwatch = boto3.client("cloudwatch", region_name="us-east-1", endpoint_url=twin.endpoint,
                              aws_access_key_id="twin-internal", aws_secret_access_key="x")  # fmt: skip
    now = dt.datetime.now(dt.UTC)
    statistics = cloudwatch.get_metric_statistics(
        Namespace="LinkFetcher", MetricName="UnfinishedDays",
        Dimensions=[{"Name": "service", "Value": "link-fetcher-fetch"}],
        StartTime=now - dt.timedelta(hours=1), EndTime=now + dt.timedelta(hours=1), Period=7200, Statistics=["Sum"],
    )  # fmt: skip
    return sum(point["Sum"] for point in statistics["Datapoints"])


def test_pull_mode_reads_the_subscription_on_its_schedule(
    cdk_out: Path, twin_database: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The second run: the stack synthesized with DEPLOY_SUBSCRIPTION_MODE=pull has no push route; its schedule
    reads the PULL subscription with the CDSE account from its secret, records and acknowledges."""
    pulled_out = synthesize(tmp_path_factory.mktemp("cdk.out.pull"), mode="pull", seed=cdk_out)
    with (
        FakeIdentity() as identity,
        FakeCatalogue() as catalogue,
        FakeSubscriptions(identity, catalogue) as subscriptions,
    ):
        subscription = str(uuid.uuid4())
        subscriptions.subscriptions[subscription] = {"Id": subscription, "SubscriptionType": "pull",
                                                     "Status": "running"}  # fmt: skip
        subscriptions.enqueue(subscription, *[notification() for _ in range(25)])
        with Twin(
            pulled_out, database_url=twin_database, cdse_base_url=subscriptions.url, mode="pull", time_scale=SCALE,
            cdse_account={"username": identity.username, "password": identity.password},
            function_env={"subscription_puller": {"CDSE_IDENTITY_URL": identity.url,
                                                  "PULL_SUBSCRIPTION_ID": subscription}},
        ) as twin:  # fmt: skip
            with pytest.raises(TemplateError, match="POST routes"):
                twin.push(b"{}", {})
            run = twin.run_rule("PullSchedule")
            assert run.succeeded, run.cause
            assert count(twin_database, "SELECT count(*) FROM granule") == 25
            assert subscriptions.queues[subscription] == [] and len(subscriptions.acked) == 2  # reads of 20, 5
            assert queued(twin) == 25
    with pytest.raises(TemplateError, match="pull mode"):
        Twin(cdk_out, database_url=twin_database, cdse_base_url="http://x", mode="pull")

"""The twin reads the stack from its synthesized template (twin/template.py) and builds the events AWS builds
(twin/events.py): the template here is synthesized in-process with bundling skipped."""

from __future__ import annotations

import base64
import datetime as dt
import json
from pathlib import Path

import pytest

from twin import StackTemplate, TemplateError
from twin.events import (
    api_gateway_event,
    custom_resource_event,
    scheduled_event,
    sqs_record,
    target_input,
)
from twin.model import Clock, FunctionUsage
from twin.synth import synthesize
from twin.template import ACCOUNT, REGION, TargetSpec, resolve

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> StackTemplate:
    return StackTemplate(synthesize(tmp_path_factory.mktemp("cdk.out"), bundle=False, seed=None))


def test_functions_come_with_their_settings_from_the_template(template: StackTemplate) -> None:
    functions = {spec.name: spec for spec in template.functions().values() if spec.is_python}
    assert set(functions) >= {"migrate", "date_generator", "link_fetcher", "link_subscription", "relay", "downloader"}
    fetcher = functions["link_fetcher"]
    assert (fetcher.handler, fetcher.runtime, fetcher.timeout_seconds, fetcher.memory_mb) == (
        "handler.handler", "python3.13", 900, 512,
    )  # fmt: skip
    assert functions["downloader"].memory_mb == 2048
    # The secrets reach the functions as ARNs (the database's through its RDS attachment), never as values.
    attachment = fetcher.environment["DATABASE_SECRET_ARN"]["Ref"]
    assert template.resources[attachment]["Type"] == "AWS::SecretsManager::SecretTargetAttachment"
    assert "DATABASE_URL" not in fetcher.environment
    assert fetcher.environment["TO_DOWNLOAD_QUEUE_URL"] == {"Ref": template.event_sources()[0].queue}
    assert fetcher.environment["PRODUCT_TYPE"] == "S2MSI1C"


def test_a_function_is_named_by_folder_logical_id_or_a_unique_part(template: StackTemplate) -> None:
    fetcher = template.function("link_fetcher")
    assert template.function(fetcher.logical_id) == fetcher
    assert template.function("LinkFetcher") == fetcher
    with pytest.raises(TemplateError, match="names"):
        template.function("Functions")  # every function's id has it


def test_schedules_and_their_targets(template: StackTemplate) -> None:
    polling = template.rule("PollingSchedule")
    assert polling.schedule == "cron(0 3 * * ? *)"
    (target,) = polling.targets
    assert template.resources[target.logical_id]["Type"] == "AWS::StepFunctions::StateMachine"
    event = scheduled_event("arn:rule", dt.datetime(2026, 3, 2, 3, 0, tzinfo=dt.UTC))
    assert target_input(target, event)["lookback_days"] == 5
    relay = template.rule("RelaySchedule")
    assert template.function("relay").logical_id == relay.targets[0].logical_id
    assert target_input(relay.targets[0], event) == {}


def test_the_download_queue_feeds_the_downloader_in_batches_reporting_failures(template: StackTemplate) -> None:
    (source,) = template.event_sources()
    assert source.function == template.function("downloader").logical_id
    assert (source.batch_size, source.report_batch_item_failures, source.maximum_concurrency) == (4, True, 4)
    queue = template.properties(source.queue)
    assert queue["RedrivePolicy"]["maxReceiveCount"] == 5


def test_the_push_route_and_its_throttling(template: StackTemplate) -> None:
    (route,) = template.routes()
    assert (route.method, route.path, route.integration, route.stage) == ("POST", "/events", "AWS_PROXY", "v1")
    assert route.function == template.function("link_subscription").logical_id
    assert (route.rate_limit, route.burst_limit) == (20, 40)


def test_the_migration_is_a_custom_resource_whose_provider_calls_the_migrate_function(template: StackTemplate) -> None:
    (migration,) = [
        spec for spec in template.custom_resources() if spec.resource_type == "Custom::LinkFetcherMigration"
    ]
    assert migration.provider_function == template.function("migrate").logical_id
    assert len(migration.properties["MigrationsFingerprint"]) == 64


def test_pull_mode_has_a_puller_and_no_route(tmp_path: Path) -> None:
    pulled = StackTemplate(synthesize(tmp_path, mode="pull", bundle=False, seed=None))
    assert pulled.routes() == []
    assert pulled.function("subscription_puller").environment["CDSE_SECRET_ARN"]
    assert pulled.rule("PullSchedule").targets[0].logical_id == pulled.function("subscription_puller").logical_id


@pytest.mark.unit
def test_intrinsic_functions_resolve() -> None:
    lookup = {("Queue", None): "https://q", ("Fn", "Arn"): "arn:fn"}.__getitem__

    def get(logical_id: str, attribute: str | None) -> str:
        return lookup((logical_id, attribute))

    assert resolve({"Fn::Join": ["", ["a:", {"Ref": "AWS::Region"}, ":", {"Fn::GetAtt": ["Fn", "Arn"]}]]}, get) == (
        f"a:{REGION}:arn:fn"
    )
    assert resolve({"Fn::Sub": "${AWS::AccountId}/${Queue}/${Fn.Arn}"}, get) == f"{ACCOUNT}/https://q/arn:fn"
    assert resolve({"x": [{"Ref": "Queue"}]}, get) == {"x": ["https://q"]}
    with pytest.raises(TemplateError, match="Fn::ImportValue"):
        resolve({"Fn::ImportValue": "x"}, get)


@pytest.mark.unit
def test_an_input_transformer_fills_its_template_from_the_event() -> None:
    target = TargetSpec(
        arn={"Ref": "X"}, input=None, input_path=None, retry_attempts=None,
        input_transformer={"InputPathsMap": {"time": "$.time", "r": "$.resources[0]"},
                           "InputTemplate": '{"lookback_days":5,"now":<time>,"rule":"<r>"}'},
    )  # fmt: skip
    event = scheduled_event("arn:aws:events:rule/x", dt.datetime(2026, 3, 2, 3, 0, tzinfo=dt.UTC))
    assert target_input(target, event) == {"lookback_days": 5, "now": "2026-03-02T03:00:00Z",
                                           "rule": "arn:aws:events:rule/x"}  # fmt: skip
    whole = TargetSpec(arn={"Ref": "X"}, input=None, input_path="$.detail", input_transformer=None, retry_attempts=None)
    assert target_input(whole, event) == {}


@pytest.mark.unit
def test_events_as_aws_shapes_them() -> None:
    from twin.template import CustomResourceSpec, RouteSpec

    route = RouteSpec("POST", "/events", "Fn", "AWS_PROXY", "v1", None, None)
    event = api_gateway_event(route, b'{"a": 1}', {"Authorization": "Basic x"}, "10.0.0.1")
    assert (event["resource"], event["httpMethod"], event["body"], event["isBase64Encoded"]) == (
        "/events", "POST", '{"a": 1}', False,
    )  # fmt: skip
    assert event["requestContext"]["path"] == "/v1/events"
    binary = api_gateway_event(route, b"\xff\x00", {}, "10.0.0.1")
    assert binary["isBase64Encoded"] and base64.b64decode(binary["body"]) == b"\xff\x00"
    record = sqs_record(
        {"MessageId": "m1", "ReceiptHandle": "r1", "Body": "{}", "Attributes": {"ApproximateReceiveCount": "1"}},
        "arn:aws:sqs:q",
    )
    assert (record["messageId"], record["eventSource"], record["attributes"]["ApproximateReceiveCount"]) == (
        "m1", "aws:sqs", "1",
    )  # fmt: skip
    spec = CustomResourceSpec("Migration", "Custom::X", {"Ref": "P"}, "Fn", {"ServiceToken": "arn:p", "F": "1"})
    update = custom_resource_event(spec, "Update", properties={"ServiceToken": "arn:p", "F": "2"},
                                   old_properties={"F": "1"}, physical_id="pid", stack_id="arn:stack")  # fmt: skip
    assert (update["RequestType"], update["PhysicalResourceId"], update["OldResourceProperties"]) == (
        "Update", "pid", {"F": "1"},
    )  # fmt: skip
    create = custom_resource_event(spec, "Create", properties={"F": "1"}, old_properties=None, physical_id=None,
                                   stack_id="arn:stack")  # fmt: skip
    assert "PhysicalResourceId" not in create and "OldResourceProperties" not in create
    json.dumps(create)


@pytest.mark.unit
def test_the_clock_is_set_and_advanced_in_utc() -> None:
    clock = Clock(dt.datetime(2026, 3, 1, tzinfo=dt.UTC))
    assert clock.advance(dt.timedelta(days=1)) == dt.datetime(2026, 3, 2, tzinfo=dt.UTC)
    with pytest.raises(ValueError, match="aware"):
        clock.set(dt.datetime(2026, 3, 1))


@pytest.mark.unit
def test_lambda_bills_milliseconds_times_memory() -> None:
    assert FunctionUsage(memory_mb=2048, invocations=1, seconds=1.0004).billed_gb_seconds == pytest.approx(2.002)


@pytest.mark.unit
def test_a_containers_waits_run_at_the_stacks_pace(monkeypatch: pytest.MonkeyPatch) -> None:
    """A backoff of 2 s inside a function costs 2 s of its timeout: at a twentieth, a tenth of a real second."""
    from twin import bootstrap

    waited: list[float] = []
    monkeypatch.setattr(bootstrap, "_REAL_SLEEP", waited.append)
    sleep = bootstrap._sleep_in_stack_time(0.05)
    sleep(2)
    sleep(0.5)
    assert waited == pytest.approx([0.1, 0.025])

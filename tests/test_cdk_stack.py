"""The CDK stack, synthesized in-process with layer bundling skipped (`make synth` bundles for real):
resources, the polling state machine, least-privilege IAM, a private database and cdk-nag."""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template
from cdk_nag import AwsSolutionsChecks

from cdk.link_fetcher_cdk.config import PROJECT_ROOT, DeployConfig
from cdk.link_fetcher_cdk.monitoring import relay_period
from cdk.link_fetcher_cdk.stack import LinkFetcherStack
from link_fetcher.fetching import fetch
from link_fetcher.observability import FRESHNESS_SOURCES, FUNCTION_SERVICES, NAMESPACE, Metric, Service
from link_fetcher.push import decisions
from link_fetcher.settings import read_settings
from link_fetcher.stac import items

LAMBDAS = PROJECT_ROOT / "lambdas"

pytestmark = pytest.mark.timeout(600)


def synth(config: DeployConfig, project_root: Path = PROJECT_ROOT) -> LinkFetcherStack:
    app = cdk.App(context={"aws:cdk:bundling-stacks": []})
    return LinkFetcherStack(
        app, config.identifier, project_root=project_root, config=config, settings=read_settings(None)
    )


@pytest.fixture(scope="module")
def stack() -> LinkFetcherStack:
    return synth(DeployConfig(_env_file=None, map_concurrency=3, alarm_email="ops@example.org"))


@pytest.fixture(scope="module")
def template(stack: LinkFetcherStack) -> Template:
    return Template.from_stack(stack)


def resources(template: Template, kind: str) -> dict[str, dict]:
    return template.find_resources(kind)


def logical_id(stack: LinkFetcherStack, construct) -> str:
    return stack.get_logical_id(construct.node.default_child)


def policy_statements(template: Template, role_id: str) -> list[dict]:
    statements = []
    for policy in [
        *resources(template, "AWS::IAM::Policy").values(),
        *resources(template, "AWS::IAM::ManagedPolicy").values(),
    ]:
        roles = policy["Properties"].get("Roles", [])
        if {"Ref": role_id} in roles:
            statements.extend(policy["Properties"]["PolicyDocument"]["Statement"])
    return statements


def actions_of(statements: list[dict]) -> set[str]:
    found = set()
    for statement in statements:
        action = statement["Action"]
        found.update([action] if isinstance(action, str) else action)
    return found


def test_the_python_functions_share_two_layers(template: Template) -> None:
    functions = {
        key: value
        for key, value in resources(template, "AWS::Lambda::Function").items()
        if value["Properties"].get("Runtime", "").startswith("python")
    }
    assert len(functions) == 8
    assert {function["Properties"]["Runtime"] for function in functions.values()} == {"python3.13"}
    for layer in resources(template, "AWS::Lambda::LayerVersion").values():
        assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert len(resources(template, "AWS::Lambda::LayerVersion")) == 2
    for function in functions.values():
        assert function["Properties"]["Handler"] == "handler.handler"
        assert len(function["Properties"]["Layers"]) == 2
        assert function["Properties"]["VpcConfig"]["SubnetIds"]


def test_the_state_machine_maps_over_days_and_loops_until_completed(template: Template) -> None:
    (machine,) = resources(template, "AWS::StepFunctions::StateMachine").values()
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    definition = json.loads("".join(part if isinstance(part, str) else "arn" for part in parts))
    assert definition["StartAt"] == "GenerateDates"
    generate = definition["States"]["GenerateDates"]
    assert generate["Next"] == "FetchEachDayAndPlatform"
    each_day = definition["States"]["FetchEachDayAndPlatform"]
    assert each_day["Type"] == "Map"
    assert each_day["MaxConcurrency"] == 3
    assert each_day["ItemsPath"] == "$.query_dates_platforms"
    assert each_day["ItemSelector"] == {"query_date.$": "$$.Map.Item.Value[0]", "platform.$": "$$.Map.Item.Value[1]"}
    loop = each_day["ItemProcessor"]["States"]
    assert loop["FetchLinks"]["Next"] == "Completed?"
    assert loop["Completed?"]["Choices"] == [{"Variable": "$.completed", "BooleanEquals": True, "Next": "DayFetched"}]
    assert loop["Completed?"]["Default"] == "FetchLinks"
    # Then the same days' deletions, with the same loop (SPEC §9).
    assert each_day["Next"] == "FetchEachDeletionDay"
    deletion_days = definition["States"]["FetchEachDeletionDay"]
    assert (deletion_days["ItemsPath"], deletion_days["ItemSelector"]) == (
        "$.deletion_dates",
        {"deletion_date.$": "$$.Map.Item.Value"},
    )
    deletion_loop = deletion_days["ItemProcessor"]["States"]
    assert deletion_loop["DeletionsCompleted?"]["Default"] == "FetchDeletions"
    assert deletion_loop["FetchDeletions"]["Resource"] == loop["FetchLinks"]["Resource"]  # the same function
    for task in (generate, loop["FetchLinks"], deletion_loop["FetchDeletions"]):
        (retry,) = task["Retry"]
        assert retry["ErrorEquals"] == ["States.ALL"]
        assert retry["BackoffRate"] == 2
        assert retry["MaxAttempts"] >= 3
        assert retry["JitterStrategy"] == "FULL"


def test_the_daily_schedule_starts_the_state_machine_with_the_lookback_and_its_time(stack, template: Template) -> None:
    template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "ScheduleExpression": "cron(0 3 * * ? *)",
            "Targets": [
                Match.object_like(
                    {
                        "InputTransformer": {
                            "InputPathsMap": {"time": "$.time"},
                            "InputTemplate": '{"lookback_days":5,"now":<time>}',
                        }
                    }
                )
            ],
        },
    )


def test_a_day_failing_after_its_retries_is_counted_and_ends_only_its_iteration(template: Template) -> None:
    (machine,) = resources(template, "AWS::StepFunctions::StateMachine").values()
    parts = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    definition = json.loads("".join(part if isinstance(part, str) else "arn" for part in parts))
    for map_state, task, counter in (
        ("FetchEachDayAndPlatform", "FetchLinks", "DayUnfinished"),
        ("FetchEachDeletionDay", "FetchDeletions", "DeletionDayUnfinished"),
    ):
        states = definition["States"][map_state]["ItemProcessor"]["States"]
        (catch,) = states[task]["Catch"]
        assert (catch["ErrorEquals"], catch["Next"], catch["ResultPath"]) == (["States.ALL"], counter, "$.error")
        count = states[counter]
        assert count["Resource"].endswith(":states:::aws-sdk:cloudwatch:putMetricData")
        assert count["Parameters"]["Namespace"] == NAMESPACE
        (datum,) = count["Parameters"]["MetricData"]
        assert (datum["MetricName"], datum["Value"]) == (Metric.UNFINISHED_DAYS, 1)
        assert datum["Dimensions"] == [{"Name": "service", "Value": Service.FETCH}]
        assert states[count["Next"]]["Type"] == "Succeed"
        assert count["Catch"][0]["Next"] == count["Next"]  # counting never fails the Map
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {"MetricName": Metric.UNFINISHED_DAYS, "Namespace": NAMESPACE, "Threshold": 1, "Statistic": "Sum"},
    )


def test_the_push_api_throttles_post_events(template: Template) -> None:
    template.resource_count_is("AWS::ApiGateway::RestApi", 1)
    template.has_resource_properties("AWS::ApiGateway::Resource", {"PathPart": "events"})
    template.has_resource_properties(
        "AWS::ApiGateway::Method", {"HttpMethod": "POST", "Integration": Match.object_like({"Type": "AWS_PROXY"})}
    )
    template.has_resource_properties(
        "AWS::ApiGateway::Stage",
        {"MethodSettings": [Match.object_like({"ThrottlingRateLimit": 20, "ThrottlingBurstLimit": 40})]},
    )


def test_to_download_is_encrypted_with_a_dead_letter_queue(stack, template: Template) -> None:
    queues = resources(template, "AWS::SQS::Queue")
    assert len(queues) == 2
    assert all(queue["Properties"]["SqsManagedSseEnabled"] for queue in queues.values())
    (to_download,) = [queue for queue in queues.values() if "RedrivePolicy" in queue["Properties"]]
    assert to_download["Properties"]["RedrivePolicy"]["maxReceiveCount"] == 5
    # Well above the downloader's 15-minute timeout.
    assert to_download["Properties"]["VisibilityTimeout"] >= 6 * 900
    template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "BatchSize": 4,
            "ScalingConfig": {"MaximumConcurrency": 4},
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
        },
    )


def test_the_products_bucket_is_private_tls_only_and_drops_abandoned_uploads(template: Template) -> None:
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "BucketEncryption": Match.any_value(),
            "LifecycleConfiguration": {
                "Rules": [Match.object_like({"AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}})]
            },
        },
    )


def test_the_database_is_encrypted_private_and_admits_only_the_functions(stack, template: Template) -> None:
    (cluster,) = resources(template, "AWS::RDS::DBCluster").values()
    assert cluster["Properties"]["StorageEncrypted"] is True
    assert cluster["Properties"]["MasterUserPassword"]["Fn::Join"][1][0].startswith("{{resolve:secretsmanager:")
    for instance in resources(template, "AWS::RDS::DBInstance").values():
        assert instance["Properties"]["PubliclyAccessible"] is False
    (subnet_group,) = resources(template, "AWS::RDS::DBSubnetGroup").values()
    isolated = {key for key, value in resources(template, "AWS::EC2::Subnet").items() if any(
        tag == {"Key": "aws-cdk:subnet-type", "Value": "Isolated"} for tag in value["Properties"]["Tags"])}  # fmt: skip
    assert {ref["Ref"] for ref in subnet_group["Properties"]["SubnetIds"]} == isolated
    functions_group = logical_id(stack, stack.node.find_child("Network").functions_security_group)
    database_group = logical_id(stack, stack.node.find_child("Database").security_group)
    ingress = [
        rule["Properties"]
        for rule in resources(template, "AWS::EC2::SecurityGroupIngress").values()
        if rule["Properties"]["GroupId"] == {"Fn::GetAtt": [database_group, "GroupId"]}
    ]
    assert ingress
    assert all(rule["SourceSecurityGroupId"] == {"Fn::GetAtt": [functions_group, "GroupId"]} for rule in ingress)
    for group in resources(template, "AWS::EC2::SecurityGroup").values():
        for rule in group["Properties"].get("SecurityGroupIngress", []):
            assert rule.get("CidrIp") != "0.0.0.0/0"


def test_migrations_run_on_deploy_before_anything_records(stack, template: Template) -> None:
    (migration_id, migration) = next(iter(resources(template, "Custom::LinkFetcherMigration").items()))
    assert len(migration["Properties"]["MigrationsFingerprint"]) == 64
    for rule in resources(template, "AWS::Events::Rule").values():
        assert migration_id in rule["DependsOn"]


def test_secrets_and_iam_are_scoped_to_each_function(stack, template: Template) -> None:
    assert len(resources(template, "AWS::SecretsManager::Secret")) == 3
    functions = stack.functions
    role = {name: logical_id(stack, function.role) for name, function in functions.items()}
    downloader = policy_statements(template, role["downloader"])
    s3_actions = actions_of([s for s in downloader if any(a.startswith("s3:") for a in actions_of([s]))])
    assert s3_actions == {"s3:ListBucket", "s3:PutObject", "s3:AbortMultipartUpload", "s3:GetObject"}
    assert "sqs:SendMessage" not in actions_of(downloader)
    # The date generator reads the database (the days left unfinished), nothing else.
    date_generator = policy_statements(template, role["date_generator"])
    assert not any(action.startswith(("sqs:", "s3:")) for action in actions_of(date_generator))
    generator = resources(template, "AWS::Lambda::Function")[logical_id(stack, functions["date_generator"])]
    assert "DATABASE_SECRET_ARN" in generator["Properties"]["Environment"]["Variables"]
    assert "secretsmanager:GetSecretValue" in actions_of(date_generator)
    link_fetcher = policy_statements(template, role["link_fetcher"])
    assert "sqs:SendMessage" in actions_of(link_fetcher)
    assert not any(action.startswith("s3:") for action in actions_of(link_fetcher))
    push_secret = logical_id(stack, stack.node.find_child("PushCredentials").secret)
    readers = [name for name in role if any(
        s.get("Resource") == {"Ref": push_secret} for s in policy_statements(template, role[name]))]  # fmt: skip
    assert readers == ["link_subscription"]
    for statements in map(lambda name: policy_statements(template, role[name]), role):
        for statement in statements:
            assert "*" not in actions_of([statement])


def test_alarms_notify_the_encrypted_topic(template: Template) -> None:
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    # One Errors alarm per function, polling failures, push 5xx, dead letters, the backlog, failed deliveries and
    # freshness per source.
    assert len(alarms) == 8 + 5 + 3 + 1  # and unfinished days
    (topic_id, topic) = next(iter(resources(template, "AWS::SNS::Topic").items()))
    assert "KmsMasterKeyId" in topic["Properties"]
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic_id}]
        assert alarm["Properties"]["OKActions"] == [{"Ref": topic_id}]
    template.has_resource_properties("AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": "ops@example.org"})


def test_every_function_has_an_errors_alarm_and_its_own_service_name(stack, template: Template) -> None:
    alarms = resources(template, "AWS::CloudWatch::Alarm").values()
    errors = {
        alarm["Properties"]["Dimensions"][0]["Value"]["Ref"]
        for alarm in alarms
        if alarm["Properties"].get("MetricName") == "Errors"
        and alarm["Properties"]["Namespace"] == "AWS/Lambda"
        and alarm["Properties"]["Threshold"] == 1
    }
    assert errors == {logical_id(stack, function) for function in stack.functions.values()}
    assert set(FUNCTION_SERVICES) == {path.parent.name for path in LAMBDAS.glob("*/handler.py")}
    # The PULL subscription reader is deployed instead of the push endpoint only (DEPLOY_SUBSCRIPTION_MODE=pull).
    assert set(stack.functions) == set(FUNCTION_SERVICES) - {"subscription_puller"}
    for name, function in stack.functions.items():
        variables = resources(template, "AWS::Lambda::Function")[logical_id(stack, function)]["Properties"][
            "Environment"
        ]["Variables"]
        assert variables["POWERTOOLS_SERVICE_NAME"] == FUNCTION_SERVICES[name]
    assert len(set(FUNCTION_SERVICES.values())) == len(FUNCTION_SERVICES)


def relay_alarm(template: Template, metric: Metric) -> dict:
    (alarm,) = [
        alarm["Properties"]
        for alarm in resources(template, "AWS::CloudWatch::Alarm").values()
        if alarm["Properties"].get("MetricName") == metric
    ]
    assert alarm["Namespace"] == NAMESPACE
    assert alarm["Dimensions"] == [{"Name": "service", "Value": Service.RELAY}]
    return alarm


def test_a_silent_relay_or_a_failed_delivery_raises_an_alarm(template: Template) -> None:
    backlog = relay_alarm(template, Metric.OLDEST_PENDING_DELIVERY)
    # The relay runs every 5 minutes: two 5-minute periods without its metric (it crashed, or never ran) alarm.
    assert backlog["TreatMissingData"] == "breaching"
    assert (backlog["Period"], backlog["EvaluationPeriods"], backlog["Threshold"]) == (300, 2, 3600)
    failed = relay_alarm(template, Metric.FAILED_DELIVERIES)
    assert (failed["Threshold"], failed["ComparisonOperator"]) == (1, "GreaterThanOrEqualToThreshold")


def test_freshness_alarms_on_each_source_p95_above_the_objective() -> None:
    settings = read_settings(None, freshness_slo_seconds=1800)
    stack = LinkFetcherStack(
        cdk.App(context={"aws:cdk:bundling-stacks": []}),
        "fresh",
        project_root=PROJECT_ROOT,
        config=DeployConfig(_env_file=None),
        settings=settings,
    )
    alarms = [
        alarm["Properties"]
        for alarm in resources(Template.from_stack(stack), "AWS::CloudWatch::Alarm").values()
        if alarm["Properties"].get("MetricName") == Metric.FRESHNESS
    ]
    assert sorted(a["Dimensions"][0]["Value"] for a in alarms) == sorted(FRESHNESS_SOURCES)
    for alarm in alarms:
        assert alarm["Namespace"] == NAMESPACE and [d["Name"] for d in alarm["Dimensions"]] == ["source"]
        assert (alarm["ExtendedStatistic"], alarm["Period"], alarm["Threshold"]) == ("p95", 3600, 1800)
        assert alarm["TreatMissingData"] == "notBreaching"


def test_the_freshness_sources_are_the_granule_sources() -> None:
    assert set(FRESHNESS_SOURCES) == {fetch.SOURCE, decisions.SOURCE, items.SOURCE}


@pytest.mark.parametrize(
    ("schedule", "period"),
    [("rate(5 minutes)", 300), ("rate(1 minute)", 300), ("rate(20 minutes)", 1200), ("rate(2 hours)", 7200),
     ("rate(1 day)", 6 * 3600), ("cron(0/10 * * * ? *)", 3600)],
)  # fmt: skip
def test_the_relay_alarms_span_a_scheduled_run(schedule: str, period: int) -> None:
    assert relay_period(schedule).to_seconds() == period


def test_without_a_relay_schedule_a_silent_relay_is_not_an_alarm() -> None:
    template = Template.from_stack(synth(DeployConfig(_env_file=None, relay_schedule="off")))
    assert relay_alarm(template, Metric.OLDEST_PENDING_DELIVERY)["TreatMissingData"] == "missing"


def test_the_database_is_aurora_postgresql_17_on_the_default_minor(template: Template) -> None:
    (cluster,) = resources(template, "AWS::RDS::DBCluster").values()
    assert (cluster["Properties"]["Engine"], cluster["Properties"]["EngineVersion"]) == ("aurora-postgresql", "17")


def test_pull_mode_deploys_a_scheduled_reader_instead_of_the_push_endpoint() -> None:
    stack = synth(DeployConfig(_env_file=None, subscription_mode="pull", pull_schedule="rate(3 minutes)"))
    template = Template.from_stack(stack)
    template.resource_count_is("AWS::ApiGateway::RestApi", 0)
    assert "subscription_puller" in stack.functions
    puller = logical_id(stack, stack.functions["subscription_puller"])
    variables = resources(template, "AWS::Lambda::Function")[puller]["Properties"]["Environment"]["Variables"]
    assert {"CDSE_SECRET_ARN", "DATABASE_SECRET_ARN", "TO_DOWNLOAD_QUEUE_URL"} <= set(variables)
    (rule,) = [
        rule["Properties"]
        for rule in resources(template, "AWS::Events::Rule").values()
        if rule["Properties"].get("ScheduleExpression") == "rate(3 minutes)"
    ]
    assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": [puller, "Arn"]}
    assert AwsSolutionsChecks().validate_scope(stack).success


def test_cdk_nag_finds_nothing_unacknowledged(stack) -> None:
    report = AwsSolutionsChecks().validate_scope(stack)
    assert [violation.rule_name for violation in report.violations] == []
    assert report.success


def test_schedules_switch_off_and_stac_watches_get_one_rule_each(tmp_path: Path) -> None:
    for entry in ("layers", "lambdas", "Pipfile.lock"):
        (tmp_path / entry).symlink_to(PROJECT_ROOT / entry)
    (tmp_path / "watches.toml").write_text("# the watches\n")
    config = DeployConfig(
        _env_file=None, poll_schedule="off", relay_schedule="off", reconcile_schedule="OFF", stac_watches="a,b"
    )
    template = Template.from_stack(synth(config, tmp_path))
    rules = resources(template, "AWS::Events::Rule").values()
    assert sorted(json.loads(rule["Properties"]["Targets"][0]["Input"])["watch"] for rule in rules) == ["a", "b"]
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {"Environment": {"Variables": Match.object_like({"STAC_WATCHES_FILE": "/var/task/watches.toml"})}},
    )


def test_stac_watches_without_their_file_are_refused(tmp_path: Path) -> None:
    for entry in ("layers", "lambdas", "Pipfile.lock"):
        (tmp_path / entry).symlink_to(PROJECT_ROOT / entry)
    with pytest.raises(ValueError, match="STAC_WATCHES_FILE"):
        synth(DeployConfig(_env_file=None, stac_watches="a"), tmp_path)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("poll_schedule", "every day", "not an EventBridge schedule"),
        ("log_retention_days", 10, "CloudWatch Logs keeps logs"),
        ("identifier", "bad name!", "identifier"),
    ],
)
def test_bad_deploy_settings_are_refused(field: str, value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DeployConfig(_env_file=None, **{field: value})

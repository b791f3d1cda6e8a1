"""The month's cost (twin/cost.py, twin/prices.toml): measured usage scaled to a month and priced per component,
and the idle cost read from what a template deploys."""

from __future__ import annotations

import pytest

from twin.cost import (
    DatabaseFigures,
    FunctionFigures,
    MonthUsage,
    cost_json,
    cost_table,
    idle_cost,
    load_prices,
    month_cost,
    schedule_runs_per_month,
    total,
)

pytestmark = pytest.mark.unit

PRICES = load_prices()


def by_component(lines: list) -> dict[str, float]:
    return {line.component: line.monthly for line in lines}


def test_the_price_table_says_where_and_when_its_figures_come_from() -> None:
    source = PRICES["source"]
    assert source["region"] == "eu-central-1" and source["prices_as_of"] and source["written"]
    assert all(page.startswith("https://aws.amazon.com/") for page in source["pages"])
    assert PRICES["lambda"]["gb_second"] > 0 and PRICES["assumptions"]["product_mb"] > 0


def test_two_days_of_usage_are_priced_as_fifteen_times_as_much_in_a_month() -> None:
    usage = MonthUsage(
        days=2,
        functions={"relay": FunctionFigures(invocations=576, gb_seconds=100.0)},
        sqs_requests=2_000_000 / 15,
        api_gateway_requests=1_000_000 / 15,
        state_transitions=40_000 / 15,
    )
    lines = by_component(month_cost(usage, PRICES))
    lambda_prices = PRICES["lambda"]
    assert lines["Lambda relay"] == pytest.approx(
        576 * 15 / 1e6 * lambda_prices["requests_per_million"] + 1500 * lambda_prices["gb_second"]
    )
    assert lines["SQS"] == pytest.approx(2 * PRICES["sqs"]["standard_requests_per_million"])
    assert lines["API Gateway"] == pytest.approx(PRICES["api_gateway"]["rest_requests_per_million"])
    assert lines["Step Functions"] == pytest.approx(40 * PRICES["step_functions"]["transitions_per_thousand"])


def test_the_fetcher_is_billed_for_waiting_on_cdse_and_downloads_for_their_assumed_size() -> None:
    usage = MonthUsage(
        days=30,
        functions={"link_fetcher": FunctionFigures(invocations=100, gb_seconds=0.0, memory_mb=1024)},
        catalogue_requests=1000,
        downloads=2000,
    )
    lines = by_component(month_cost(usage, PRICES))
    assumptions = PRICES["assumptions"]
    assert lines["Lambda link_fetcher"] == pytest.approx(
        100 / 1e6 * PRICES["lambda"]["requests_per_million"]
        + 1000 * assumptions["cdse_page_seconds"] * PRICES["lambda"]["gb_second"]
    )
    gigabytes = 2000 * assumptions["product_mb"] / 1000
    assert lines["NAT gateway data"] == pytest.approx(gigabytes * PRICES["vpc"]["nat_gb_processed"])
    assert lines["S3"] == pytest.approx(gigabytes / 2 * PRICES["s3"]["standard_gb_month"])


def test_database_busy_time_and_writes_are_priced_as_aurora_capacity_and_io() -> None:
    usage = MonthUsage(
        days=30, functions={}, database=DatabaseFigures(transactions=10, busy_seconds=7200, rows_written=1_000_000)
    )
    lines = by_component(month_cost(usage, PRICES))
    aurora, assumptions = PRICES["aurora"], PRICES["assumptions"]
    assert lines["Aurora compute above minimum"] == pytest.approx(
        2 * assumptions["busy_extra_acu"] * aurora["acu_hour"]
    )
    assert lines["Aurora I/O and storage"] == pytest.approx(
        assumptions["io_per_row_written"] * aurora["io_per_million"]
    )


def test_custom_metrics_the_alarms_read_are_billed_once() -> None:
    usage = MonthUsage(days=30, functions={}, custom_metrics=7)
    assert by_component(month_cost(usage, PRICES, idle_metrics=5))["CloudWatch metrics"] == pytest.approx(
        2 * PRICES["cloudwatch"]["custom_metric_month"]
    )


TEMPLATE = {
    "Resources": {
        "Nat": {"Type": "AWS::EC2::NatGateway", "Properties": {}},
        "Ip": {"Type": "AWS::EC2::EIP", "Properties": {}},
        "Db": {
            "Type": "AWS::RDS::DBCluster",
            "Properties": {"ServerlessV2ScalingConfiguration": {"MinCapacity": 0.5, "MaxCapacity": 2}},
        },
        "S1": {"Type": "AWS::SecretsManager::Secret", "Properties": {}},
        "S2": {"Type": "AWS::SecretsManager::Secret", "Properties": {}},
        "Key": {"Type": "AWS::KMS::Key", "Properties": {}},
        "A1": {"Type": "AWS::CloudWatch::Alarm", "Properties": {"Namespace": "LinkFetcher", "MetricName": "M"}},
        "A2": {"Type": "AWS::CloudWatch::Alarm", "Properties": {"Namespace": "AWS/Lambda", "MetricName": "Errors"}},
        "Esm": {"Type": "AWS::Lambda::EventSourceMapping", "Properties": {}},
        "Relay": {"Type": "AWS::Events::Rule", "Properties": {"ScheduleExpression": "rate(5 minutes)"}},
    }
}


def test_the_idle_cost_is_what_the_template_deploys() -> None:
    lines = by_component(idle_cost(TEMPLATE, PRICES))
    hours, vpc = PRICES["assumptions"]["hours_per_month"], PRICES["vpc"]
    assert lines["NAT gateway"] == pytest.approx(hours * (vpc["nat_gateway_hour"] + vpc["public_ipv4_hour"]))
    assert lines["Aurora Serverless v2 minimum"] == pytest.approx(
        0.5 * hours * PRICES["aurora"]["acu_hour"]
        + PRICES["assumptions"]["idle_database_gb"] * PRICES["aurora"]["storage_gb_month"]
    )
    assert lines["Secrets Manager"] == pytest.approx(2 * PRICES["secrets_manager"]["secret_month"])
    assert lines["KMS"] == pytest.approx(PRICES["kms"]["key_month"])
    cloudwatch = PRICES["cloudwatch"]
    assert lines["CloudWatch alarms and metrics"] == pytest.approx(
        2 * cloudwatch["alarm_month"] + cloudwatch["custom_metric_month"]
    )
    assert lines["SQS event source polling"] > 0
    assert by_component(idle_cost({"Resources": {}}, PRICES))["NAT gateway"] == 0


def test_schedules_fire_as_their_expressions_say() -> None:
    assert schedule_runs_per_month("rate(5 minutes)") == 8640
    assert schedule_runs_per_month("rate(1 hour)") == 720
    assert schedule_runs_per_month("rate(2 days)") == 15
    assert schedule_runs_per_month("cron(0 3 * * ? *)") == 30


def test_the_table_and_json_add_up() -> None:
    usage = MonthUsage(days=30, functions={"relay": FunctionFigures(8640, 2000.0)})
    month, idle = month_cost(usage, PRICES), idle_cost(TEMPLATE, PRICES)
    table = cost_table(month, idle, PRICES)
    assert "eu-central-1" in table and f"{total(idle) + total(month):,.2f}" in table
    figures = cost_json(month, idle, PRICES)
    assert figures["total"] == pytest.approx(figures["idle_total"] + figures["month_total"])

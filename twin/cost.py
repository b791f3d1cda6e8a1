"""The month's cost: what the twin measured (Twin.usage(), the database's work, the bytes the functions logged) turned
into a monthly estimate per AWS component by twin/prices.toml, plus what the default stack costs doing nothing
(read from the synthesized template: NAT gateways, Aurora's minimum capacity, secrets, keys, alarms, schedules).

Measured figures cover `days` simulated days and are scaled to a 30-day month. What the twin cannot measure is an
assumption of prices.toml, named where it is used.
"""

from __future__ import annotations

import dataclasses
import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

PRICES = Path(__file__).with_name("prices.toml")
MONTH_DAYS = 30
_RATE = re.compile(r"^rate\((?P<count>\d+) (?P<unit>minute|minutes|hour|hours|day|days)\)$")
_UNIT_MINUTES = {"minute": 1, "hour": 60, "day": 1440}


def load_prices(path: Path = PRICES) -> dict[str, Any]:
    with path.open("rb") as file:
        return tomllib.load(file)


@dataclasses.dataclass(frozen=True)
class FunctionFigures:
    invocations: int
    gb_seconds: float
    memory_mb: int = 512


@dataclasses.dataclass(frozen=True)
class DatabaseFigures:
    transactions: int = 0  # commits and rollbacks (pg_stat_database)
    busy_seconds: float = 0.0  # time spent executing statements (pg_stat_database.active_time)
    rows_written: int = 0  # inserted + updated + deleted
    blocks_read: int = 0
    size_bytes: int = 0


@dataclasses.dataclass(frozen=True)
class MonthUsage:
    """What the twin measured over `days` simulated days."""

    days: float
    functions: Mapping[str, FunctionFigures]
    sqs_requests: int = 0
    secrets_requests: int = 0
    cloudwatch_requests: int = 0
    s3_requests: int = 0
    api_gateway_requests: int = 0
    state_transitions: int = 0
    catalogue_requests: int = 0  # CDSE search requests (each waited for by link_fetcher)
    downloads: int = 0  # products the downloader stored
    log_bytes: int = 0  # what the functions printed (CloudWatch Logs ingestion)
    custom_metrics: int = 0  # distinct metric + dimensions the functions published
    database: DatabaseFigures = dataclasses.field(default_factory=DatabaseFigures)


@dataclasses.dataclass(frozen=True)
class CostLine:
    component: str
    usage: str  # what is billed, a month of it
    monthly: float  # USD


def _per_month(usage: MonthUsage, value: float) -> float:
    return value * MONTH_DAYS / usage.days if usage.days > 0 else 0.0


def month_cost(usage: MonthUsage, prices: Mapping[str, Any], *, idle_metrics: int = 0) -> list[CostLine]:
    """The variable cost of the month's work, per component (the idle cost is `idle_cost`, which bills
    `idle_metrics` custom metrics already)."""
    p, a = prices, prices["assumptions"]

    def month(value: float) -> float:
        return _per_month(usage, value)

    lines: list[CostLine] = []
    cdse_wait = (
        usage.catalogue_requests
        * a["cdse_page_seconds"]
        * usage.functions.get("link_fetcher", FunctionFigures(0, 0.0)).memory_mb
        / 1024
    )
    for name, figures in sorted(usage.functions.items()):
        gb_seconds = figures.gb_seconds + (cdse_wait if name == "link_fetcher" else 0.0)
        invocations, gb_month = month(figures.invocations), month(gb_seconds)
        cost = invocations / 1e6 * p["lambda"]["requests_per_million"] + gb_month * p["lambda"]["gb_second"]
        waited = name == "link_fetcher" and cdse_wait
        extra = f" (incl. {month(cdse_wait):,.0f} GB-s waiting for CDSE)" if waited else ""
        lines.append(CostLine(f"Lambda {name}", f"{invocations:,.0f} invocations, {gb_month:,.0f} GB-s{extra}", cost))
    transitions = month(usage.state_transitions)
    lines.append(
        CostLine(
            "Step Functions",
            f"{transitions:,.0f} state transitions",
            transitions / 1000 * p["step_functions"]["transitions_per_thousand"],
        )
    )
    sqs = month(usage.sqs_requests)
    lines.append(CostLine("SQS", f"{sqs:,.0f} requests", sqs / 1e6 * p["sqs"]["standard_requests_per_million"]))
    secrets = month(usage.secrets_requests)
    lines.append(
        CostLine("Secrets Manager API", f"{secrets:,.0f} calls", secrets / 1e4 * p["secrets_manager"]["calls_per_10k"])
    )
    api = month(usage.api_gateway_requests)
    lines.append(
        CostLine("API Gateway", f"{api:,.0f} requests", api / 1e6 * p["api_gateway"]["rest_requests_per_million"])
    )
    lines += _logs_and_metrics(usage, p, idle_metrics)
    lines += _database(usage, p)
    lines += _transfer_and_storage(usage, p)
    return lines


def _logs_and_metrics(usage: MonthUsage, p: Mapping[str, Any], idle_metrics: int) -> list[CostLine]:
    a, cw = p["assumptions"], p["cloudwatch"]
    log_gb = _per_month(usage, usage.log_bytes + usage.state_transitions * a["log_bytes_per_transition"]) / 1e9
    requests = _per_month(usage, usage.cloudwatch_requests)
    invocations = _per_month(usage, sum(f.invocations for f in usage.functions.values()))
    metrics = max(0, usage.custom_metrics - idle_metrics)
    return [
        CostLine(
            "CloudWatch Logs",
            f"{log_gb:,.2f} GB ingested (functions' output, state machine log), kept 30 days",
            log_gb * (cw["logs_ingested_gb"] + cw["logs_stored_gb_month"]),
        ),
        CostLine(
            "CloudWatch metrics",
            f"{metrics} custom metrics besides the alarms' ({usage.custom_metrics} published), "
            f"{requests:,.0f} API requests",
            metrics * cw["custom_metric_month"] + requests / 1000 * cw["requests_per_thousand"],
        ),
        CostLine(
            "X-Ray",
            f"{invocations:,.0f} traces (active tracing: every invocation)",
            invocations / 1e6 * p["xray"]["traces_per_million"],
        ),
    ]


def _database(usage: MonthUsage, p: Mapping[str, Any]) -> list[CostLine]:
    a, aurora, db = p["assumptions"], p["aurora"], usage.database
    busy_hours = _per_month(usage, db.busy_seconds) / 3600
    ios = _per_month(usage, db.rows_written * a["io_per_row_written"] + db.blocks_read)
    size_gb = db.size_bytes / 1e9
    return [
        CostLine(
            "Aurora compute above minimum",
            f"{busy_hours:,.1f} busy hours at +{a['busy_extra_acu']} ACU "
            f"({_per_month(usage, db.transactions):,.0f} transactions)",
            busy_hours * a["busy_extra_acu"] * aurora["acu_hour"],
        ),
        CostLine(
            "Aurora I/O and storage",
            f"{ios / 1e6:,.1f} M I/O, {size_gb:,.2f} GB",
            ios / 1e6 * aurora["io_per_million"] + size_gb * aurora["storage_gb_month"],
        ),
    ]


def _transfer_and_storage(usage: MonthUsage, p: Mapping[str, Any]) -> list[CostLine]:
    a = p["assumptions"]
    downloads = _per_month(usage, usage.downloads)
    gb = downloads * a["product_mb"] / 1000
    s3_requests = _per_month(usage, usage.s3_requests)
    # A month's products, stored half the month on average (the first month of a bucket that keeps growing).
    return [
        CostLine(
            "NAT gateway data",
            f"{gb:,.0f} GB of products from CDSE ({downloads:,.0f} x {a['product_mb']} MB, assumed size)",
            gb * p["vpc"]["nat_gb_processed"],
        ),
        CostLine(
            "S3",
            f"{gb / 2:,.0f} GB-month stored, {s3_requests:,.0f} requests",
            gb / 2 * p["s3"]["standard_gb_month"] + s3_requests / 1000 * p["s3"]["put_per_thousand"],
        ),
    ]


def schedule_runs_per_month(expression: str) -> float:
    """How often an EventBridge schedule fires in a 30-day month (a cron: once a day, as the stack's polling is)."""
    if match := _RATE.match(expression):
        minutes = int(match["count"]) * _UNIT_MINUTES[match["unit"].rstrip("s")]
        return MONTH_DAYS * 1440 / minutes
    return float(MONTH_DAYS)


def alarmed_metrics(template: Mapping[str, Any]) -> int:
    """The custom metrics (namespace, name, dimensions) the template's alarms read."""
    alarms = [r.get("Properties", {}) for r in template.get("Resources", {}).values()]
    return len(
        {
            (alarm.get("Namespace"), alarm.get("MetricName"), json.dumps(alarm.get("Dimensions"), sort_keys=True))
            for alarm, resource in zip(alarms, template.get("Resources", {}).values(), strict=True)
            if resource.get("Type") == "AWS::CloudWatch::Alarm"
            and alarm.get("Namespace")
            and not str(alarm.get("Namespace")).startswith("AWS/")
        }
    )


def idle_cost(template: Mapping[str, Any], prices: Mapping[str, Any]) -> list[CostLine]:
    """What the stack costs with no product at all, from what the template deploys."""
    p, a = prices, prices["assumptions"]
    resources = template.get("Resources", {})

    def of_type(kind: str) -> list[Mapping[str, Any]]:
        return [r.get("Properties", {}) for r in resources.values() if r.get("Type") == kind]

    hours = a["hours_per_month"]
    nat, ips = len(of_type("AWS::EC2::NatGateway")), len(of_type("AWS::EC2::EIP"))
    scaling = [c.get("ServerlessV2ScalingConfiguration", {}) for c in of_type("AWS::RDS::DBCluster")]
    min_acu = sum(config.get("MinCapacity", 0) for config in scaling)
    secrets, keys = len(of_type("AWS::SecretsManager::Secret")), len(of_type("AWS::KMS::Key"))
    alarms, custom = of_type("AWS::CloudWatch::Alarm"), alarmed_metrics(template)
    schedules = [
        (rule["ScheduleExpression"], schedule_runs_per_month(rule["ScheduleExpression"]))
        for rule in of_type("AWS::Events::Rule")
        if "ScheduleExpression" in rule
    ]
    pollers = len(of_type("AWS::Lambda::EventSourceMapping")) * a["esm_pollers"]
    receives = pollers * MONTH_DAYS * 86400 / a["esm_poll_seconds"]
    return [
        CostLine(
            "NAT gateway",
            f"{nat} x {hours} h, {ips} public IPv4 address(es)",
            nat * hours * p["vpc"]["nat_gateway_hour"] + ips * hours * p["vpc"]["public_ipv4_hour"],
        ),
        CostLine(
            "Aurora Serverless v2 minimum",
            f"{min_acu} ACU x {hours} h, {a['idle_database_gb']} GB",
            min_acu * hours * p["aurora"]["acu_hour"] + a["idle_database_gb"] * p["aurora"]["storage_gb_month"],
        ),
        CostLine("Secrets Manager", f"{secrets} secrets", secrets * p["secrets_manager"]["secret_month"]),
        CostLine("KMS", f"{keys} customer managed key(s)", keys * p["kms"]["key_month"]),
        CostLine(
            "CloudWatch alarms and metrics",
            f"{len(alarms)} alarms, {custom} custom metrics they read",
            len(alarms) * p["cloudwatch"]["alarm_month"] + custom * p["cloudwatch"]["custom_metric_month"],
        ),
        CostLine(
            "SQS event source polling",
            f"{receives:,.0f} empty ReceiveMessage calls ({a['esm_pollers']} pollers, {a['esm_poll_seconds']} s waits)",
            receives / 1e6 * p["sqs"]["standard_requests_per_million"],
        ),
        CostLine(
            "Schedules",
            ", ".join(f"{expression}: {runs:,.0f} runs" for expression, runs in schedules)
            + " (their work is in the month's figures)",
            0.0,
        ),
    ]


def total(lines: Sequence[CostLine]) -> float:
    return sum(line.monthly for line in lines)


def cost_table(month: Sequence[CostLine], idle: Sequence[CostLine], prices: Mapping[str, Any]) -> str:
    source = prices["source"]
    width = max(len(line.component) for line in (*month, *idle))
    usage_width = max(len(line.usage) for line in (*month, *idle))
    rule = "-" * (width + usage_width + 16)

    def rows(lines: Sequence[CostLine]) -> list[str]:
        return [f"{line.component:<{width}}  {line.usage:<{usage_width}}  {line.monthly:>10,.2f}" for line in lines]

    return "\n".join(
        [
            f"monthly cost, USD, {source['region']}, prices as of {source['prices_as_of']} (twin/prices.toml)",
            rule,
            "idle: the default stack with nothing to do",
            *rows(idle),
            f"{'idle total':<{width + usage_width + 2}}  {total(idle):>10,.2f}",
            rule,
            "the month's work",
            *rows(month),
            f"{'work total':<{width + usage_width + 2}}  {total(month):>10,.2f}",
            rule,
            f"{'month total':<{width + usage_width + 2}}  {total(idle) + total(month):>10,.2f}",
        ]
    )


def cost_json(month: Sequence[CostLine], idle: Sequence[CostLine], prices: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "prices": prices["source"],
        "idle": [dataclasses.asdict(line) for line in idle],
        "month": [dataclasses.asdict(line) for line in month],
        "idle_total": total(idle),
        "month_total": total(month),
        "total": total(idle) + total(month),
    }

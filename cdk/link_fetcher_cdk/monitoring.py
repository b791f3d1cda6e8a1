"""Operations: alarms on function errors, fetcher failures, push 5xx, dead letters, the oldest pending delivery and
failed deliveries, each sent to an encrypted SNS topic (and an e-mail address when configured). Metric names, the
namespace and the service names come from `link_fetcher.observability`, which the handlers publish with."""

from __future__ import annotations

import re

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from link_fetcher.observability import FRESHNESS_SOURCES, NAMESPACE, Metric, Service

from .config import DeployConfig

OLDEST_PENDING_LIMIT = Duration.hours(1)
FRESHNESS_PERIOD = Duration.hours(1)
PERIOD = Duration.minutes(5)
# Bounds of the relay alarms' period, which must span at least one scheduled relay run.
RELAY_PERIOD_MAX = Duration.hours(6)
CRON_RELAY_PERIOD = Duration.hours(1)
_RATE = re.compile(r"^rate\((\d+) (minute|hour|day)s?\)$")


def relay_period(schedule: str | None) -> Duration:
    """A period in which the scheduled relay publishes at least once: its rate (5 minutes at least, whole
    minutes, 6 hours at most), an hour for a cron schedule."""
    match = _RATE.match(schedule or "")
    if match is None:
        return CRON_RELAY_PERIOD
    count, unit = int(match.group(1)), match.group(2)
    minutes = count * {"minute": 1, "hour": 60, "day": 1440}[unit]
    return Duration.minutes(min(max(minutes, int(PERIOD.to_minutes())), int(RELAY_PERIOD_MAX.to_minutes())))


class Monitoring(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeployConfig) -> None:
        super().__init__(scope, construct_id)
        # CloudWatch cannot publish to a topic encrypted with the AWS-managed SNS key, hence a key of our own.
        key = kms.Key(self, "AlarmTopicKey", enable_key_rotation=True, description="link-fetcher alarm topic")
        key.grant_encrypt_decrypt(iam.ServicePrincipal("cloudwatch.amazonaws.com"))
        self.topic = sns.Topic(self, "AlarmTopic", master_key=key, enforce_ssl=True)
        if config.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))
        self._action = actions.SnsAction(self.topic)

    def _alarm(
        self,
        construct_id: str,
        metric: cloudwatch.IMetric,
        threshold: float,
        description: str,
        *,
        missing: cloudwatch.TreatMissingData = cloudwatch.TreatMissingData.NOT_BREACHING,
        evaluation_periods: int = 1,
    ) -> cloudwatch.Alarm:
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            evaluation_periods=evaluation_periods,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=missing,
        )
        alarm.add_alarm_action(self._action)
        alarm.add_ok_action(self._action)
        return alarm

    def watch_functions(self, functions: dict[str, lambda_.IFunction]) -> None:
        """An alarm per function ({construct id: function}) on any invocation ending in an error."""
        for construct_id, function in functions.items():
            errors = function.metric_errors(period=PERIOD, statistic="Sum")
            self._alarm(f"{construct_id}Errors", errors, 1, f"The {construct_id} function failed")

    def watch_polling(self, state_machine: sfn.StateMachine) -> None:
        failures = cloudwatch.MathExpression(
            expression="failed + timedOut",
            using_metrics={
                "failed": state_machine.metric_failed(period=PERIOD, statistic="Sum"),
                "timedOut": state_machine.metric_timed_out(period=PERIOD, statistic="Sum"),
            },
            period=PERIOD,
            label="failed polling executions",
        )
        self._alarm("FetcherFailures", failures, 1, "A polling execution failed or timed out")

    def watch_unfinished_days(self) -> None:
        """An alarm when a (day, platform) or deletion day failed after its retries: the state machine counts it in
        UnfinishedDays, finishes the other days and the deletions, and the next schedule offers it again."""
        unfinished = cloudwatch.Metric(
            namespace=NAMESPACE,
            metric_name=Metric.UNFINISHED_DAYS,
            dimensions_map={"service": Service.FETCH},
            period=PERIOD,
            statistic="Sum",
        )
        self._alarm(
            "UnfinishedDays",
            unfinished,
            1,
            "A day of polling failed after its retries (CDSE kept failing on it): the next schedule retries it",
        )

    def watch_push(self, api: apigw.RestApi) -> None:
        server_errors = api.metric_server_error(period=PERIOD, statistic="Sum")
        self._alarm("PushServerErrors", server_errors, 1, "The push endpoint answered 5xx")

    def watch_dead_letters(self, dead_letter_queue: sqs.IQueue) -> None:
        waiting = dead_letter_queue.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum")
        self._alarm(
            "DeadLetters", waiting, 1, "To Download messages failed repeatedly and wait in the dead-letter queue"
        )

    def watch_deliveries(self, relay_schedule: str | None) -> None:
        """The relay's metrics: the oldest pending delivery (no data = the relay did not run or crashed before
        publishing, which counts as breaching while a relay is scheduled) and deliveries that ended `failed`."""
        period = relay_period(relay_schedule)

        def relay_metric(name: Metric) -> cloudwatch.Metric:
            return cloudwatch.Metric(
                namespace=NAMESPACE,
                metric_name=name,
                dimensions_map={"service": Service.RELAY},
                period=period,
                statistic="Maximum",
            )

        self._alarm(
            "OldestPendingDelivery",
            relay_metric(Metric.OLDEST_PENDING_DELIVERY),
            OLDEST_PENDING_LIMIT.to_seconds(),
            f"A delivery has been pending for over {OLDEST_PENDING_LIMIT.to_human_string()} (a sink is down), or "
            "the scheduled relay has not reported",
            missing=cloudwatch.TreatMissingData.BREACHING if relay_schedule else cloudwatch.TreatMissingData.MISSING,
            # Two periods: one relay run starting late is not an outage.
            evaluation_periods=2,
        )
        self._alarm(
            "FailedDeliveries",
            relay_metric(Metric.FAILED_DELIVERIES),
            1,
            "A delivery ran out of attempts and ended failed: fix the sink, then invoke the relay with "
            '{"retry_failed": true}',
        )

    def watch_freshness(self, slo_seconds: int) -> None:
        """An alarm per granule source when the p95 of FreshnessSeconds (publication to first delivery, published
        by every function that delivers) over an hour reaches FRESHNESS_SLO_SECONDS. An hour with no delivery says
        nothing about freshness (the oldest pending delivery alarm covers a stuck relay)."""
        for source in FRESHNESS_SOURCES:
            p95 = cloudwatch.Metric(
                namespace=NAMESPACE,
                metric_name=Metric.FRESHNESS,
                dimensions_map={"source": source},
                period=FRESHNESS_PERIOD,
                statistic="p95",
            )
            self._alarm(
                f"Freshness{source.capitalize()}",
                p95,
                slo_seconds,
                f"p95 freshness of {source} granules (publication to first delivery) over "
                f"{FRESHNESS_PERIOD.to_human_string()} is above FRESHNESS_SLO_SECONDS ({slo_seconds} s)",
            )

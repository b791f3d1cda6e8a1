"""Operations: alarms on fetcher failures, push 5xx, dead letters and the oldest pending delivery, sent to an
encrypted SNS topic (and an e-mail address when configured)."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from .config import DeployConfig

# Published by the relay function (CloudWatch embedded metrics): age of the oldest delivery still pending.
METRICS_NAMESPACE = "LinkFetcher"
OLDEST_PENDING_METRIC = "OldestPendingDeliverySeconds"
OLDEST_PENDING_LIMIT = Duration.hours(1)
PERIOD = Duration.minutes(5)


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

    def _alarm(self, construct_id: str, metric: cloudwatch.IMetric, threshold: float, description: str) -> None:
        alarm = cloudwatch.Alarm(
            self,
            construct_id,
            alarm_description=description,
            metric=metric,
            threshold=threshold,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        alarm.add_alarm_action(self._action)
        alarm.add_ok_action(self._action)

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

    def watch_push(self, api: apigw.RestApi) -> None:
        server_errors = api.metric_server_error(period=PERIOD, statistic="Sum")
        self._alarm("PushServerErrors", server_errors, 1, "The push endpoint answered 5xx")

    def watch_dead_letters(self, dead_letter_queue: sqs.IQueue) -> None:
        waiting = dead_letter_queue.metric_approximate_number_of_messages_visible(period=PERIOD, statistic="Maximum")
        self._alarm(
            "DeadLetters", waiting, 1, "To Download messages failed repeatedly and wait in the dead-letter queue"
        )

    def watch_pending_deliveries(self, relay_service: str) -> None:
        oldest = cloudwatch.Metric(
            namespace=METRICS_NAMESPACE,
            metric_name=OLDEST_PENDING_METRIC,
            dimensions_map={"service": relay_service},
            period=PERIOD,
            statistic="Maximum",
        )
        self._alarm(
            "OldestPendingDelivery",
            oldest,
            OLDEST_PENDING_LIMIT.to_seconds(),
            f"A delivery has been pending for over {OLDEST_PENDING_LIMIT.to_human_string()} (a sink is down)",
        )

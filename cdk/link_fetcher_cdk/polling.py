"""Polling: date generator → Map over (day, platform) → fetch loop until `completed`, then Map over the same days'
deletions (the fetcher with {"deletion_date"}) → loop until `completed`; a daily schedule; backfills by starting an
execution with {"now", "lookback_days"}.

A day that still fails after its retries ends its own iteration only: it is counted (LinkFetcher/UnfinishedDays,
alarmed), the other days and the deletions go on, and the next schedule offers it again (the date generator reads
the progress tables)."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from link_fetcher.observability import NAMESPACE, Metric, Service

from .config import DeployConfig
from .nag import acknowledge, arn_of


def retry_with_backoff(task: tasks.LambdaInvoke) -> tasks.LambdaInvoke:
    """Retries on any Lambda error (throttling, timeout, CDSE or the database unwell) with jittered backoff:
    a fetch resumes from its saved cursor, so repeating one is safe."""
    task.add_retry(
        errors=[sfn.Errors.ALL],
        interval=Duration.seconds(20),
        backoff_rate=2,
        max_attempts=5,
        max_delay=Duration.minutes(5),
        jitter_strategy=sfn.JitterType.FULL,
    )
    return task


class Polling(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeployConfig,
        date_generator: lambda_.IFunction,
        link_fetcher: lambda_.IFunction,
    ) -> None:
        super().__init__(scope, construct_id)
        generate_dates = retry_with_backoff(
            tasks.LambdaInvoke(
                self,
                "GenerateDates",
                lambda_function=date_generator,
                payload_response_only=True,
                retry_on_service_exceptions=False,
            )
        )
        fetch_each_day = self.each_until_completed(
            "FetchEachDayAndPlatform",
            items_path="$.query_dates_platforms",
            item_selector={"query_date.$": "$$.Map.Item.Value[0]", "platform.$": "$$.Map.Item.Value[1]"},
            step_ids=("FetchLinks", "Completed?", "DayFetched", "DayUnfinished"),
            function=link_fetcher,
            max_concurrency=config.map_concurrency,
        )
        # Then the deletions CDSE published on those days (SPEC §9), read and resumed the same way.
        fetch_each_deletion_day = self.each_until_completed(
            "FetchEachDeletionDay",
            items_path="$.deletion_dates",
            item_selector={"deletion_date.$": "$$.Map.Item.Value"},
            step_ids=("FetchDeletions", "DeletionsCompleted?", "DeletionDayFetched", "DeletionDayUnfinished"),
            function=link_fetcher,
            max_concurrency=config.map_concurrency,
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            definition_body=sfn.DefinitionBody.from_chainable(
                generate_dates.next(fetch_each_day).next(fetch_each_deletion_day)
            ),
            timeout=Duration.hours(12),
            tracing_enabled=True,
            logs=sfn.LogOptions(
                destination=logs.LogGroup(self, "StateMachineLogs", retention=config.retention),
                level=sfn.LogLevel.ALL,
            ),
        )
        acknowledge(
            self.state_machine,
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray tracing, CloudWatch Logs delivery and PutMetricData (UnfinishedDays) take no resource ARN",
        )
        for function in (date_generator, link_fetcher):
            acknowledge(
                self.state_machine,
                f"AwsSolutions-IAM5[Resource::{arn_of(function)}:*]",
                "The state machine may invoke this function and its versions",
            )
        self.schedule = None
        if config.poll_schedule:
            self.schedule = events.Rule(
                self,
                "Schedule",
                description="Poll CDSE for the last days' granules",
                schedule=events.Schedule.expression(config.poll_schedule),
                targets=[
                    targets.SfnStateMachine(
                        self.state_machine,
                        # The schedule's own time as `now`: the days polled are those of the scheduled run,
                        # however late the execution starts.
                        input=events.RuleTargetInput.from_object(
                            {"lookback_days": config.lookback_days, "now": events.EventField.time}
                        ),
                    )
                ],
            )

    def each_until_completed(
        self,
        map_id: str,
        *,
        items_path: str,
        item_selector: dict[str, str],
        step_ids: tuple[str, str, str, str],
        function: lambda_.IFunction,
        max_concurrency: int,
    ) -> sfn.Map:
        """A Map over `items_path` invoking `function` for each item until it answers completed=true: it answers
        false when it stopped early to beat its timeout, and resumes from its saved cursor when called again.
        An item that still fails after the retries is counted in UnfinishedDays and ends its iteration, so the
        Map (and the execution) goes on. `step_ids`: the ids of the invocation, the choice, the success state and
        the count of an unfinished item."""
        invoke_id, choice_id, done_id, unfinished_id = step_ids
        invoke = retry_with_backoff(
            tasks.LambdaInvoke(
                self, invoke_id, lambda_function=function, payload_response_only=True, retry_on_service_exceptions=False
            )
        )
        invoke.add_catch(self.count_unfinished(unfinished_id), errors=[sfn.Errors.ALL], result_path="$.error")
        invoke.next(
            sfn.Choice(self, choice_id)
            .when(sfn.Condition.boolean_equals("$.completed", True), sfn.Succeed(self, done_id))
            .otherwise(invoke)
        )
        each = sfn.Map(
            self,
            map_id,
            items_path=items_path,
            item_selector=item_selector,
            max_concurrency=max_concurrency,
            result_path=sfn.JsonPath.DISCARD,
        )
        each.item_processor(invoke)
        return each

    def count_unfinished(self, construct_id: str) -> tasks.CallAwsService:
        """PutMetricData UnfinishedDays = 1, then the iteration ends (the next schedule retries the day)."""
        left_unfinished = sfn.Succeed(self, f"{construct_id}Left", comment="retried by the next schedule")
        count = tasks.CallAwsService(
            self,
            construct_id,
            service="cloudwatch",
            action="putMetricData",
            parameters={
                "Namespace": NAMESPACE,
                "MetricData": [
                    {
                        "MetricName": Metric.UNFINISHED_DAYS.value,
                        "Dimensions": [{"Name": "service", "Value": Service.FETCH.value}],
                        "Unit": "Count",
                        "Value": 1,
                    }
                ],
            },
            iam_resources=["*"],
            iam_action="cloudwatch:PutMetricData",
            result_path=sfn.JsonPath.DISCARD,
        )
        # Counting is best effort: a CloudWatch error must not fail the Map it protects.
        count.add_catch(left_unfinished, errors=[sfn.Errors.ALL], result_path=sfn.JsonPath.DISCARD)
        count.next(left_unfinished)
        return count

"""Delivery: the encrypted SQS "To Download" queue and its dead-letter queue, the products bucket, and the
scheduled functions (relay, reconcile, STAC watches)."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from .config import DeployConfig
from .database import REMOVAL_POLICIES
from .nag import acknowledge, arn_of

DOWNLOADER_TIMEOUT = Duration.minutes(15)
# A message stays invisible this long once received: six times the downloader's timeout (AWS's advice for Lambda
# event sources), so a slow download never sees its message handed to a second downloader.
QUEUE_VISIBILITY_TIMEOUT = Duration.minutes(6 * 15)
MAX_RECEIVES = 5


class Delivery(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeployConfig) -> None:
        super().__init__(scope, construct_id)
        self.dead_letter_queue = self._queue("ToDownloadDeadLetters")
        self.queue = self._queue(
            "ToDownload",
            visibility_timeout=QUEUE_VISIBILITY_TIMEOUT,
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=MAX_RECEIVES, queue=self.dead_letter_queue),
        )
        destroy = config.removal_policy == "destroy"
        self.bucket = s3.Bucket(
            self,
            "Products",
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            removal_policy=REMOVAL_POLICIES["destroy" if destroy else "retain"],
            auto_delete_objects=destroy,
            # A downloader killed mid-product leaves its multipart upload behind: its parts are not free.
            lifecycle_rules=[s3.LifecycleRule(abort_incomplete_multipart_upload_after=Duration.days(1))],
        )
        acknowledge(
            self.bucket,
            "AwsSolutions-S1",
            "Only the downloader writes here; CloudTrail data events give an audit trail when one is wanted",
        )

    def _queue(
        self,
        construct_id: str,
        *,
        visibility_timeout: Duration | None = None,
        dead_letter_queue: sqs.DeadLetterQueue | None = None,
    ) -> sqs.Queue:
        """An encrypted queue, reached over TLS only, that keeps a message the longest SQS allows."""
        return sqs.Queue(
            self,
            construct_id,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=visibility_timeout,
            retention_period=Duration.days(14),
            dead_letter_queue=dead_letter_queue,
        )

    def grant_downloads(self, function: lambda_.Function) -> None:
        """Write products (multipart uploads included) and check what is there already."""
        self._grant(function, ["s3:PutObject", "s3:AbortMultipartUpload", "s3:GetObject"])

    def grant_listing(self, function: lambda_.Function) -> None:
        """Check which products are in the bucket."""
        self._grant(function, ["s3:GetObject"])

    def _grant(self, function: lambda_.Function, object_actions: list[str]) -> None:
        # The function is told which bucket it may use.
        function.add_environment("UPLOAD_BUCKET", self.bucket.bucket_name)
        # ListBucket too: without it a missing object answers 403 instead of 404.
        function.add_to_role_policy(iam.PolicyStatement(actions=["s3:ListBucket"], resources=[self.bucket.bucket_arn]))
        function.add_to_role_policy(
            iam.PolicyStatement(actions=object_actions, resources=[self.bucket.arn_for_objects("*")])
        )
        assert function.role is not None  # every function here has its own role
        acknowledge(
            function.role,
            f"AwsSolutions-IAM5[Resource::{arn_of(self.bucket)}/*]",
            "Products are objects named after the granule, so the grant covers the bucket's objects",
        )

    def schedule(
        self, construct_id: str, *, expression: str, function: lambda_.IFunction, event: dict, description: str
    ) -> events.Rule:
        """Invoke `function` with `event` on the EventBridge schedule `expression`."""
        return events.Rule(
            self,
            construct_id,
            description=description,
            schedule=events.Schedule.expression(expression),
            targets=[
                targets.LambdaFunction(function, event=events.RuleTargetInput.from_object(event), retry_attempts=2)
            ],
        )

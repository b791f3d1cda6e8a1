"""Push: the CDSE subscription endpoint `POST /events` on an API Gateway REST API, throttled, with the HTTP Basic
credentials CDSE must send generated into Secrets Manager."""

from __future__ import annotations

from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from .config import DeployConfig
from .nag import acknowledge


class PushCredentials(Construct):
    """{"username", "password"} for the subscription's NotificationEpUsername / NotificationEpPassword."""

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        self.secret = secretsmanager.Secret(
            self,
            "Secret",
            description="HTTP Basic credentials CDSE sends with each push notification",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template='{"username": "cdse-push"}',  # noqa: S106 - the password is generated
                generate_string_key="password",
                exclude_punctuation=True,
                password_length=40,
            ),
        )
        acknowledge(
            self.secret,
            "AwsSolutions-SMG4",
            "CDSE keeps these credentials in the subscription; a new password needs a new subscription (docs/deploy)",
        )


class PushApi(Construct):
    def __init__(
        self, scope: Construct, construct_id: str, *, config: DeployConfig, handler: lambda_.IFunction
    ) -> None:
        super().__init__(scope, construct_id)
        access_logs = logs.LogGroup(self, "AccessLogs", retention=config.retention)
        self.api = apigw.RestApi(
            self,
            "Api",
            rest_api_name=f"{config.identifier}-push",
            description="CDSE push subscription endpoint (SPEC §3)",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=True,
            deploy_options=apigw.StageOptions(
                stage_name="v1",
                throttling_rate_limit=config.api_rate_limit,
                throttling_burst_limit=config.api_burst_limit,
                logging_level=apigw.MethodLoggingLevel.ERROR,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=False, http_method=True, ip=True, protocol=True, request_time=True,
                    resource_path=True, response_length=True, status=True, user=False,
                ),
                tracing_enabled=True,
            ),
        )  # fmt: skip
        self.api.root.add_resource("events").add_method("POST", apigw.LambdaIntegration(handler))
        self.url = self.api.url_for_path("/events")
        reasons = {
            "AwsSolutions-APIG2": "The function validates each notification and answers SPEC §3's 400 {'error'}",
            "AwsSolutions-APIG3": "Throttled at the stage and authenticated by the function; WAF is left to the "
            "operator (cost)",
            "AwsSolutions-APIG4": "CDSE can only send HTTP Basic credentials; the function checks them in "
            "constant time and answers 401",
            "AwsSolutions-COG4": "CDSE cannot use Cognito; HTTP Basic is checked by the function",
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AmazonAPIGatewayPushToCloudWatchLogs]": "API Gateway's account-level logging role needs this policy",
        }
        for rule_id, reason in reasons.items():
            acknowledge(self.api, rule_id, reason)

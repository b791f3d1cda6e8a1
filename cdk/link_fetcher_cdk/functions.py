"""The Lambda layers (db, core) and the functions, each from its `lambdas/<name>` folder, all in the VPC."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import Duration
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from link_fetcher.observability import FUNCTION_SERVICES
from link_fetcher.settings import Settings

from .bundling import RUNTIME, function_code, layer_code, project_layers
from .environment import function_environment
from .nag import acknowledge
from .network import Network


class Functions(Construct):
    """Creates functions sharing the layers, network and base environment; `add` makes one."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        project_root: Path,
        retention: logs.RetentionDays,
        settings: Settings,
        network: Network,
    ) -> None:
        super().__init__(scope, construct_id)
        self._lambdas_dir = project_root / "lambdas"
        self._retention = retention
        self._network = network
        self._settings = settings
        layers = project_layers(project_root)
        # Every function has both, in this order (Lambda extracts them into /opt one after the other).
        self.layers = [
            lambda_.LayerVersion(
                self,
                f"{name.capitalize()}Layer",
                code=layer_code(layers[name]),
                compatible_runtimes=[RUNTIME],
                compatible_architectures=[lambda_.Architecture.X86_64],
                description=f"link-fetcher {name} package ({contents}) and its dependencies",
            )
            for name, contents in (
                ("db", "models, migrations, recording, outbox"),
                ("core", "CDSE client, filters, sinks, relay"),
            )
        ]
        # What a function in a VPC needs for its network interfaces, instead of the broader AWS-managed policies.
        self._network_interfaces = iam.ManagedPolicy(
            self,
            "NetworkInterfaces",
            description="Lambda functions in the link-fetcher VPC: manage their network interfaces",
            statements=[
                iam.PolicyStatement(
                    actions=[
                        "ec2:CreateNetworkInterface",
                        "ec2:DescribeNetworkInterfaces",
                        "ec2:DescribeSubnets",
                        "ec2:DeleteNetworkInterface",
                        "ec2:AssignPrivateIpAddresses",
                        "ec2:UnassignPrivateIpAddresses",
                    ],
                    resources=["*"],
                )
            ],
        )
        acknowledge(
            self._network_interfaces,
            "AwsSolutions-IAM5[Resource::*]",
            "EC2 network interface actions take no resource ARN; this is what AWSLambdaVPCAccessExecutionRole grants",
        )

    def add(
        self,
        name: str,
        *,
        description: str,
        timeout: Duration,
        memory_mb: int = 512,
        environment: dict[str, str] | None = None,
        extra_files: dict[str, Path] | None = None,
    ) -> lambda_.Function:
        folder = self._lambdas_dir / name
        construct_id = "".join(part.capitalize() for part in name.split("_"))
        log_group = logs.LogGroup(self, f"{construct_id}Logs", retention=self._retention)
        # A role per function holding only what it is granted: its own log group and the network interfaces.
        role = iam.Role(
            self,
            f"{construct_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            managed_policies=[self._network_interfaces],
        )
        log_group.grant_write(role)
        function = lambda_.Function(
            self,
            construct_id,
            description=description,
            runtime=RUNTIME,
            architecture=lambda_.Architecture.X86_64,
            handler="handler.handler",
            code=function_code(folder, extra_files),
            layers=self.layers,
            timeout=timeout,
            memory_size=memory_mb,
            environment={
                **function_environment(name, self._settings),
                "POWERTOOLS_SERVICE_NAME": FUNCTION_SERVICES[name],
                **(environment or {}),
            },
            vpc=self._network.vpc,
            vpc_subnets=self._network.function_subnets,
            security_groups=[self._network.functions_security_group],
            role=role,
            log_group=log_group,
            tracing=lambda_.Tracing.ACTIVE,
        )
        acknowledge(
            role,
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray's PutTraceSegments and PutTelemetryRecords take no resource ARN (active tracing)",
        )
        acknowledge(
            function,
            "AwsSolutions-L1",
            "Python 3.13 (supported by Lambda into 2029) is the project's Python (.python-version, Pipfile); the "
            "layers' wheels are built for it",
        )
        return function

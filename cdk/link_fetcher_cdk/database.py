"""PostgreSQL on Aurora Serverless v2: encrypted, in isolated subnets, reachable only from the functions' security
group, credentials generated into Secrets Manager; the schema migrated by a custom resource on every deploy that
changes the migrations."""

from __future__ import annotations

import hashlib
from pathlib import Path

from aws_cdk import CustomResource, Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import custom_resources as cr
from constructs import Construct

from .config import DeployConfig
from .nag import acknowledge, arn_of
from .network import Network

DATABASE_NAME = "link_fetcher"
# The major version alone: RDS creates the cluster on that major's current default minor and upgrades minors in
# place, so the template never names a minor that AWS later retires (cfn-lint's W3690 checks it in `make synth`).
ENGINE_MAJOR_VERSION = "17"
ENGINE_VERSION = rds.AuroraPostgresEngineVersion.of(ENGINE_MAJOR_VERSION, ENGINE_MAJOR_VERSION)
REMOVAL_POLICIES = {
    "retain": RemovalPolicy.RETAIN,
    "snapshot": RemovalPolicy.SNAPSHOT,
    "destroy": RemovalPolicy.DESTROY,
}


def migrations_fingerprint(migrations_dir: Path) -> str:
    """A digest of the migration scripts: the custom resource's property, so a new migration re-runs it."""
    digest = hashlib.sha256()
    for path in sorted(migrations_dir.rglob("*.py")):
        digest.update(str(path.relative_to(migrations_dir)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


class Database(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: DeployConfig, network: Network) -> None:
        super().__init__(scope, construct_id)
        self.security_group = ec2.SecurityGroup(
            self, "SecurityGroup", vpc=network.vpc, description="link-fetcher database", allow_all_outbound=False
        )
        cluster_identifier = f"{config.identifier.lower()}-db"
        # The log group RDS exports to, made here with its retention (rather than by a log-retention function).
        postgres_logs = logs.LogGroup(
            self,
            "PostgresLogs",
            log_group_name=f"/aws/rds/cluster/{cluster_identifier}/postgresql",
            retention=config.retention,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.cluster = rds.DatabaseCluster(
            self,
            "Cluster",
            cluster_identifier=cluster_identifier,
            engine=rds.DatabaseClusterEngine.aurora_postgres(version=ENGINE_VERSION),
            writer=rds.ClusterInstance.serverless_v2("writer", publicly_accessible=False),
            serverless_v2_min_capacity=config.db_min_capacity,
            serverless_v2_max_capacity=config.db_max_capacity,
            vpc=network.vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            security_groups=[self.security_group],
            credentials=rds.Credentials.from_generated_secret("link_fetcher"),
            default_database_name=DATABASE_NAME,
            storage_encrypted=True,
            iam_authentication=True,
            deletion_protection=config.removal_policy != "destroy",
            removal_policy=REMOVAL_POLICIES[config.removal_policy],
            backup=rds.BackupProps(retention=Duration.days(7)),
            cloudwatch_logs_exports=["postgresql"],
        )
        self.cluster.node.add_dependency(postgres_logs)
        self.cluster.connections.allow_default_port_from(network.functions_security_group, "link-fetcher functions")
        assert self.cluster.secret is not None  # generated credentials always come with a secret
        self.secret = self.cluster.secret
        acknowledge(
            self.cluster,  # the generated secret is created under the cluster
            "AwsSolutions-SMG4",
            "Each function builds its connection pool from the secret once per container; a rotation would break "
            "new connections until the containers recycle. Rotate by hand in a quiet hour, then update the functions.",
        )

    def migrate_on_deploy(
        self, function: lambda_.IFunction, migrations_dir: Path, retention: logs.RetentionDays
    ) -> CustomResource:
        """Run `function` (Alembic upgrade to head) on create, and on update whenever the migrations changed."""
        provider = cr.Provider(
            self,
            "MigrationProvider",
            on_event_handler=function,
            log_group=logs.LogGroup(self, "MigrationProviderLogs", retention=retention),
        )
        acknowledge(
            provider,
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole]",
            "The CDK Provider framework's own function only writes its logs",
        )
        acknowledge(
            provider,
            f"AwsSolutions-IAM5[Resource::{arn_of(function)}:*]",
            "The Provider framework may invoke the migration function and its versions, nothing else",
        )
        migration = CustomResource(
            self,
            "Migration",
            service_token=provider.service_token,
            resource_type="Custom::LinkFetcherMigration",
            properties={"MigrationsFingerprint": migrations_fingerprint(migrations_dir)},
        )
        migration.node.add_dependency(self.cluster)
        return migration

"""The link-fetcher stack: everything `cdk deploy` creates, wired together."""

from __future__ import annotations

from pathlib import Path

from aws_cdk import CfnOutput, Duration, Stack
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from link_fetcher.settings import Settings

from .config import DeployConfig
from .database import Database
from .delivery import DOWNLOADER_TIMEOUT, Delivery
from .functions import Functions
from .monitoring import Monitoring
from .nag import acknowledge
from .network import Network
from .polling import Polling
from .push import PushApi, PushCredentials

# Four downloads at once is CDSE's per-account limit: four downloader instances, each taking its batch's records
# one at a time.
DOWNLOADERS = 4
DOWNLOAD_BATCH = 4
WATCHES_FILE_IN_FUNCTION = "watches.toml"
# The functions of every deployment but the STAC fetcher, by their folder under lambdas/: what each does, its
# timeout and its memory (MB).
FUNCTIONS = (
    ("migrate", "Applies the Alembic migrations", Duration.minutes(5), 512),
    ("date_generator", "(day, platform) pairs to poll", Duration.seconds(30), 256),
    ("link_fetcher", "Fetches one day of one platform from CDSE", Duration.minutes(15), 512),
    ("link_subscription", "CDSE push endpoint (POST /events)", Duration.seconds(29), 512),
    ("relay", "Delivers pending granules", Duration.minutes(5), 512),
    ("downloader", "Downloads granules from the To Download queue into the bucket", DOWNLOADER_TIMEOUT, 2048),
    ("reconcile", "Requeues recorded granules missing from the bucket", Duration.minutes(15), 512),
)


class LinkFetcherStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        project_root: Path,
        config: DeployConfig,
        settings: Settings,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        network = Network(self, "Network", config=config)
        database = Database(self, "Database", config=config, network=network)
        delivery = Delivery(self, "Delivery", config=config)
        push_credentials = PushCredentials(self, "PushCredentials")
        cdse_account = secretsmanager.Secret(
            self,
            "CdseAccount",
            description='CDSE account for downloads: {"username", "password"}; set it after the first deploy',
        )
        acknowledge(cdse_account, "AwsSolutions-SMG4", "The CDSE account's password is changed on CDSE, then here")
        functions = Functions(
            self, "Functions", project_root=project_root, retention=config.retention, settings=settings, network=network
        )
        self.functions: dict[str, lambda_.Function] = self._add_functions(functions, project_root, config, settings)
        self._grant(database, delivery, push_credentials, cdse_account)
        migration = database.migrate_on_deploy(
            self.functions["migrate"], project_root / "layers" / "db" / "db" / "migrations", config.retention
        )
        polling = Polling(
            self,
            "Polling",
            config=config,
            date_generator=self.functions["date_generator"],
            link_fetcher=self.functions["link_fetcher"],
        )
        pulling = "subscription_puller" in self.functions
        push = None if pulling else PushApi(self, "Push", config=config, handler=self.functions["link_subscription"])
        # Nothing that records may run before the schema exists.
        for dependant in (*self._schedules(config, delivery, polling), *((push.api.deployment_stage,) if push else ())):
            dependant.node.add_dependency(migration)
        monitoring = Monitoring(self, "Monitoring", config=config)
        monitoring.watch_functions({function.node.id: function for function in self.functions.values()})
        monitoring.watch_polling(polling.state_machine)
        monitoring.watch_unfinished_days()
        if push is not None:
            monitoring.watch_push(push.api)
        monitoring.watch_dead_letters(delivery.dead_letter_queue)
        monitoring.watch_deliveries(config.relay_schedule)
        monitoring.watch_freshness(settings.relay.freshness_slo_seconds)
        outputs = [("PushEndpointUrl", push.url, "NotificationEndpoint of the CDSE subscription")] if push else []
        for name, value, description in (
            *outputs,
            ("PushCredentialsSecretArn", push_credentials.secret.secret_arn, "NotificationEpUsername/Password"),
            ("CdseAccountSecretArn", cdse_account.secret_arn, "Put the CDSE account here for the downloader"),
            ("StateMachineArn", polling.state_machine.state_machine_arn, "Start an execution to backfill"),
            ("ToDownloadQueueUrl", delivery.queue.queue_url, "SQS To Download"),
            ("DeadLetterQueueUrl", delivery.dead_letter_queue.queue_url, "To Download dead letters"),
            ("ProductsBucket", delivery.bucket.bucket_name, "Downloaded products"),
            ("DatabaseSecretArn", database.secret.secret_arn, "RDS credentials"),
            ("AlarmTopicArn", monitoring.topic.topic_arn, "Alarm notifications"),
        ):
            CfnOutput(self, name, value=value, description=description)

    def _add_functions(
        self,
        functions: Functions,
        project_root: Path,
        config: DeployConfig,
        settings: Settings,
    ) -> dict[str, lambda_.Function]:
        """Every function, by its directory name under lambdas/ (the puller only in pull mode)."""
        added = {
            name: functions.add(name, description=description, timeout=timeout, memory_mb=memory_mb)
            for name, description, timeout, memory_mb in FUNCTIONS
        }
        added["stac_fetcher"] = self._add_stac_fetcher(functions, project_root, config, settings)
        # DEPLOY_SUBSCRIPTION_MODE=pull: no public endpoint; a schedule reads the PULL subscription (SPEC §9).
        if config.subscription_mode == "pull":
            added["subscription_puller"] = functions.add(
                "subscription_puller",
                description="Reads the CDSE PULL subscription, records and acknowledges",
                timeout=Duration.minutes(5),
            )
        return added

    @staticmethod
    def _add_stac_fetcher(
        functions: Functions, project_root: Path, config: DeployConfig, settings: Settings
    ) -> lambda_.Function:
        # The watches file travels with the function; without watches there is nothing to schedule.
        watches_file = project_root / settings.stac.watches_file
        if config.stac_watches and not watches_file.is_file():
            raise ValueError(f"DEPLOY_STAC_WATCHES names watches but {watches_file} (STAC_WATCHES_FILE) is missing")
        return functions.add(
            "stac_fetcher",
            description="Records the items of a STAC watch",
            timeout=Duration.minutes(15),
            environment={"STAC_WATCHES_FILE": f"/var/task/{WATCHES_FILE_IN_FUNCTION}"} if config.stac_watches else None,
            extra_files={WATCHES_FILE_IN_FUNCTION: watches_file} if config.stac_watches else None,
        )

    def _grant(
        self,
        database: Database,
        delivery: Delivery,
        push_credentials: PushCredentials,
        cdse_account: secretsmanager.Secret,
    ) -> None:
        """What each function may read, send and write, and the downloader's queue."""
        f = self.functions
        pullers = (f["subscription_puller"],) if "subscription_puller" in f else ()
        recorders = (f["link_fetcher"], f["link_subscription"], f["relay"], f["reconcile"], f["stac_fetcher"], *pullers)
        # The date generator reads the progress tables for the days left unfinished.
        readers = (f["migrate"], *recorders[:3], f["downloader"], *recorders[3:], f["date_generator"])
        # A function is told of what it may use by a variable: (function, variable, value, grant), in the order of
        # the policies' statements.
        cdse, database_secret, push, queue = cdse_account, database.secret, push_credentials.secret, delivery.queue
        uses = (
            *((function, "CDSE_SECRET_ARN", cdse.secret_arn, cdse.grant_read) for function in pullers),
            *(
                (function, "DATABASE_SECRET_ARN", database_secret.secret_arn, database_secret.grant_read)
                for function in readers
            ),
            *(
                (function, "TO_DOWNLOAD_QUEUE_URL", queue.queue_url, queue.grant_send_messages)
                for function in recorders
            ),
            (f["link_subscription"], "SUBSCRIPTION_SECRET_ARN", push.secret_arn, push.grant_read),
            (f["downloader"], "CDSE_SECRET_ARN", cdse.secret_arn, cdse.grant_read),
        )
        for function, variable, value, grant in uses:
            function.add_environment(variable, value)
            grant(function)
        delivery.grant_downloads(f["downloader"])
        delivery.grant_listing(f["reconcile"])
        f["downloader"].add_event_source(
            event_sources.SqsEventSource(
                delivery.queue,
                batch_size=DOWNLOAD_BATCH,
                max_concurrency=DOWNLOADERS,
                report_batch_item_failures=True,
            )
        )

    def _schedules(self, config: DeployConfig, delivery: Delivery, polling: Polling) -> list[Construct]:
        """The schedules that start functions: polling, the PULL reader, the relay, reconcile, STAC watches."""
        schedules: list[Construct] = [polling.schedule] if polling.schedule else []
        if "subscription_puller" in self.functions:
            schedules.append(
                delivery.schedule(
                    "PullSchedule",
                    expression=config.pull_schedule,
                    function=self.functions["subscription_puller"],
                    event={},
                    description="Read the CDSE PULL subscription",
                )
            )
        periodic = (
            ("RelaySchedule", config.relay_schedule, "relay", "Deliver pending granules"),
            (
                "ReconcileSchedule",
                config.reconcile_schedule,
                "reconcile",
                "Requeue granules recorded but not downloaded",
            ),
        )
        schedules.extend(
            delivery.schedule(
                construct_id, expression=expression, function=self.functions[name], event={}, description=text
            )
            for construct_id, expression, name, text in periodic
            if expression
        )
        if config.stac_schedule:
            schedules.extend(
                delivery.schedule(
                    f"StacSchedule{index}",
                    expression=config.stac_schedule,
                    function=self.functions["stac_fetcher"],
                    event={"watch": watch},
                    description=f"STAC watch {watch}",
                )
                for index, watch in enumerate(config.stac_watches)
            )
        return schedules

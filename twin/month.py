"""A month of CDSE through the twin: `python -m twin.month --days 30` (`make twin`).

The world (twin/world.py) publishes Sentinel-2's daily volume on the simulated clock; the stack runs from cdk.out/
in twin.Twin: its schedules fire at their times (the polling state machine, the relay, reconcile, the PULL reader),
CDSE's notifications reach the push route through API Gateway's proxy (2 % lost, some twice, late, out of order;
CDSE retries a failed POST 3 times), the downloader drains the queue in the event source's batches. Faults
(twin/faults.py) are played on the way. At the end the audit (twin/audit.py) and the cost (twin/cost.py) are
printed and written as JSON.

The system is scoped to a few hundred tiles (ALLOWED_TILES_FILE, through the functions' environment) while CDSE
serves and notifies the whole volume. Notifications of out-of-scope products are pushed for a share of them only
(`--push-share`): each is answered 204 without touching the database, and the cost estimate prices the rest as
the measured ones.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import datetime as dt
import json
import os
import re
import secrets
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from db.engine import normalise_url
from twin.audit import Audit, Checkpoint, Observed, audit, database_now, read_state
from twin.cost import (
    DatabaseFigures,
    FunctionFigures,
    MonthUsage,
    alarmed_metrics,
    cost_json,
    cost_table,
    idle_cost,
    load_prices,
    month_cost,
)
from twin.faults import FaultPlan
from twin.sqs_proxy import SqsProxy
from twin.world import World, WorldCdse, WorldConfig, _Draws

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
POLL_RULE, RELAY_RULE, PULL_RULE = "PollingSchedule", "RelaySchedule", "PullSchedule"
SENDING_FUNCTIONS = ("link_fetcher", "link_subscription", "relay", "reconcile", "subscription_puller")
SCOPED_FUNCTIONS = ("link_fetcher", "link_subscription", "subscription_puller", "stac_fetcher")
# link_fetcher's stop margin (lambdas/link_fetcher/handler.py): a timeout just above it kills a page mid-way.
FETCHER_STOP_MARGIN_SECONDS = 60.0
PUSH_SAMPLE = 11  # the draws' purpose for the out-of-scope notifications pushed
CDSE_PUSH_ATTEMPTS = 4  # CDSE's POST and its 3 retries
_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_CRON = re.compile(r"^cron\((\d+) (\d+) \* \* \? \*\)$")


@dataclasses.dataclass(frozen=True)
class MonthOptions:
    days: int = 30
    tail_days: int = 5  # the schedules run on after the last publication day, until every day was looked back on
    seed: int = 20261205
    scope_tiles: int = 60
    time_scale: float = 0.05
    step_minutes: int = 5
    drain_minutes: int = 180  # the event source polls continuously; the twin drains the queue this often
    push_share: float = 0.02
    faults: bool = True
    mode: str = "push"
    cdk_out: Path = PROJECT_ROOT / "cdk.out"
    server_url: str = DEFAULT_SERVER
    output: Path | None = PROJECT_ROOT / "twin-month.json"
    keep_database: bool = False
    quiet: bool = False


@dataclasses.dataclass
class MonthResult:
    audit: Audit
    cost: dict[str, Any]
    report: str
    seconds: float
    figures: dict[str, Any]


def fire_times(expression: str, start: dt.datetime, end: dt.datetime) -> list[dt.datetime]:
    """When an EventBridge schedule fires in [start, end): rate(...) from `start`, a daily cron(M H * * ? *)."""
    if match := _RATE.match(expression):
        unit = {"minute": 1, "hour": 60, "day": 1440}[match[2].rstrip("s")]
        period = dt.timedelta(minutes=int(match[1]) * unit)
        count = int((end - start) / period)
        return [start + period * (i + 1) for i in range(count) if start + period * (i + 1) < end]
    if match := _CRON.match(expression):
        minute, hour = int(match[1]), int(match[2])
        day, times = start.replace(hour=0, minute=0, second=0, microsecond=0), []
        while day < end:
            moment = day.replace(hour=hour, minute=minute)
            if start <= moment < end:
                times.append(moment)
            day += dt.timedelta(days=1)
        return times
    raise ValueError(f"the month cannot play the schedule {expression!r}")


@contextmanager
def scratch_database(server_url: str, prefix: str, *, keep: bool = False) -> Iterator[str]:
    """A new, empty database on the server (the migration custom resource creates the schema), dropped after unless
    `keep`."""
    name = f"{prefix}_{secrets.token_hex(4)}"
    server_url = normalise_url(server_url)
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
    finally:
        if not keep:
            with admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _one_row(engine: Engine, sql: str) -> tuple[Any, ...]:
    with engine.begin() as conn:
        return tuple(conn.execute(text(sql)).one())


def terminate_connections(engine: Engine) -> int:
    """What a database restart does to the functions: every other connection to the database is cut."""
    cut = _one_row(
        engine,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    return int(cut[0])


def database_figures(engine: Engine) -> DatabaseFigures:
    row = _one_row(
        engine,
        "SELECT xact_commit + xact_rollback, coalesce(active_time, 0) / 1000.0, "
        "tup_inserted + tup_updated + tup_deleted, blks_read, pg_database_size(current_database()) "
        "FROM pg_stat_database WHERE datname = current_database()",
    )
    return DatabaseFigures(int(row[0]), float(row[1]), int(row[2]), int(row[3]), int(row[4]))


def count_custom_metrics(logs: str) -> int:
    """Distinct (namespace, metric, dimensions and their values) in the embedded-metric-format lines of the logs."""
    metrics = set()
    for line in logs.splitlines():
        if '"_aws"' not in line or not line.startswith("{"):
            continue
        try:
            document = json.loads(line)
        except ValueError:
            continue
        for directive in document.get("_aws", {}).get("CloudWatchMetrics", []):
            for dimensions in directive.get("Dimensions", [[]]):
                values = tuple((name, str(document.get(name))) for name in dimensions)
                for metric in directive.get("Metrics", []):
                    metrics.add((directive.get("Namespace"), metric.get("Name"), values))
    return len(metrics)


class Month:
    """One month's run: the world, the fake CDSE, the proxy, the twin, and what was seen along the way."""

    def __init__(self, options: MonthOptions, log: Callable[[str], None]) -> None:
        self.options, self.log = options, log
        self.plan = FaultPlan().scaled(options.days)
        self.observed = Observed()
        self.pushes = {"sent": 0, "answered_2xx": 0, "failed_posts": 0, "dropped": 0, "out_of_scope_skipped": 0}
        self.faults_played: dict[str, int] = {}
        self.spent: dict[str, float] = {}
        self.transitions = 0  # of the executions run_state_machine_rule started

    @contextmanager
    def _timed(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            self.spent[name] = self.spent.get(name, 0.0) + time.monotonic() - started

    def _played(self, name: str) -> None:
        self.faults_played[name] = self.faults_played.get(name, 0) + 1

    def run(self) -> MonthResult:
        from twin import Twin  # the harness (twin/twin.py)

        options, started = self.options, time.monotonic()
        today = dt.datetime.now(dt.UTC).date()
        config = WorldConfig(seed=options.seed, start=today, days=options.days, scope_tiles=options.scope_tiles)
        self.world = world = World(config)
        self.start = config.start_time
        self.clock_now: Callable[[], dt.datetime] = lambda: self.start
        catalogue_faults = self.plan.catalogue(options.seed, config.start) if options.faults else None
        policy = catalogue_faults.policy(lambda: self.clock_now()) if catalogue_faults else None
        self.policy = policy
        account = {"username": "twin@example.org", "password": secrets.token_urlsafe(12)}
        cdse = WorldCdse(world, lambda: self.clock_now(), fault_policy=policy, **account)
        proxy = SqsProxy()
        with (
            tempfile.TemporaryDirectory(prefix="twin-month-") as work,
            cdse,
            proxy,
            scratch_database(options.server_url, "twin_month", keep=options.keep_database) as database_url,
        ):
            scope_file = world.write_scope(Path(work) / "allowed_tiles.txt")
            function_env = {name: {"AWS_ENDPOINT_URL": proxy.url} for name in SENDING_FUNCTIONS}
            for name in SCOPED_FUNCTIONS:
                function_env.setdefault(name, {})["ALLOWED_TILES_FILE"] = str(scope_file)
            engine = create_engine(database_url, pool_pre_ping=True)
            twin = Twin(
                options.cdk_out,
                database_url=database_url,
                cdse_base_url=cdse.url,
                mode=options.mode,  # type: ignore[arg-type]
                time_scale=options.time_scale,
                function_env=self._known(function_env, options.cdk_out),
                cdse_account=account,
            )
            with twin:
                proxy.upstream = twin.endpoint
                twin.clock.set(self.start)
                self.clock_now = twin.clock.now
                self.twin, self.cdse, self.proxy, self.engine = twin, cdse, proxy, engine
                if options.mode == "pull":
                    self.subscription = self._pull_subscription()
                else:
                    # The subscription's credentials, as the user reads them from the secret (docs/deploy.md).
                    credentials = twin.push_credentials()
                    pair = f"{credentials['username']}:{credentials['password']}".encode()
                    self._basic = f"Basic {base64.b64encode(pair).decode()}"
                database_before = database_figures(engine)
                self._loop()
                self._settle()
                figures = self._figures(database_before)
                granules, deliveries = read_state(engine)
                result = audit(world, granules, deliveries, self.observed)
                cost = self._cost(figures)
            engine.dispose()
        seconds = time.monotonic() - started
        figures["seconds"] = round(seconds, 1)
        report = self._report(result, cost, figures)
        if options.output is not None:
            options.output.write_text(
                json.dumps({"audit": result.to_json(), "cost": cost["json"], "run": figures}, indent=2, default=str)
            )
        return MonthResult(result, cost["json"], report, seconds, figures)

    @staticmethod
    def _known(function_env: dict[str, dict[str, str]], cdk_out: Path) -> dict[str, dict[str, str]]:
        """Only the functions the template has (subscription_puller exists in PULL mode only)."""
        from twin import StackTemplate

        names = {spec.name for spec in StackTemplate(cdk_out).functions().values()}
        return {name: env for name, env in function_env.items() if name in names}

    # ---- the timeline ----

    def _loop(self) -> None:
        options, twin = self.options, self.twin
        end = self.start + dt.timedelta(days=options.days + options.tail_days)
        firings: list[tuple[dt.datetime, str]] = []
        for rule in twin.rules():
            expression = twin.template.rule(rule).schedule
            if expression:
                firings += [(moment, rule) for moment in fire_times(expression, self.start, end)]
        firings.sort()
        step = dt.timedelta(minutes=options.step_minutes)
        drain_every = dt.timedelta(minutes=options.drain_minutes)
        moment, next_firing, day_loaded = self.start, 0, -1
        notifications: list[Any] = []
        while moment < end:
            window_end = moment + step
            day = int((moment - self.start) / dt.timedelta(days=1))
            if day != day_loaded:
                with self._timed("world"):
                    notifications = self._notifications(day)
                day_loaded = day
            with self._timed("notifications"):
                while notifications and notifications[0].at < window_end:
                    self._notify(notifications.pop(0))
            drain_due = False
            while next_firing < len(firings) and firings[next_firing][0] < window_end:
                with self._timed(firings[next_firing][1]):
                    self._fire(*firings[next_firing])
                drain_due |= POLL_RULE.lower() in firings[next_firing][1].lower()
                next_firing += 1
            self._between_steps(moment, window_end)
            twin.clock.set(window_end)
            if drain_due or int((window_end - self.start) / drain_every) != int((moment - self.start) / drain_every):
                with self._timed("drain"):
                    self._drain()
            with self._timed("checkpoint"):
                self.observed.checkpoints.append(Checkpoint(database_now(self.engine), window_end))
            if day != int((window_end - self.start) / dt.timedelta(days=1)):
                self.log(f"day {day + 1}/{options.days + options.tail_days} done ({self._progress()})")
            moment = window_end

    def _progress(self) -> str:
        usage = self.twin.usage()
        return ", ".join(f"{name} {f.invocations}" for name, f in sorted(usage.functions.items()))

    def _notifications(self, day: int) -> list[Any]:
        """The day's notifications the month sends: all of the scope's, a deterministic share of the others."""
        share, scope = self.options.push_share, self.world.scope

        def pushed(product: Any) -> bool:
            if product.tile in scope:
                return True
            keep = _Draws(self.options.seed, PUSH_SAMPLE, product.key.packed).random() < share
            if not keep:
                self.pushes["out_of_scope_skipped"] += 1
            return keep

        return self.world.notifications_on(day, keep=pushed)

    def _notify(self, notification: Any) -> None:
        self.twin.clock.set(notification.at)
        if self.options.mode == "pull":
            self.cdse.enqueue(self.subscription, notification.body(self.subscription))
            self.observed.notified.add((notification.product.id, notification.event))
            return
        body = json.dumps(notification.body("twin-subscription")).encode()
        headers = {"Authorization": self._basic, "Content-Type": "application/json"}
        self.pushes["sent"] += 1
        for _ in range(CDSE_PUSH_ATTEMPTS):
            status, _ = self.twin.push(body, headers)
            if 200 <= status < 300:
                self.pushes["answered_2xx"] += 1
                self.observed.notified.add((notification.product.id, notification.event))
                return
            self.pushes["failed_posts"] += 1
        self.pushes["dropped"] += 1

    def _pull_subscription(self) -> str:
        subscription_id = "twin-pull-subscription"
        self.cdse.subscriptions[subscription_id] = {
            "Id": subscription_id,
            "SubscriptionType": "pull",
            "Status": "running",
            "SubscriptionEvent": ["created", "deleted"],
        }
        return subscription_id

    def _fire(self, moment: dt.datetime, rule: str) -> None:
        twin, plan, options = self.twin, self.plan, self.options
        twin.clock.set(moment)
        day = (moment - self.start) / dt.timedelta(days=1)
        faults = options.faults
        if POLL_RULE.lower() in rule.lower():
            if faults and any(int(d) == int(day) for d in plan.fetcher_timeouts):
                twin.timeout_next("link_fetcher", FETCHER_STOP_MARGIN_SECONDS + 0.1)
                self._played("link_fetcher timed out mid-day")
            restart = faults and any(int(d) == int(day) for d in plan.database_restarts)
            with self._restart_during(restart):
                execution = run_state_machine_rule(twin, rule)
            self.transitions += execution.transitions
            self.observed.polls.append(moment)
            if not execution.succeeded:
                self._played(f"polling execution {execution.status}: {execution.error}")
            return
        if RELAY_RULE.lower() in rule.lower() and faults and self._relay_kill_due(moment):
            twin.kill_next("relay", 0.5)
            self._played("relay killed mid-batch")
        run = twin.run_rule(rule)
        if not run.succeeded:
            self._played(f"{rule} {run.status}: {run.error}")
            self.log(f"{rule} {run.status}: {run.error}: {str(run.cause)[:300]}")

    def _relay_kill_due(self, moment: dt.datetime) -> bool:
        return self.plan.relay_killed((moment - self.start) / dt.timedelta(days=1), self.options.step_minutes / 1440)

    @contextmanager
    def _restart_during(self, restart: bool) -> Iterator[None]:
        """A database restart in the middle of what the block runs (its connections cut shortly after it starts)."""
        if not restart:
            yield
            return
        timer = threading.Timer(
            0.3, lambda: self._played(f"database restart ({terminate_connections(self.engine)} cut)")
        )
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    def _between_steps(self, moment: dt.datetime, window_end: dt.datetime) -> None:
        if not self.options.faults:
            return
        day = (window_end - self.start) / dt.timedelta(days=1)
        self.proxy.throttled = self.plan.throttled(day)
        if self.plan.restart_between((moment - self.start) / dt.timedelta(days=1), self.options.step_minutes / 1440):
            self._played(f"database restart between runs ({terminate_connections(self.engine)} cut)")

    def _drain(self) -> None:
        result = self.twin.drain_downloads()
        if result.failed_batches:
            self._played("downloader batch failed")
            for error in result.errors:
                self.log(f"downloader: {error.get('errorType')}: {str(error.get('errorMessage'))[:300]}")

    def _settle(self) -> None:
        """After the month: SQS answers again; the relay and the downloader run until nothing is left to do."""
        self.proxy.throttled = False
        for _ in range(20):
            self.twin.run_rule(RELAY_RULE)
            self._drain()
            if not self._queue_depth():
                break
            time.sleep(max(1.0, 90 * 60 * self.options.time_scale / 10))
        self.observed.messages = self.proxy.messages
        self.observed.queue_left = self._queue_depth("ToDownload")
        self.observed.dead_letters = self._queue_depth("ToDownloadDeadLetters")

    def _queue_depth(self, key: str = "ToDownload") -> int:
        from twin.aws import client

        url = self.twin.queue_url(key) if key != "ToDownload" else self._main_queue()
        attributes = client("sqs", self.twin.endpoint).get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return sum(int(value) for value in attributes.values())

    def _main_queue(self) -> str:
        (source,) = self.twin.template.event_sources()
        return str(self.twin.resources.refs[source.queue])

    # ---- figures, cost, report ----

    def _figures(self, database_before: DatabaseFigures) -> dict[str, Any]:
        after = database_figures(self.engine)
        self.database = DatabaseFigures(
            after.transactions - database_before.transactions,
            after.busy_seconds - database_before.busy_seconds,
            after.rows_written - database_before.rows_written,
            after.blocks_read - database_before.blocks_read,
            after.size_bytes,
        )
        catalogue = [
            path for method, path in self.cdse.requests if path.startswith("/odata/v1/") and "$value" not in path
        ]
        self.catalogue_requests = sum("Subscriptions" not in path for path in catalogue)
        played = dict(self.faults_played)
        if self.policy is not None:
            played.update({f"CDSE {kind}": count for kind, count in self.policy.played.items()})
        played["SQS SendMessageBatch throttled"] = self.proxy.throttled_calls
        return {
            "world": dataclasses.asdict(self.world.config) | {"scope": len(self.world.scope)},
            "daily_volume": self.world.daily_volume(self.options.days // 2),
            "pushes": self.pushes,
            "faults": played,
            "catalogue_requests": self.catalogue_requests,
            "downloads": sum(self.cdse.downloads.values()),
            "database": dataclasses.asdict(self.database),
            "real_seconds_in": {name: round(value, 1) for name, value in sorted(self.spent.items())},
        }

    def _cost(self, figures: dict[str, Any]) -> dict[str, Any]:
        usage = self.twin.usage()
        functions = {
            name: FunctionFigures(f.invocations, f.billed_gb_seconds, f.memory_mb)
            for name, f in usage.functions.items()
        }
        skipped = self.pushes["out_of_scope_skipped"]
        push = functions.get("link_subscription")
        if push is not None and push.invocations and skipped:
            # Out-of-scope notifications not pushed: priced as the pushed ones (an upper bound: those answer 204
            # without a database write).
            per_call = push.gb_seconds / push.invocations
            functions["link_subscription"] = FunctionFigures(
                push.invocations + skipped, push.gb_seconds + per_call * skipped, push.memory_mb
            )
        logs = "".join(self.twin.log_of(name) for name in usage.functions)
        days = self.options.days + self.options.tail_days
        month = MonthUsage(
            days=days,
            functions=functions,
            sqs_requests=usage.requests_of("sqs"),
            secrets_requests=usage.requests_of("secretsmanager"),
            cloudwatch_requests=usage.requests_of("monitoring"),
            s3_requests=usage.requests_of("s3"),
            api_gateway_requests=usage.api_gateway_requests + skipped,
            state_transitions=usage.state_transitions + self.transitions,
            catalogue_requests=self.catalogue_requests,
            downloads=figures["downloads"],
            log_bytes=len(logs.encode()),
            custom_metrics=count_custom_metrics(logs),
            database=self.database,
        )
        prices = load_prices()
        template = json.loads(next(self.options.cdk_out.glob("*.template.json")).read_text())
        idle = idle_cost(template, prices)
        lines = month_cost(month, prices, idle_metrics=alarmed_metrics(template))
        return {"table": cost_table(lines, idle, prices), "json": cost_json(lines, idle, prices)}

    def _report(self, result: Audit, cost: dict[str, Any], figures: dict[str, Any]) -> str:
        options = self.options
        faults = ", ".join(f"{name}: {count}" for name, count in sorted(figures["faults"].items()) if count)
        volume = figures["daily_volume"]
        return "\n".join(
            [
                f"twin month: {options.days} publication days (+{options.tail_days} days of schedules after), "
                f"{sum(volume.values()):,} products a day on CDSE, {figures['world']['scope']} tiles in scope, "
                f"{options.mode} mode, {figures['seconds']:.0f} s",
                f"notifications pushed {self.pushes['sent']:,} "
                f"(out of scope, not pushed: {self.pushes['out_of_scope_skipped']:,}), "
                f"CDSE search requests {figures['catalogue_requests']:,}, downloads {figures['downloads']:,}",
                f"faults played: {faults or 'none'}",
                "",
                result.table(),
                "",
                cost["table"],
            ]
        )


@dataclasses.dataclass(frozen=True)
class Execution:
    status: str
    error: str | None
    transitions: int

    @property
    def succeeded(self) -> bool:
        return self.status == "SUCCEEDED"


def run_state_machine_rule(twin: Any, rule: str) -> Execution:
    """Fire a schedule rule whose target is a state machine, as Twin.run_rule does, with two differences (the
    hooks this module asks of the harness): each execution gets a name of its own (moto names an unnamed one
    "None", so a second one is refused as existing), and a target input without `now` gets the scheduled event's
    time, which EventBridge hands the state machine when the rule's input carries <aws.events.event.time> (the
    date generator would otherwise take the machine's wall clock, not the simulated one)."""
    from twin import events
    from twin.aws import client
    from twin.template import ACCOUNT, REGION

    spec = twin.template.rule(rule)
    (target,) = spec.targets
    rule_arn = f"arn:aws:events:{REGION}:{ACCOUNT}:rule/{twin.resources.physical_name(spec.logical_id)}"
    event = events.scheduled_event(rule_arn, twin.clock.now())
    payload = events.target_input(target, event)
    if isinstance(payload, dict) and "now" not in payload:
        payload["now"] = event["time"]
    sfn = client("stepfunctions", twin.endpoint)
    arn = sfn.start_execution(
        stateMachineArn=twin.resources.refs[target.logical_id],
        name=f"{spec.logical_id[:40]}-{secrets.token_hex(8)}",
        input=json.dumps(payload),
    )["executionArn"]
    described = twin.wait_execution(arn)
    transitions = sum(1 for entry in twin.execution_history(arn) if entry.get("entered"))
    return Execution(described["status"], described.get("error"), transitions)


def ensure_cdk_out(cdk_out: Path = MonthOptions.cdk_out) -> Path:
    """`cdk_out`, synthesized first (as `make synth` does, without cdk-nag and cfn-lint) when it holds no template."""
    if not any(cdk_out.glob("*.template.json")):
        from twin.synth import synthesize

        synthesize(cdk_out)
    return cdk_out


def run_month(options: MonthOptions, log: Callable[[str], None] | None = None) -> MonthResult:
    printer = log or (lambda line: None if options.quiet else print(line, file=sys.stderr, flush=True))
    return Month(options, printer).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m twin.month", description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=30, help="publication days (default 30)")
    parser.add_argument("--tail-days", type=int, default=MonthOptions.tail_days, help="days of schedules after")
    parser.add_argument("--seed", type=int, default=MonthOptions.seed)
    parser.add_argument("--scope-tiles", type=int, default=MonthOptions.scope_tiles)
    parser.add_argument("--time-scale", type=float, default=MonthOptions.time_scale)
    parser.add_argument("--push-share", type=float, default=MonthOptions.push_share)
    parser.add_argument("--mode", choices=("push", "pull"), default="push")
    parser.add_argument("--no-faults", dest="faults", action="store_false")
    parser.add_argument("--cdk-out", type=Path, default=MonthOptions.cdk_out)
    parser.add_argument("--database-url", dest="server_url", help="server to create the month's database on")
    parser.add_argument("--output", type=Path, default=MonthOptions.output, help="the JSON written")
    parser.add_argument("--keep-database", action="store_true")
    given = vars(parser.parse_args(argv))  # named as MonthOptions' fields
    given["server_url"] = given["server_url"] or os.environ.get("DATABASE_URL") or DEFAULT_SERVER
    options = MonthOptions(**given)
    result = run_month(options)
    print(result.report)
    return 0 if result.audit.ok else 1


if __name__ == "__main__":
    sys.exit(main())

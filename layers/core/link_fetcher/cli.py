"""`link-fetcher` command line (SPEC §6). Exit 0 on success, 2 on bad usage or configuration, 1 on a failed run;
errors are one line on stderr. Commands call the same core functions as the Lambdas."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import sys
from collections.abc import Sequence

import click
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine, select
from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError

from db import DatabaseUnavailable, DeliveryStatus, describe_url, list_deliveries, upgrade_head
from db.migrate import current_revision
from link_fetcher.database import configured_url, engine_for
from link_fetcher.relay import RelayReport, relay_with_settings
from link_fetcher.settings import Settings
from link_fetcher.sinks import build_sinks

log = logging.getLogger("link_fetcher")


class CliFailure(Exception):
    """A run that failed for a reason the user can act on: printed as one line, exit 1."""

    exit_code = 1


class ConfigurationError(CliFailure):
    exit_code = 2


@dataclasses.dataclass
class CliContext:
    """Settings and engine, created on first use so `--help` needs neither."""

    _settings: Settings | None = None
    _engine: Engine | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = Settings()
        return self._settings

    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = engine_for(self.settings, allow_embedded=True)
        return self._engine

    def database_description(self) -> str:
        url = configured_url(self.settings)
        return describe_url(url) if url else f"embedded database in {self.settings.embedded_db_dir}"


pass_context = click.make_pass_decorator(CliContext)
stdout = Console()
stderr = Console(stderr=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="-v for progress logs, -vv for debug.")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """Discover new Sentinel-2 granules, record each once, deliver it to the To Download sinks."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # urllib3 warns at every retry, with the whole URL: -v shows them; a run that fails still ends in one line.
    logging.getLogger("urllib3").setLevel(logging.ERROR if verbose == 0 else level)
    ctx.ensure_object(CliContext)


@cli.command()
@pass_context
def migrate(obj: CliContext) -> int:
    """Create or upgrade the schema (Alembic); running it again changes nothing."""
    engine = obj.engine()
    upgrade_head(engine)
    stdout.print(f"{obj.database_description()} is at schema revision {current_revision(engine)}")
    return 0


@cli.command()
@pass_context
def status(obj: CliContext) -> int:
    """Granules found per publication day and platform, and the delivery backlog."""
    from db import GranuleCount, count_by_status

    with obj.engine().connect() as conn:
        counts = conn.execute(select(GranuleCount.__table__).order_by(GranuleCount.date, GranuleCount.platform))
        table = Table(title="granule_count")
        for column in ("day", "platform", "available", "fetched", "completed", "last fetched (UTC)"):
            table.add_column(column, justify="right" if column in ("available", "fetched") else "left")
        for row in counts:
            table.add_row(
                row.date.isoformat(),
                row.platform,
                str(row.available_links),
                str(row.fetched_links),
                "yes" if row.completed else "no",
                row.last_fetched_time.strftime("%Y-%m-%d %H:%M:%S") if row.last_fetched_time else "",
            )
        deliveries = count_by_status(conn)
    stdout.print(table)
    delivery_table = Table(title="deliveries")
    for column in ("sink", "pending", "sent", "failed"):
        delivery_table.add_column(column, justify="left" if column == "sink" else "right")
    for sink in sorted({sink for sink, _ in deliveries}):
        delivery_table.add_row(sink, *(str(deliveries.get((sink, s), 0)) for s in DeliveryStatus))
    stdout.print(delivery_table)
    return 0


@cli.command()
@click.option("--include-failed", is_flag=True, help="Also list deliveries that ran out of attempts.")
@pass_context
def pending(obj: CliContext, include_failed: bool) -> int:
    """Pending deliveries as JSON lines (id, sink, status, attempts, last_error, …)."""
    statuses = [DeliveryStatus.PENDING] + ([DeliveryStatus.FAILED] if include_failed else [])
    with obj.engine().connect() as conn:
        for delivery in list_deliveries(conn, statuses):
            sys.stdout.write(json.dumps(delivery) + "\n")
    return 0


@cli.command("relay")
@click.option("--retry-failed", is_flag=True, help="Give failed deliveries a fresh set of attempts first.")
@pass_context
def relay_command(obj: CliContext, retry_failed: bool) -> int:
    """Deliver what is pending to the configured sinks."""
    sinks = build_sinks(obj.settings)
    if not sinks:
        raise ConfigurationError("no sink configured: set TO_DOWNLOAD_QUEUE_URL and/or REDIS_URL")
    report = run_relay(obj, retry_failed=retry_failed)
    return report_delivery(report)


def run_relay(obj: CliContext, *, retry_failed: bool = False) -> RelayReport:
    return relay_with_settings(obj.engine(), obj.settings, build_sinks(obj.settings), retry_failed=retry_failed)


def report_delivery(report: RelayReport, *, sinks_configured: bool = True) -> int:
    """Print what the relay did as one line on stderr; exit 1 while configured sinks leave deliveries pending or
    failed. Plain print: rich would wrap a long line at the console width."""
    delivered = "delivered: " + ", ".join(f"{sink} {sent}" for sink, sent in report.sent.items())
    if not sinks_configured:
        if report.pending:
            print(
                f"{report.pending} deliveries pending (no sink configured; `link-fetcher pending` lists them)",
                file=sys.stderr,
            )
        return 0
    if not (report.pending or report.failed):
        print(delivered, file=sys.stderr)
        return 0
    problems = [f"{sink} unavailable: {error}" for sink, error in report.unavailable.items()]
    problems += [f"{sink} refused {refused}" for sink, refused in report.refused.items() if refused]
    backlog = f"{report.pending} deliveries pending" + (f", {report.failed} failed" if report.failed else "")
    if problems:
        backlog += f" ({'; '.join(problems)})"
    hint = "run `link-fetcher relay` when the sink is back" + (
        " (`--retry-failed` retries the failed)" if report.failed else ""
    )
    print(f"{delivered}; {backlog}: {hint}", file=sys.stderr)
    return 1


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _database_error(obj: CliContext, exc: DBAPIError) -> str:
    try:
        where = obj.database_description()
    except ValidationError:
        where = "the database"
    original = exc.orig if exc.orig is not None else exc
    if isinstance(exc, ProgrammingError) and "does not exist" in str(original):
        return f"{where} is not migrated ({_one_line(original)}): run `link-fetcher migrate`"
    if isinstance(exc, OperationalError):
        # psycopg's first line ends with the cause ("…port 1 failed: Connection refused"); it never holds a password.
        reason = _one_line(original).rsplit("failed: ", 1)[-1]
        return f"cannot connect to {where}: {reason}"
    return f"database error on {where}: {_one_line(original)}"


def _settings_error(exc: ValidationError) -> str:
    problems = [
        f"{'.'.join(str(p) for p in error['loc']).upper() or 'settings'}: {error['msg']}" for error in exc.errors()
    ]
    return "configuration error: " + "; ".join(problems)


def main(argv: Sequence[str] | None = None) -> int:
    ctx_obj = CliContext()
    try:
        with cli.make_context("link-fetcher", list(argv if argv is not None else sys.argv[1:]), obj=ctx_obj) as ctx:
            result = cli.invoke(ctx)
        return result if isinstance(result, int) else 0
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.Abort:
        stderr.print("aborted")
        return 1
    except ValidationError as exc:
        print(f"error: {_settings_error(exc)}", file=sys.stderr)
        return 2
    except CliFailure as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except DatabaseUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except DBAPIError as exc:
        print(f"error: {_database_error(ctx_obj, exc)}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`pending | head`): stop quietly. Python flushes stdout again at exit, and that
        # flush would fail too, so stdout now points at /dev/null.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


# Feature commands live beside their features; they import this module's helpers, so they register last.
from link_fetcher.downloader.commands import download, reconcile  # noqa: E402
from link_fetcher.fetching.commands import fetch  # noqa: E402
from link_fetcher.gateway.commands import gateway  # noqa: E402
from link_fetcher.push.commands import serve  # noqa: E402
from link_fetcher.stac.commands import stac_fetch  # noqa: E402
from link_fetcher.subscriptions.commands import subscriptions  # noqa: E402

for command in (fetch, serve, subscriptions, stac_fetch, download, reconcile, gateway):
    cli.add_command(command)

"""`link-fetcher` command line (SPEC §6). Exit 0 on success, 2 on bad usage or configuration, 1 on a failed run;
errors are one line on stderr. Commands call the same core functions as the Lambdas.

Each command lives beside its feature and is imported when it runs: `--help` lists the summaries below without
importing any feature (a test checks they match the commands' own help)."""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from link_fetcher.cli_support import CliContext, CliFailure, stderr

if TYPE_CHECKING:
    from pydantic import ValidationError

# name → (module:attribute, the summary `--help` lists)
COMMANDS: dict[str, tuple[str, str]] = {
    "deletions": (
        "link_fetcher.fetching.commands:deletions",
        "Read the products CDSE deleted on the days; each granule recorded earlier is marked deleted and announced.",
    ),
    "download": (
        "link_fetcher.downloader.commands:download",
        "Download granules into UPLOAD_BUCKET (or DOWNLOAD_DIR), verified against CDSE's checksums.",
    ),
    "fetch": (
        "link_fetcher.fetching.commands:fetch",
        "Record every product published on the days, for each platform, then deliver the new ones once.",
    ),
    "gateway": (
        "link_fetcher.gateway.commands:gateway",
        "Serve the Redis delivery streams over REST, WebSocket and GraphQL, with the ops console at /.",
    ),
    "migrate": (
        "link_fetcher.core_commands:migrate",
        "Create or upgrade the schema (Alembic); running it again changes nothing.",
    ),
    "pending": (
        "link_fetcher.core_commands:pending",
        "Pending deliveries as JSON lines (id, sink, status, attempts, last_error, …).",
    ),
    "reconcile": (
        "link_fetcher.downloader.commands:reconcile",
        "Compare the bucket (or folder) with the database; requeue what is missing.",
    ),
    "relay": ("link_fetcher.core_commands:relay_command", "Deliver what is pending to the configured sinks."),
    "serve": (
        "link_fetcher.push.commands:serve",
        "The CDSE push endpoint: POST /events with HTTP Basic auth (SUBSCRIPTION_USERNAME / _PASSWORD).",
    ),
    "stac-fetch": (
        "link_fetcher.stac.commands:stac_fetch",
        "Record each new item of an area on a STAC API (by time windows, every page), then deliver it once.",
    ),
    "status": (
        "link_fetcher.core_commands:status",
        "Granules found per publication day and platform, the delivery backlog, freshness per source, and the "
        "granules per source (a product brought by several sources is one granule).",
    ),
    "subscriptions": (
        "link_fetcher.subscriptions.commands:subscriptions",
        "Manage the CDSE subscription, push or PULL (CDSE allows one running subscription per account).",
    ),
}


def load_command(name: str) -> click.Command:
    module_name, attribute = COMMANDS[name][0].split(":")
    command = getattr(importlib.import_module(module_name), attribute)
    assert isinstance(command, click.Command)
    return command


class LazyGroup(click.Group):
    """Imports a command's module only when that command runs (or its own help is asked for)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return load_command(cmd_name) if cmd_name in COMMANDS else None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [
            (name, click.Command(name, help=summary).get_short_help_str(limit))
            for name, (_, summary) in COMMANDS.items()
        ]
        with formatter.section("Commands"):
            formatter.write_dl(sorted(rows))


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="-v for progress logs, -vv for debug.")
@click.pass_context
def cli(ctx: click.Context, verbose: int) -> None:
    """Discover new Sentinel-2 granules, record each once, deliver it to the To Download sinks."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # urllib3 warns at every retry, with the whole URL: -v shows them; a run that fails still ends in one line.
    logging.getLogger("urllib3").setLevel(logging.ERROR if verbose == 0 else level)
    ctx.ensure_object(CliContext)


def _database_error(obj: CliContext, exc: Exception) -> str | None:
    from pydantic import ValidationError

    from link_fetcher.database import database_failure

    try:
        where = obj.database_description()
    except ValidationError:
        where = "the database"
    return database_failure(exc, where)


def _settings_error(exc: ValidationError) -> str:
    """Each problem named by its variable: a group's error locates a field (`page_size` of CdseSettings), which
    the user knows as CDSE_PAGE_SIZE."""
    from link_fetcher.settings import groups, variable_name

    group = next((group for group in groups().values() if group.__name__ == exc.title), None)
    problems = []
    for error in exc.errors():
        first, *rest = [str(part) for part in error["loc"]] or ["settings"]
        if group is not None and first in group.model_fields:
            first = variable_name(group, first)
        problems.append(f"{'.'.join([first, *rest]).upper()}: {error['msg']}")
    return "configuration error: " + "; ".join(problems)


def _failure(obj: CliContext, exc: Exception) -> tuple[int, str] | None:
    """(exit code, one line) for the errors a user can act on; None for a bug (the traceback is shown).
    The libraries are imported here, once something failed, so `--help` does not pay for them."""
    from pydantic import ValidationError

    from link_fetcher.credentials import CredentialsUnavailable

    if isinstance(exc, ValidationError):
        return 2, _settings_error(exc)
    if isinstance(exc, CliFailure):
        return exc.exit_code, str(exc)
    if isinstance(exc, CredentialsUnavailable):  # before the database: naming it may need its secret again
        return (2 if exc.not_set else 1), str(exc)
    if (database := _database_error(obj, exc)) is not None:
        return 1, database
    return None


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
    except BrokenPipeError:
        # The reader went away (`pending | head`): stop quietly. Python flushes stdout again at exit, and that
        # flush would fail too, so stdout now points at /dev/null.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        failure = _failure(ctx_obj, exc)
        if failure is None:
            raise
        exit_code, message = failure
        print(f"error: {message}", file=sys.stderr)
        return exit_code

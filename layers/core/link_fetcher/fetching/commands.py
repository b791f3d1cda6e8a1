"""`link-fetcher fetch`: the Step Functions flow run locally — each day and platform read to the end, then delivery;
`link-fetcher deletions`: CDSE's DeletedProducts per deletion day, then the deletion messages delivered."""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator

import click
from rich import box
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from link_fetcher.cdse.search import CdseCatalogue
from link_fetcher.cli_support import (
    DAY,
    CliContext,
    CliFailure,
    ConfigurationError,
    cli_recorder,
    deliver_and_report,
    pass_context,
    stderr,
    stdout,
)
from link_fetcher.fetching.deletions import DeletionDayReport, DeletionFetcher
from link_fetcher.fetching.fetch import DayFetcher, DayReport, PageOutcome
from link_fetcher.fetching.query import PagingError, days_between
from link_fetcher.http import HttpError
from link_fetcher.settings import KNOWN_PLATFORMS
from link_fetcher.timestamps import MALFORMED


def _print_summary(reports: list[DayReport]) -> None:
    table = Table(title="fetch", box=box.SIMPLE_HEAD)  # fits 80 columns (a log file, CI)
    for column in ("day", "platform", "available", "new", "skipped", "requests", "done"):
        table.add_column(column, justify="left" if column in ("day", "platform", "done") else "right", no_wrap=True)
    for report in reports:
        table.add_row(
            report.day.isoformat(),
            report.platform,
            str(report.available),
            str(report.new),
            str(report.skipped),
            str(report.requests),
            "unchanged" if report.unchanged else "yes" if report.completed else "no",
        )
    stdout.print(table)
    for report in reports:
        if malformed := report.skipped_because[MALFORMED]:
            stdout.print(
                f"{report.day} {report.platform}: {malformed} of the skipped were malformed (logged with Id and field)"
            )


def _fetch_all(fetcher: DayFetcher, pairs: list[tuple[dt.date, str]]) -> list[DayReport]:
    reports: list[DayReport] = []
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("read, {task.fields[new]} new, {task.fields[skipped]} skipped"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=stderr, transient=True, disable=not stderr.is_terminal) as progress:
        for day, platform in pairs:
            task = progress.add_task(f"{day} {platform}", total=None, new=0, skipped=0)

            def on_page(outcome: PageOutcome, task: TaskID = task) -> None:
                fields = progress.tasks[task].fields
                progress.update(
                    task,
                    advance=outcome.read,
                    total=max(outcome.available, progress.tasks[task].completed + outcome.read),
                    new=fields["new"] + outcome.new,
                    skipped=fields["skipped"] + outcome.skipped,
                )

            reports.append(fetcher.fetch(day, platform, on_page=on_page))
            progress.update(task, total=progress.tasks[task].completed)
    return reports


def _days(first_day: dt.datetime, last_day: dt.datetime | None) -> list[dt.date]:
    days = days_between(first_day.date(), (last_day or first_day).date())
    if not days:
        raise ConfigurationError("--to is before --day")
    return days


@contextlib.contextmanager
def _resumable() -> Iterator[None]:
    """A read that fails keeps the pages it recorded: the failure says so, as one line."""
    try:
        yield
    except (HttpError, PagingError) as exc:
        raise CliFailure(f"{exc} (pages recorded so far are kept; run the same command again to finish)") from None


@click.command()
@click.option("--day", "first_day", type=DAY, required=True, help="Publication day (UTC), YYYY-MM-DD.")
@click.option("--to", "last_day", type=DAY, help="Last publication day, included (default: --day).")
@click.option(
    "--platform",
    "platforms",
    multiple=True,
    type=click.Choice(KNOWN_PLATFORMS, case_sensitive=False),
    help="Platform (repeatable; default: PLATFORMS).",
)
@pass_context
def fetch(obj: CliContext, first_day: dt.datetime, last_day: dt.datetime | None, platforms: tuple[str, ...]) -> int:
    """Record every product published on the days, for each platform, then deliver the new ones once.

    Runs again cheaply: a finished day whose CDSE count has not changed costs one request.
    """
    days = _days(first_day, last_day)
    settings = obj.settings
    chosen = [platform.upper() for platform in platforms] or settings.criteria.platforms
    recorder = cli_recorder(obj)
    fetcher = DayFetcher.from_settings(settings, recorder, CdseCatalogue(settings.cdse.catalogue_url))
    with _resumable():
        reports = _fetch_all(fetcher, [(day, platform) for day in days for platform in chosen])
    _print_summary(reports)
    return deliver_and_report(recorder)


def _print_deletions(reports: list[DeletionDayReport]) -> None:
    table = Table(title="deletions", box=box.SIMPLE_HEAD)
    # Fits 80 columns: `available` is CDSE's count of the day's deletions, `bad` the malformed ones skipped.
    # `refused`: deletions of recorded granules not believed (another name, dated before publication).
    for column in ("day", "available", "read", "announced", "remembered", "refused", "bad", "done"):
        table.add_column(column, justify="left" if column in ("day", "done") else "right", no_wrap=True)
    for report in reports:
        table.add_row(
            report.day.isoformat(),
            str(report.available),
            str(report.read),
            str(report.announced),
            str(report.remembered),
            str(report.refused),
            str(report.malformed),
            "unchanged" if report.unchanged else "yes" if report.completed else "no",
        )
    stdout.print(table)


@click.command()
@click.option("--day", "first_day", type=DAY, required=True, help="Deletion day (UTC), YYYY-MM-DD.")
@click.option("--to", "last_day", type=DAY, help="Last deletion day, included (default: --day).")
@pass_context
def deletions(obj: CliContext, first_day: dt.datetime, last_day: dt.datetime | None) -> int:
    """Read the products CDSE deleted on the days; each granule recorded earlier is marked deleted and announced.

    Each is announced once, whichever source saw it first.
    Deletions of products never recorded are remembered, so they are not announced if they show up later.

    Runs again cheaply: a finished day whose count has not changed costs one request."""
    days = _days(first_day, last_day)
    recorder = cli_recorder(obj)
    fetcher = DeletionFetcher.from_settings(obj.settings, recorder)
    with _resumable():
        reports = [fetcher.fetch(day) for day in days]
    _print_deletions(reports)
    return deliver_and_report(recorder)

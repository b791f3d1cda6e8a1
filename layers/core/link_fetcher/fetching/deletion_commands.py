"""`link-fetcher deletions`: poll CDSE's DeletedProducts per deletion day, then deliver the deletion messages."""

from __future__ import annotations

import datetime as dt

import click
from rich import box
from rich.table import Table

from link_fetcher.cli_support import (
    DAY,
    CliContext,
    CliFailure,
    ConfigurationError,
    cli_recorder,
    pass_context,
    report_delivery,
    stdout,
)
from link_fetcher.fetching.deletions import DeletionDayReport, DeletionFetcher
from link_fetcher.fetching.query import PagingError, days_between
from link_fetcher.http import HttpError


def _print_summary(reports: list[DeletionDayReport]) -> None:
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
    days = days_between(first_day.date(), (last_day or first_day).date())
    if not days:
        raise ConfigurationError("--to is before --day")
    recorder = cli_recorder(obj)
    fetcher = DeletionFetcher.from_settings(obj.settings, recorder)
    reports = []
    try:
        for day in days:
            reports.append(fetcher.fetch(day))
    except (HttpError, PagingError) as exc:
        raise CliFailure(f"{exc} (pages recorded so far are kept; run the same command again to finish)") from None
    _print_summary(reports)
    return report_delivery(recorder.deliver(), sinks_configured=bool(recorder.sinks))

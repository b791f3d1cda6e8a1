"""CLI: `download --id ID …`, `download --from-queue [--max N]`, `reconcile [--since D]` (SPEC §7)."""

from __future__ import annotations

import collections
import datetime as dt

import click
from botocore.exceptions import BotoCoreError, ClientError
from rich.table import Table

from link_fetcher.cli_support import (
    CliContext,
    CliFailure,
    ConfigurationError,
    pass_context,
    report_delivery,
    run_relay,
    stderr,
    stdout,
)
from link_fetcher.downloader.queue import SqsQueue, consume
from link_fetcher.downloader.reconcile import day_start
from link_fetcher.downloader.reconcile import reconcile as run_reconcile
from link_fetcher.downloader.service import Outcome, Result, build_downloader
from link_fetcher.downloader.storage import build_storage
from link_fetcher.recording import sink_names_for_recording
from link_fetcher.sinks import build_sinks


def _print_outcome(outcome: Outcome) -> None:
    detail = outcome.object_key or outcome.error or ""
    stderr.print(f"{outcome.granule_id or '(bad message)'}: {outcome.result} {detail}", markup=False, highlight=False)


@click.command()
@click.option("--id", "ids", multiple=True, metavar="ID", help="A recorded granule id (repeatable).")
@click.option("--from-queue", is_flag=True, help="Consume the TO_DOWNLOAD_QUEUE_URL queue until it is empty.")
@click.option("--max", "max_messages", type=click.IntRange(min=1), help="With --from-queue: stop after N messages.")
@pass_context
def download(obj: CliContext, ids: tuple[str, ...], from_queue: bool, max_messages: int | None) -> int:
    """Download granules into UPLOAD_BUCKET (or DOWNLOAD_DIR), verified against CDSE's checksums."""
    if bool(ids) == from_queue:
        raise click.UsageError("give --id ID (repeatable) or --from-queue")
    if max_messages is not None and not from_queue:
        raise click.UsageError("--max goes with --from-queue")
    settings = obj.settings
    if from_queue and not settings.sinks.to_download_queue_url:
        raise ConfigurationError("--from-queue needs TO_DOWNLOAD_QUEUE_URL")
    try:
        downloader = build_downloader(settings, obj.engine())
    except ValueError as exc:  # e.g. a plain-http CDSE_DOWNLOAD_URL
        raise ConfigurationError(str(exc)) from exc
    if from_queue:
        assert settings.sinks.to_download_queue_url  # checked above
        queue = SqsQueue(settings.sinks.to_download_queue_url)
        try:
            outcomes = consume(downloader, queue, limit=max_messages, on_outcome=_print_outcome)
        except (BotoCoreError, ClientError) as exc:
            raise CliFailure(f"queue {settings.sinks.to_download_queue_url}: {exc}") from exc
    else:
        outcomes = downloader.download(list(ids), on_outcome=_print_outcome)
    counts = collections.Counter(outcome.result for outcome in outcomes)
    table = Table(title=f"download → {downloader.storage.describe()}")
    for result in Result:
        table.add_column(str(result), justify="right")
    table.add_column("MB transferred", justify="right")
    table.add_row(*(str(counts[result]) for result in Result), f"{sum(o.size for o in outcomes) / 1e6:.1f}")
    stdout.print(table)
    return 0 if all(outcome.ok for outcome in outcomes) else 1


def _parse_day(ctx: click.Context, param: click.Parameter, value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        return day_start(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from exc


@click.command()
@click.option("--since", callback=_parse_day, metavar="YYYY-MM-DD", help="Only granules first seen since this day.")
@pass_context
def reconcile(obj: CliContext, since: dt.datetime | None) -> int:
    """Compare the bucket (or folder) with the database; requeue what is missing. Exit 1 when it found problems."""
    settings = obj.settings
    sinks = build_sinks(settings)
    storage = build_storage(settings)
    try:
        report = run_reconcile(
            obj.engine(),
            storage,
            sink_names=sink_names_for_recording(sinks),
            requeue_after=dt.timedelta(hours=settings.downloader.reconcile_requeue_after_hours),
            since=since,
        )
    except (BotoCoreError, ClientError) as exc:
        raise CliFailure(f"storage {storage.describe()}: {exc}") from exc
    table = Table(title=f"reconcile {storage.describe()}" + (f" since {since:%Y-%m-%d}" if since else ""))
    table.add_column("check")
    table.add_column("count", justify="right")
    table.add_column("action")
    table.add_row("downloaded granules checked", str(report.checked), "")
    table.add_row("objects listed", str(report.objects_seen), "")
    table.add_row("object missing", str(len(report.missing)), "reset, requeued")
    table.add_row("object of the wrong size", str(len(report.wrong_size)), "reset, requeued")
    table.add_row("not downloaded after the requeue age", str(len(report.stale)), "requeued")
    table.add_row("orphan objects (no granule)", str(len(report.orphans)), "listed below")
    table.add_row("unreadable granule rows", str(len(report.unreadable)), "listed below")
    stdout.print(table)
    for key in report.orphans:
        stdout.print(f"orphan: {key}", markup=False, highlight=False)
    for granule_id, error in report.unreadable.items():
        stdout.print(f"unreadable: {granule_id}: {error}", markup=False, highlight=False)
    if sinks and (report.missing or report.wrong_size or report.stale):
        report_delivery(run_relay(obj))
    return 0 if report.consistent else 1

"""The commands on the database and the outbox itself: `migrate`, `status`, `pending`, `relay`."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.table import Table

from db import DeliveryStatus, list_deliveries
from db.migrate import current_revision, upgrade_head
from link_fetcher.cli_support import CliContext, ConfigurationError, pass_context, report_delivery, run_relay, stdout
from link_fetcher.sinks import build_sinks


@click.command()
@pass_context
def migrate(obj: CliContext) -> int:
    """Create or upgrade the schema (Alembic); running it again changes nothing."""
    engine = obj.engine()
    upgrade_head(engine)
    stdout.print(f"{obj.database_description()} is at schema revision {current_revision(engine)}")
    return 0


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the whole status as one JSON object.")
@pass_context
def status(obj: CliContext, as_json: bool) -> int:
    """Granules found per publication day and platform, the delivery backlog, freshness per source, and the
    granules per source (a product brought by several sources is one granule).

    Freshness covers the granules recorded in the last 24 h: publication to first delivery to a sink."""
    from db.status import status_document

    with obj.engine().connect() as conn:
        document = status_document(conn)
    if as_json:
        sys.stdout.write(json.dumps(document) + "\n")
        return 0
    stdout.print(days_table(document["days"]))
    stdout.print(deliveries_table(document["deliveries"]))
    stdout.print(freshness_table(document["freshness"], obj.settings.relay.freshness_slo_seconds))
    stdout.print(lifecycle_table(document["deleted"], document["reprocessed"]))
    stdout.print(sources_table(document["sources"]))
    return 0


def days_table(days: list[dict[str, Any]]) -> Table:
    table = Table(title="granule_count")
    for column in ("day", "platform", "available", "fetched", "completed", "last fetched (UTC)"):
        table.add_column(column, justify="right" if column in ("available", "fetched") else "left")
    for day in days:
        last = day["last_fetched_time"]
        table.add_row(
            day["day"],
            day["platform"],
            str(day["available"]),
            str(day["fetched"]),
            "yes" if day["completed"] else "no",
            last[:19].replace("T", " ") if last else "",
        )
    return table


def deliveries_table(deliveries: dict[str, dict[str, Any]]) -> Table:
    table = Table(title="deliveries")
    for column in ("sink", "pending", "sent", "failed", "oldest pending"):
        table.add_column(column, justify="left" if column == "sink" else "right")
    for sink, counts in deliveries.items():
        oldest = counts["oldest_pending_seconds"]
        table.add_row(
            sink, *(str(counts[str(s)]) for s in DeliveryStatus), duration(oldest) if counts["pending"] else ""
        )
    return table


def freshness_table(freshness: dict[str, dict[str, Any]], slo_seconds: int) -> Table:
    table = Table(
        title=f"freshness, last 24 h (publication → first delivery; objective p95 ≤ {duration(slo_seconds)})",
        caption="rec p95: publication → recorded; relay p95: recorded → delivered; unsent: recorded, not delivered",
    )
    for column in ("source", "sent", "p50", "p95", "max", "rec p95", "relay p95", "unsent"):
        table.add_column(column, justify="left" if column == "source" else "right")
    for source, figures in freshness.items():
        p95 = figures["p95_seconds"]
        table.add_row(
            source,
            str(figures["count"]),
            duration(figures["p50_seconds"]),
            f"[red]{duration(p95)}[/red]" if p95 is not None and p95 > slo_seconds else duration(p95),
            duration(figures["max_seconds"]),
            duration(figures["recording"]["p95_seconds"]),
            duration(figures["relaying"]["p95_seconds"]),
            str(figures["undelivered"]),
        )
    return table


def lifecycle_table(deleted: list[dict[str, Any]], reprocessed: list[dict[str, Any]]) -> Table:
    """Per UTC day (last 30): deletions (of recorded granules, announced; of others, remembered) and reprocessings
    (and the earlier granules a `replace` policy deleted)."""
    table = Table(title="deleted and reprocessed per day, last 30 days (UTC)")
    for column in ("day", "deleted", "remembered", "reprocessed", "replaced"):
        table.add_column(column, justify="left" if column == "day" else "right")
    by_day: dict[str, dict[str, int]] = {}
    for row in deleted + reprocessed:
        by_day.setdefault(row["day"], {}).update({key: value for key, value in row.items() if key != "day"})
    for day, counts in sorted(by_day.items()):
        table.add_row(
            day,
            *(str(counts.get(key, 0)) for key in ("announced", "remembered", "reprocessed", "replaced")),
        )
    return table


def sources_table(sources: list[dict[str, Any]]) -> Table:
    """Granules recorded in the last 24 h per first source, and the other sources that brought the same product
    (one granule each time: SPEC §11)."""
    table = Table(title="granules recorded per source, last 24 h (a product from several sources is one granule)")
    for column in ("first from", "also from", "granules"):
        table.add_column(column, justify="right" if column == "granules" else "left")
    for row in sources:
        table.add_row(row["source"], ", ".join(row["also"]) or "-", str(row["granules"]))
    return table


def duration(seconds: float | None) -> str:
    """`42 s`, `12.5 min`, `3.2 h`, `2.1 d`; empty when there is nothing to measure."""
    if seconds is None:
        return ""
    for unit, size in (("d", 86_400), ("h", 3_600), ("min", 60)):
        if abs(seconds) >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


@click.command()
@click.option("--include-failed", is_flag=True, help="Also list deliveries that ran out of attempts.")
@pass_context
def pending(obj: CliContext, include_failed: bool) -> int:
    """Pending deliveries as JSON lines (id, sink, status, attempts, last_error, …)."""
    statuses = [DeliveryStatus.PENDING] + ([DeliveryStatus.FAILED] if include_failed else [])
    with obj.engine().connect() as conn:
        for delivery in list_deliveries(conn, statuses):
            sys.stdout.write(json.dumps(delivery) + "\n")
    return 0


@click.command("relay")
@click.option("--retry-failed", is_flag=True, help="Give failed deliveries a fresh set of attempts first.")
@pass_context
def relay_command(obj: CliContext, retry_failed: bool) -> int:
    """Deliver what is pending to the configured sinks."""
    sinks = build_sinks(obj.settings)
    if not sinks:
        raise ConfigurationError("no sink configured: set TO_DOWNLOAD_QUEUE_URL and/or REDIS_URL")
    report = run_relay(obj, retry_failed=retry_failed)
    return report_delivery(report)

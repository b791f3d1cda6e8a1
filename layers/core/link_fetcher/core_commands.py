"""The commands on the database and the outbox itself: `migrate`, `status`, `pending`, `relay`."""

from __future__ import annotations

import json
import sys

import click
from rich.table import Table
from sqlalchemy import select

from db import DeliveryStatus, list_deliveries, upgrade_head
from db.migrate import current_revision
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

"""Scheduled reconciliation: the bucket against the `granule` rows (see `link-fetcher reconcile`).

Event: `{}` (everything) or `{"since": "YYYY-MM-DD"}`. Returns the report's counts; orphan keys are logged.
Requeued granules are delivered by the relay, which runs on its own schedule.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from aws_lambda_powertools import Logger

from link_fetcher.database import ENGINE_SETTINGS, engine_for
from link_fetcher.downloader.reconcile import day_start, reconcile
from link_fetcher.downloader.storage import build_storage
from link_fetcher.observability import Service
from link_fetcher.recording import sink_names_for_recording
from link_fetcher.settings import DownloaderSettings, SinkSettings, get_settings
from link_fetcher.sinks import build_sinks

# The settings groups read here: the stack gives this function their variables (cdk/link_fetcher_cdk/environment.py).
SETTINGS_READ = (*ENGINE_SETTINGS, DownloaderSettings, SinkSettings)

logger = Logger(service=Service.RECONCILE)


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    settings = get_settings()
    since = event.get("since") if isinstance(event, dict) else None
    report = reconcile(
        engine_for(settings),
        build_storage(settings),
        sink_names=sink_names_for_recording(build_sinks(settings)),
        requeue_after=dt.timedelta(hours=settings.downloader.reconcile_requeue_after_hours),
        since=day_start(since) if since else None,
    )
    if report.orphans:
        logger.warning("orphan objects", count=len(report.orphans), keys=report.orphans[:100])
    return {
        "consistent": report.consistent,
        "checked": report.checked,
        "objects": report.objects_seen,
        "missing": len(report.missing),
        "wrong_size": len(report.wrong_size),
        "requeued_stale": len(report.stale),
        "orphans": len(report.orphans),
    }

"""One run of one watch, as the scheduled Lambda does it: check, record every new item, deliver."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any

from link_fetcher.recording import Recorder
from link_fetcher.settings import Settings
from link_fetcher.stac.fetching import CollectionSummary, fetch_items, open_and_check
from link_fetcher.stac.timerange import parse_range
from link_fetcher.stac.watches import load_watches, select_watches


def summary_dict(summary: CollectionSummary) -> dict[str, Any]:
    fields = dataclasses.asdict(summary)
    fields["rejected"] = dict(summary.rejected)
    return fields


def run_watch(
    recorder: Recorder,
    settings: Settings,
    name: str,
    *,
    datetime_text: str | None = None,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """Run the watch `name` over `datetime_text` (START/END), else over its lookback up to `now`."""
    now = now or dt.datetime.now(dt.UTC)
    path = Path(settings.stac.watches_file)
    (watch,) = select_watches(load_watches(path), (name,), every=False, source=str(path))
    time_range = parse_range(datetime_text, now=now) if datetime_text else None
    query = watch.query(path.parent, now=now, time_range=time_range)
    (checked,) = open_and_check([(watch.name, query)], attempts=settings.stac.http_attempts)
    summaries = fetch_items(
        recorder,
        checked.api,
        query,
        page_size=settings.stac.page_size,
        keep_unknown_cloud=settings.stac.keep_unknown_cloud,
    )
    report = recorder.deliver()
    return {
        "watch": watch.name,
        "datetime": str(query.time_range),
        "collections": [summary_dict(summary) for summary in summaries],
        "delivered": report.sent,
        "pending": report.pending,
        "failed": report.failed,
    }

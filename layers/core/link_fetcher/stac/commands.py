"""`link-fetcher stac-fetch`: record the items of an area on a STAC API (or of named watches), then deliver."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from link_fetcher.cli_support import (
    CliContext,
    CliFailure,
    ConfigurationError,
    cli_recorder,
    deliver_and_report,
    pass_context,
    stderr,
)
from link_fetcher.cli_support import stdout as console
from link_fetcher.recording import Recorder
from link_fetcher.stac.area import Area, AreaError, load_geojson, parse_bbox
from link_fetcher.stac.client import StacApiError, StacUnreachable, UnknownCollection
from link_fetcher.stac.fetching import (
    DEFAULT_WINDOW,
    CheckedQuery,
    CollectionSummary,
    StacQuery,
    fetch_items,
    open_and_check,
)
from link_fetcher.stac.items import UnknownBands
from link_fetcher.stac.timerange import TimeRange, TimeRangeError, parse_duration, parse_range, window_count
from link_fetcher.stac.watches import WatchConfigError, load_watches, select_watches


def _bands(values: Sequence[str]) -> tuple[str, ...]:
    """`--assets red,green --assets nir` → (red, green, nir), first occurrence kept."""
    names = [name.strip() for value in values for name in value.split(",") if name.strip()]
    return tuple(dict.fromkeys(names))


def _area(bbox: str | None, intersects: Path | None) -> Area:
    if (bbox is None) == (intersects is None):
        raise ConfigurationError("give exactly one of --bbox and --intersects")
    return parse_bbox(bbox) if bbox is not None else load_geojson(intersects)  # type: ignore[arg-type]


@dataclasses.dataclass(frozen=True, slots=True)
class SearchOptions:
    """The search as the command-line options describe it (instead of a watch)."""

    api: str | None
    collections: tuple[str, ...]
    bbox: str | None
    intersects: Path | None
    window: str | None
    assets: tuple[str, ...]
    max_cloud: float | None

    def given(self) -> bool:
        return any(getattr(self, field.name) not in (None, ()) for field in dataclasses.fields(self))

    def queries(self, datetime_text: str | None, now: dt.datetime) -> list[tuple[str, StacQuery]]:
        if not self.api or not self.collections or not datetime_text:
            raise ConfigurationError("stac-fetch needs --api, --collection and --datetime (or --watch NAME / --all)")
        query = StacQuery(
            api_url=self.api,
            collections=tuple(dict.fromkeys(self.collections)),
            area=_area(self.bbox, self.intersects),
            time_range=parse_range(datetime_text, now=now),
            window=parse_duration(self.window) if self.window else DEFAULT_WINDOW,
            bands=_bands(self.assets),
            max_cloud=self.max_cloud,
        )
        return [("", query)]


def _queries_from_watches(
    watches_file: Path, names: tuple[str, ...], every: bool, datetime_text: str | None, now: dt.datetime
) -> list[tuple[str, StacQuery]]:
    watches = select_watches(load_watches(watches_file), names, every=every, source=str(watches_file))
    time_range: TimeRange | None = parse_range(datetime_text, now=now) if datetime_text else None
    base_dir = watches_file.parent
    return [(watch.name, watch.query(base_dir, now=now, time_range=time_range)) for watch in watches]


def _print_summary(results: list[tuple[str, CollectionSummary]]) -> None:
    """One line per watch and collection (plain text: it ends up in logs as often as on a terminal)."""
    for label, summary in results:
        line = (
            f"{label + ': ' if label else ''}{summary.collection}: {summary.windows} windows, {summary.pages} pages, "
            f"{summary.returned} items returned, {summary.recorded} new, {summary.known} already recorded"
        )
        if summary.rejected:
            line += "; skipped " + ", ".join(f"{n} {reason}" for reason, n in sorted(summary.rejected.items()))
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def _fetch_all(obj: CliContext, checked: list[CheckedQuery], recorder: Recorder) -> list[tuple[str, CollectionSummary]]:
    settings = obj.settings
    total = sum(window_count(c.query.time_range, c.query.window) * len(c.query.collections) for c in checked)
    results: list[tuple[str, CollectionSummary]] = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=stderr, transient=True) as progress:
        task = progress.add_task("windows", total=total)

        def on_window(collection: str, window: TimeRange, summary: CollectionSummary) -> None:
            progress.update(
                task, advance=1, description=f"{collection} {window.start:%Y-%m-%d %H:%M} +{summary.recorded}"
            )

        for query in checked:
            summaries = fetch_items(
                recorder,
                query.api,
                query.query,
                page_size=settings.stac.page_size,
                keep_unknown_cloud=settings.stac.keep_unknown_cloud,
                on_window=on_window,
            )
            results.extend((query.label, summary) for summary in summaries)
    return results


@click.command("stac-fetch")
@click.option("--api", help="STAC API root URL, e.g. https://earth-search.aws.element84.com/v1.")
@click.option("--collection", "collections", multiple=True, help="Collection id (repeatable).")
@click.option("--bbox", help="Area: minx,miny,maxx,maxy in degrees.")
@click.option("--intersects", type=click.Path(path_type=Path), help="Area: a GeoJSON file (geometry or features).")
@click.option("--datetime", "datetime_text", help="START/END (dates or RFC 3339; END exclusive, `..` = now).")
@click.option("--window", help="Search window size, e.g. 6h or 1d (default 1d).")
@click.option("--assets", multiple=True, help="Bands to deliver, comma-separated (default: every asset).")
@click.option("--max-cloud", type=click.FloatRange(0, 100), help="Largest eo:cloud_cover to keep (percent).")
@click.option("--watch", "watch_names", multiple=True, help="Run this watch from the watches file (repeatable).")
@click.option("--all", "all_watches", is_flag=True, help="Run every watch in the watches file.")
@click.option("--watches-file", type=click.Path(path_type=Path), help="Default: STAC_WATCHES_FILE (watches.toml).")
@pass_context
def stac_fetch(
    obj: CliContext,
    /,
    datetime_text: str | None,
    watch_names: tuple[str, ...],
    all_watches: bool,
    watches_file: Path | None,
    **search: Any,
) -> int:
    """Record each new item of an area on a STAC API (by time windows, every page), then deliver it once.

    Either describe the search (--api, --collection, --bbox or --intersects, --datetime) or name watches
    (--watch NAME, --all; --datetime then overrides their lookback).
    """
    now = dt.datetime.now(dt.UTC)
    from_watches = bool(watch_names) or all_watches
    options = SearchOptions(**search)  # the other options: --api, --collection, --bbox, …
    try:
        if from_watches and options.given():
            raise ConfigurationError("--watch/--all take the search from the watches file: drop the search options")
        if from_watches:
            path = watches_file or obj.settings.stac.watches_file
            queries = _queries_from_watches(path, watch_names, all_watches, datetime_text, now)
        else:
            queries = options.queries(datetime_text, now)
        checked = open_and_check(queries, attempts=obj.settings.stac.http_attempts)
    except (AreaError, TimeRangeError, WatchConfigError, UnknownCollection, UnknownBands, StacUnreachable) as exc:
        raise ConfigurationError(str(exc)) from None
    except StacApiError as exc:
        raise CliFailure(str(exc)) from None

    recorder = cli_recorder(obj)
    try:
        results = _fetch_all(obj, checked, recorder)
    except StacApiError as exc:
        # What was recorded before the failure is delivered now rather than at the next run.
        deliver_and_report(recorder)
        raise CliFailure(f"{exc} (items recorded so far are kept; run the same range again to finish)") from None
    _print_summary(results)
    return deliver_and_report(recorder)

"""STAC source throughput: items recorded per second from the fake STAC API (tests/fakes/stac_api.py), and the
cost of a re-run that finds everything already recorded.

Prints items/s for a first run and for a re-run, HTTP searches and database statements per page. Usage:
python -m benchmarks.stac_fetch [--items N] [--days D] [--page-size P] [--window 1d]
"""

from __future__ import annotations

import argparse
import datetime as dt
import time

from benchmarks.common import StatementCounter, scratch_database
from link_fetcher.recording import Recorder
from link_fetcher.stac.area import parse_bbox
from link_fetcher.stac.fetching import StacQuery, fetch_items, open_and_check
from link_fetcher.stac.timerange import TimeRange, parse_duration
from tests.fakes.stac_api import FakeStacApi, stac_item

START = dt.datetime(2024, 9, 1, tzinfo=dt.UTC)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=3_000)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--window", default="1d")
    args = parser.parse_args()

    spacing = dt.timedelta(days=args.days) / args.items
    tiles = ("32TNS", "32TPS", "33TUM", "33TVM")
    items = [
        stac_item("sentinel-2-l2a", sensed=START + i * spacing, tile=tiles[i % 4], sequence=i)
        for i in range(args.items)
    ]
    with scratch_database() as engine, FakeStacApi(items) as fake:
        query = StacQuery(
            api_url=fake.url,
            collections=("sentinel-2-l2a",),
            area=parse_bbox("10,45,12,47"),
            time_range=TimeRange(START, START + dt.timedelta(days=args.days)),
            window=parse_duration(args.window),
            bands=("red", "green", "nir"),
        )
        counter = StatementCounter(engine)
        for run in ("first run", "re-run"):
            counter.reset()
            searches_before = len(fake.searches)
            started = time.perf_counter()
            (checked,) = open_and_check([("bench", query)], attempts=3)
            (summary,) = fetch_items(Recorder(engine), checked.api, query, page_size=args.page_size)
            seconds = time.perf_counter() - started
            searches = len(fake.searches) - searches_before
            print(
                f"{run}: {summary.returned} items in {seconds:.2f} s = {summary.returned / seconds:,.0f} items/s; "
                f"{summary.recorded} new, {summary.known} known; {searches} searches for {summary.pages} pages; "
                f"{counter.count() / summary.pages:.1f} database statements per page"
            )


if __name__ == "__main__":
    main()

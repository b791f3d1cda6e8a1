"""DeletedProducts polling throughput (SPEC §9): one deletion day read from the fake CDSE catalogue (12,500
deletions by default: more than `$skip` can reach; 1,000 a page), recorded in real PostgreSQL, a share of them
deletions of granules recorded earlier (announced, one delivery per sink) and the rest remembered.

Prints deletions/s, statements per page (the deletions of a page are one statement), and what re-running the
finished day costs. Usage: python -m benchmarks.deletions [--deletions N] [--recorded-share F]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import time

from benchmarks.common import StatementCounter, scratch_database
from db import GranuleRecord, Source, record_granules
from link_fetcher.cdse.deleted_products import DeletedProductsCatalogue, remember_criteria
from link_fetcher.cdse.products import load_allowed_tiles
from link_fetcher.fetching.deletions import DeletionFetcher
from link_fetcher.recording import Recorder
from link_fetcher.settings import PACKAGED_TILES_FILE
from tests.fakes.cdse_catalogue import FakeCatalogue, day_products, deleted_entity

DAY = dt.date(2024, 9, 12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deletions", type=int, default=12_500)
    parser.add_argument("--recorded-share", type=float, default=0.1, help="share of them recorded earlier")
    args = parser.parse_args()
    start = dt.datetime.combine(DAY, dt.time(), dt.UTC)
    step = dt.timedelta(days=1) / args.deletions
    products = day_products(DAY, "S2A", args.deletions, allowed_share=1.0)
    recorded = products[: int(len(products) * args.recorded_share)]
    with scratch_database() as engine, FakeCatalogue() as catalogue:
        with engine.begin() as conn:
            records = [
                GranuleRecord(id=p["Id"], filename=p["Name"], download_url="https://d", source=Source.SEARCH)
                for p in recorded
            ]
            if records:
                record_granules(conn, records, ["sqs", "redis"])
        catalogue.add_deleted([deleted_entity(p, start + i * step) for i, p in enumerate(products)])
        fetcher = DeletionFetcher(
            Recorder(engine, sink_names=["sqs", "redis"]),
            DeletedProductsCatalogue(catalogue.url),
            criteria=remember_criteria(load_allowed_tiles(PACKAGED_TILES_FILE), ["S2A"], "S2MSI1C"),
            download_url="https://download.example",
        )
        counter = StatementCounter(engine)
        began = time.perf_counter()
        report = fetcher.fetch(DAY)
        elapsed = time.perf_counter() - began
        pages = report.requests
        statements = counter.count()
        counter.reset()
        began = time.perf_counter()
        rerun = fetcher.fetch(DAY)
        rerun_ms = (time.perf_counter() - began) * 1000
    print(
        f"{args.deletions} deletions in one day ({len(recorded)} of recorded granules, 2 sinks); "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    print(f"  read and recorded: {elapsed:.2f} s, {args.deletions / elapsed:,.0f} deletions/s, {pages} requests")
    print(f"  statements: {statements} in all, {statements / pages:.1f} per page (the page's deletions, its progress)")
    print(f"  announced {report.announced}, remembered {report.remembered}, completed {report.completed}")
    print(f"  re-run of the finished day: {rerun.requests} request, {rerun_ms:.0f} ms, unchanged {rerun.unchanged}")


if __name__ == "__main__":
    main()

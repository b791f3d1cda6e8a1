"""Polling throughput end to end: one publication day of one platform read from a fake CDSE catalogue
(10,000 products, 1,000 a page, 60 % on allowed tiles), recorded in real PostgreSQL and relayed to the
minimal SQS-compatible endpoint (not moto).

Prints products/s (fetch + record, then with the relay), INSERT statements per page, and what re-running the
finished day costs. Usage: python -m benchmarks.fetch_day [--products N] [--page N] [--workers N]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import multiprocessing
import os
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection

from sqlalchemy import create_engine

from benchmarks.common import StatementCounter, scratch_database, sqs_client, sqs_endpoint_process
from link_fetcher.cdse.products import load_allowed_tiles
from link_fetcher.cdse.search import CdseCatalogue
from link_fetcher.fetching import DayFetcher
from link_fetcher.recording import Recorder
from link_fetcher.relay import relay
from link_fetcher.settings import PACKAGED_TILES_FILE
from link_fetcher.sinks.sqs import SqsSink
from tests.fakes.cdse_catalogue import FakeCatalogue, day_products
from tests.fakes.sqs_endpoint import ACCOUNT

DAY = dt.date(2024, 9, 12)


@contextlib.contextmanager
def catalogue_process(products: int, allowed_share: float) -> Iterator[str]:
    """The fake CDSE catalogue in a process of its own, as CDSE is: its work does not compete for our GIL."""
    parent, child = multiprocessing.Pipe()
    process = multiprocessing.get_context("fork").Process(
        target=_serve_catalogue, args=(products, allowed_share, child), daemon=True
    )
    process.start()
    try:
        yield parent.recv()
    finally:
        parent.send("stop")
        process.join(10)


def _serve_catalogue(products: int, allowed_share: float, pipe: Connection) -> None:
    with FakeCatalogue() as catalogue:
        catalogue.add(day_products(DAY, "S2A", products, allowed_share=allowed_share))
        pipe.send(catalogue.url)
        pipe.recv()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--page", type=int, default=1_000)
    parser.add_argument("--allowed-share", type=float, default=0.6)
    parser.add_argument("--workers", type=int, default=1, help="relay workers")
    args = parser.parse_args()

    with (
        catalogue_process(args.products, args.allowed_share) as catalogue_url,
        scratch_database() as engine,
        sqs_endpoint_process() as sqs_url,
    ):
        os.environ.update(AWS_ENDPOINT_URL=sqs_url, AWS_DEFAULT_REGION="us-east-1")
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "benchmark")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "benchmark")
        sink = SqsSink(f"{sqs_url}/{ACCOUNT}/to-download")  # the production client configuration
        client = sqs_client(sqs_url)
        # The fetcher gets an engine of its own, so its statements are counted apart from the relay's.
        fetch_engine = create_engine(engine.url)
        fetcher = DayFetcher(
            Recorder(fetch_engine, sink_names=[sink.name]),
            CdseCatalogue(catalogue_url),
            allowed_tiles=load_allowed_tiles(PACKAGED_TILES_FILE),
            product_type="S2MSI1C",
            max_acquisition_age_days=30,
            download_url="https://download.dataspace.copernicus.eu",
            page_size=args.page,
        )
        counter = StatementCounter(fetch_engine)
        started = time.perf_counter()
        report = fetcher.fetch(DAY, "S2A")
        fetched_at = time.perf_counter()
        delivery = relay(engine, [sink], workers=args.workers)
        finished_at = time.perf_counter()
        recording_statements = counter.count("WITH")  # record_granules: one WITH … INSERT statement
        other_inserts = counter.count("INSERT")  # the day's granule_count row, once
        statements = counter.count()

        again_started = time.perf_counter()
        again = fetcher.fetch(DAY, "S2A")
        again_seconds = time.perf_counter() - again_started
        attributes = client.get_queue_attributes(QueueUrl=sink.queue_url, AttributeNames=["All"])["Attributes"]
        messages = int(attributes["ApproximateNumberOfMessages"])

    assert report.completed and again.unchanged and messages == report.new == delivery.total_sent
    fetch_engine.dispose()
    pages = report.requests
    fetch_seconds, total_seconds = fetched_at - started, finished_at - started
    print(f"day of {args.products} products, {pages} pages of {args.page}: {report.new} new, {report.skipped} skipped")
    print(f"fetch + record     {args.products / fetch_seconds:8,.0f} products/s ({fetch_seconds:.2f} s)")
    print(
        f"end to end         {args.products / total_seconds:8,.0f} products/s ({total_seconds:.2f} s, "
        f"{messages} messages to SQS, {args.workers} relay worker(s))"
    )
    print(
        f"INSERT statements  {recording_statements / pages:.1f} granule INSERT per page, "
        f"{other_inserts} granule_count INSERT per day; {statements / pages:.1f} statements per page in all"
    )
    print(f"re-run             {again.requests} request(s), {again_seconds * 1000:.0f} ms, nothing new")


if __name__ == "__main__":
    main()

"""Recording and relay throughput: 10,000 granules recorded in batches of 1,000, then relayed to SQS.

Prints granules/s recorded, database round trips and INSERT statements per batch, and messages/s relayed to the
minimal SQS-compatible endpoint (benchmarks/sqs_endpoint.py). Usage: python -m benchmarks.record [--granules N]
"""

from __future__ import annotations

import argparse
import time

from sqlalchemy import text

from benchmarks.common import StatementCounter, scratch_database, sqs_client
from benchmarks.sqs_endpoint import SqsEndpoint
from db import record_granules
from link_fetcher.relay import relay
from link_fetcher.sinks.sqs import SqsSink
from tests.factories import granule_record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--granules", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4], help="relay workers to measure")
    args = parser.parse_args()

    records = [granule_record(i, tile=f"{i % 60 + 1:02d}ABC") for i in range(args.granules)]
    batches = [records[i : i + args.batch] for i in range(0, len(records), args.batch)]
    with scratch_database() as engine, SqsEndpoint() as endpoint:
        counter = StatementCounter(engine)
        started = time.perf_counter()
        for batch in batches:
            with engine.begin() as conn:
                record_granules(conn, batch, ["sqs"])
        recorded_seconds = time.perf_counter() - started
        round_trips = counter.count() / len(batches)
        inserts = counter.count("WITH") / len(batches)  # the recording statement is one WITH … INSERT

        sink = SqsSink(endpoint.queue_url("to-download"), client=sqs_client(endpoint.url))
        relayed = []
        for workers in args.workers:
            with engine.begin() as conn:  # the same deliveries again, for each worker count
                conn.execute(text("UPDATE outbox SET status = 'pending', attempts = 0"))
            started = time.perf_counter()
            report = relay(engine, [sink], workers=workers)
            relayed.append((workers, report.total_sent, time.perf_counter() - started))

    rate = args.granules / recorded_seconds
    print(f"recorded  {args.granules} granules in {len(batches)} batches: {rate:,.0f} granules/s")
    print(f"          {round_trips:.1f} database statements per batch, {inserts:.0f} INSERT statement per batch")
    for workers, sent, seconds in relayed:
        print(
            f"relayed   {sent} messages to SQS (fake endpoint), {workers} worker(s): {sent / seconds:,.0f} messages/s"
        )


if __name__ == "__main__":
    main()

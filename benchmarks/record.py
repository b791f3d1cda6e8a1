"""Recording and relay throughput: 10,000 granules recorded in batches of 1,000 (through the shared recorder),
then relayed to SQS.

Prints granules/s recorded, database round trips and INSERT statements per batch, the rate at which the same
products coming again from a second source (a STAC watch: other ids, the same product names) are found recorded
and their source remembered (SPEC §11), and messages/s relayed to the minimal SQS-compatible endpoint
(tests/fakes/sqs_endpoint.py). Usage: python -m benchmarks.record [--granules N]
"""

from __future__ import annotations

import argparse
import dataclasses
import time

from benchmarks.common import StatementCounter, scratch_database, sqs_client, sqs_endpoint_process
from benchmarks.relay import relay_rate
from db import Source
from link_fetcher.recording import Recorder
from link_fetcher.sinks.sqs import SqsSink
from tests.factories import granule_record
from tests.fakes.sqs_endpoint import ACCOUNT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--granules", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=1_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4], help="relay workers to measure")
    args = parser.parse_args()

    records = [granule_record(i, tile=f"{i % 60 + 1:02d}ABC") for i in range(args.granules)]
    batches = [records[i : i + args.batch] for i in range(0, len(records), args.batch)]
    with scratch_database() as engine, sqs_endpoint_process() as sqs_url:
        # Through the recorder every source uses (recording.Recorder), deliveries scheduled for the SQS sink.
        recorder = Recorder(engine, sink_names=["sqs"])
        counter = StatementCounter(engine)
        started = time.perf_counter()
        for batch in batches:
            with engine.begin() as conn:
                recorder.granules(conn, batch)
        recorded_seconds = time.perf_counter() - started
        round_trips = counter.count() / len(batches)
        inserts = counter.count("WITH") / len(batches)  # the recording statement is one WITH … INSERT

        again = [
            [dataclasses.replace(r, id=f"sentinel-2-l1c/{r.product_name}", source=Source.STAC) for r in batch]
            for batch in batches
        ]
        started = time.perf_counter()
        for batch in again:
            with engine.begin() as conn:
                assert recorder.granules(conn, batch) == []
        again_seconds = time.perf_counter() - started

        sink = SqsSink(f"{sqs_url}/{ACCOUNT}/to-download", client=sqs_client(sqs_url))
        relayed = [(workers, relay_rate(engine, sink, workers, args.granules)) for workers in args.workers]

    rate = args.granules / recorded_seconds
    print(f"recorded  {args.granules} granules in {len(batches)} batches: {rate:,.0f} granules/s")
    print(f"          {round_trips:.1f} database statements per batch, {inserts:.0f} INSERT statement per batch")
    print(f"again     the same products from a second source: {args.granules / again_seconds:,.0f} granules/s")
    for workers, relayed_rate in relayed:
        print(
            f"relayed   {args.granules} messages to SQS (fake endpoint), {workers} worker(s): "
            f"{relayed_rate.per_second:,.0f} messages/s"
        )


if __name__ == "__main__":
    main()

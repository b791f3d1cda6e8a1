"""This design against a naive per-granule fetcher, side by side on the same database and SQS endpoint.

The naive baseline (the shape of the HLS link fetcher), written here: for each granule, INSERT it and COMMIT,
then SendMessage it. Against it: the same granules recorded as one page (`record_granules`, one statement) and
delivered by the relay (batches of 10, one statement per batch), with 1 relay worker and with the default
RELAY_WORKERS (4). Both run twice:
with the SQS endpoint answering at once, and with `--latency-ms` (default 5) added to every call, as a queue
across a network would. Goal: ≥ 20x at 5 ms.
Usage: python -m benchmarks.per_granule [--granules 2000] [--latency-ms 5] [--workers 1 4]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from collections.abc import Sequence

from sqlalchemy import Engine, text

from benchmarks.common import scratch_database, sqs_client, sqs_endpoint_process
from db import GranuleRecord, record_granules
from link_fetcher.messages import to_download_body
from link_fetcher.relay import relay
from link_fetcher.settings import RelaySettings
from link_fetcher.sinks.sqs import SqsSink
from tests.factories import granule_record
from tests.fakes.sqs_endpoint import ACCOUNT

DEFAULT_WORKERS = RelaySettings.model_fields["workers"].default
_INSERT = text(
    """
    INSERT INTO granule (id, filename, download_url, source, tile_id, platform, product_type, size, checksum,
                         blake3, sensing_start, sensing_end, published)
    VALUES (:id, :filename, :download_url, :source, :tile_id, :platform, :product_type, :size, :checksum,
            :blake3, :sensing_start, :sensing_end, :published)
    ON CONFLICT (id) DO NOTHING
    """
)


def naive(engine: Engine, client, queue_url: str, records: Sequence[GranuleRecord]) -> float:
    """Granules/s for INSERT + COMMIT + SendMessage, one granule at a time."""
    started = time.perf_counter()
    for record in records:
        row = {field.name: getattr(record, field.name) for field in dataclasses.fields(record)}
        with engine.begin() as conn:
            conn.execute(_INSERT, row)
        client.send_message(QueueUrl=queue_url, MessageBody=json.dumps(to_download_body({**row, "online": None})))
    return len(records) / (time.perf_counter() - started)


def batched(engine: Engine, sink: SqsSink, records: Sequence[GranuleRecord], workers: int) -> float:
    """Granules/s for recording the page in one statement, then relaying it."""
    started = time.perf_counter()
    with engine.begin() as conn:
        record_granules(conn, records, [sink.name])
    report = relay(engine, [sink], workers=workers)
    seconds = time.perf_counter() - started
    assert report.sent[sink.name] == len(records), report
    return len(records) / seconds


def empty(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("TRUNCATE granule, outbox RESTART IDENTITY CASCADE"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--granules", type=int, default=2_000)
    parser.add_argument("--latency-ms", type=float, default=5.0)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, DEFAULT_WORKERS])
    args = parser.parse_args()

    records = [granule_record(i, tile=f"{i % 60 + 1:02d}ABC") for i in range(args.granules)]
    print(f"{args.granules} granules; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    with scratch_database() as engine:
        for latency in (0.0, args.latency_ms):
            with sqs_endpoint_process(latency) as url:
                client = sqs_client(url)  # the sink's client configuration, for both
                sink = SqsSink(f"{url}/{ACCOUNT}/to-download", client=client)
                empty(engine)
                baseline = naive(engine, client, sink.queue_url, records)
                print(f"SQS +{latency:g} ms per call: naive INSERT + COMMIT + SendMessage each {baseline:8,.0f}/s")
                for workers in args.workers:
                    empty(engine)
                    rate = batched(engine, sink, records, workers)
                    print(
                        f"SQS +{latency:g} ms per call: record the page + relay, {workers} worker(s)"
                        f"{' (default)' if workers == DEFAULT_WORKERS else ''} "
                        f"{rate:8,.0f}/s  = {rate / baseline:5.1f}x"
                    )


if __name__ == "__main__":
    main()

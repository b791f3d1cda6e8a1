"""Relay throughput: N pending deliveries per sink relayed to Redis Streams and to the SQS-compatible endpoint.

Each sink is measured alone (the other one's deliveries stay pending), in batches of 10 as in production, for
each worker count. Redis is the real server at REDIS_URL; SQS is tests/fakes/sqs_endpoint.py (not moto) in a
process of its own, so its CPU is not charged to the relay, as a real queue's would not be.
Usage: python -m benchmarks.relay [--deliveries N] [--workers 1 4]
"""

from __future__ import annotations

import argparse
import os
import secrets
import time

import redis
from sqlalchemy import Engine, text

from benchmarks.common import scratch_database, sqs_endpoint_process
from db import record_granules
from link_fetcher.relay import relay
from link_fetcher.sinks import Sink
from link_fetcher.sinks.redis_stream import RedisStreamSink
from link_fetcher.sinks.sqs import SqsSink
from tests.factories import granule_record
from tests.fakes.sqs_endpoint import ACCOUNT


def measure(engine: Engine, sink: Sink, workers: int, deliveries: int) -> float:
    """Deliveries/s for one relay of `sink`'s whole backlog, after making all of it pending again."""
    with engine.begin() as conn:
        conn.execute(text("UPDATE outbox SET status = 'pending', attempts = 0 WHERE sink = :s"), {"s": sink.name})
    started = time.perf_counter()
    report = relay(engine, [sink], workers=workers)
    seconds = time.perf_counter() - started
    assert report.sent[sink.name] == deliveries and not report.unavailable, report
    return deliveries / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=10_000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()

    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    stream = f"lf-bench-{secrets.token_hex(4)}"
    records = [granule_record(i, tile=f"{i % 60 + 1:02d}ABC") for i in range(args.deliveries)]
    with scratch_database() as engine, sqs_endpoint_process() as sqs_url:
        os.environ.update(AWS_ENDPOINT_URL=sqs_url, AWS_DEFAULT_REGION="us-east-1")
        os.environ.setdefault("AWS_ACCESS_KEY_ID", "benchmark")
        os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "benchmark")
        for start in range(0, len(records), 1_000):
            with engine.begin() as conn:
                record_granules(conn, records[start : start + 1_000], ["redis", "sqs"])
        client = redis.Redis.from_url(redis_url)
        sinks = [
            RedisStreamSink(client, stream, maxlen=args.deliveries),
            SqsSink(f"{sqs_url}/{ACCOUNT}/to-download"),  # the production client configuration
        ]
        try:
            for sink in sinks:
                for workers in args.workers:
                    rate = measure(engine, sink, workers, args.deliveries)
                    label = "Redis Streams" if sink.name == "redis" else "SQS (fake endpoint)"
                    print(f"relayed {args.deliveries} to {label}, {workers} worker(s): {rate:,.0f} deliveries/s")
        finally:
            client.delete(stream)


if __name__ == "__main__":
    main()

"""Relay at the sink's speed: in one run, a bare loop sending to the sink and the relay delivering as many
pending deliveries to it, and their ratio. Goal: the relay ≥ 80 % of the bare loop.

- SQS: the bare loop is boto3 SendMessageBatch of 10 entries (bodies encoded beforehand) with the sink's client
  configuration; both go to tests/fakes/sqs_endpoint.py in a process of its own (`--latency-ms` delays each
  call, as a remote queue would).
- Redis: the bare loop is MULTI/EXEC pipelines of 10 XADDs (fields built beforehand); the sink sends one Lua
  script per batch instead (the same XADDs and its receipts, after checking the keys' types).

The relay starts from N pending deliveries in PostgreSQL (made pending again before each round, untimed) and
pays for everything a real run does: leasing, reading the granules, building and encoding each message,
marking each batch sent. With `--workers W` the relay runs W workers and the bare loop W threads. The two
alternate, round after round, so load from elsewhere on the machine falls on both alike: each round's ratio is
printed, then the median and range. Each line also gives this process's CPU time per message (both are Python
in this process; the endpoint, PostgreSQL and Redis are other processes): the relay cannot beat the bare loop's
speed by more than its own CPU allows, whatever it overlaps.
Usage: python -m benchmarks.relay [--deliveries 2000] [--rounds 5] [--workers 1] [--latency-ms 0] [--sinks ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import secrets
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import redis
from sqlalchemy import Engine, text

from benchmarks.common import SERVER_URL, scratch_database, sqs_client, sqs_endpoint_process
from db import record_granules
from link_fetcher.relay import relay, to_message
from link_fetcher.sinks import Message
from link_fetcher.sinks.redis_stream import RedisStreamSink
from link_fetcher.sinks.sqs import SqsSink
from tests.factories import granule_record
from tests.fakes.sqs_endpoint import ACCOUNT

BATCH = 10


def batches(items: Sequence, size: int = BATCH) -> list[Sequence]:
    return [items[start : start + size] for start in range(0, len(items), size)]


@dataclasses.dataclass(frozen=True)
class Rate:
    per_second: float
    cpu_us: float  # this process's CPU time per message, in microseconds


def bare_rate(send: Callable[[object], object], prepared: Sequence, workers: int) -> Rate:
    """Messages/s for sending every prepared batch, with `workers` threads taking batches in turn."""
    count = sum(len(batch) for batch in prepared)
    cpu = time.process_time()
    started = time.perf_counter()
    if workers == 1:
        for batch in prepared:
            send(batch)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(send, prepared))
    return Rate(count / (time.perf_counter() - started), (time.process_time() - cpu) / count * 1e6)


def relay_rate(engine: Engine, sink: SqsSink | RedisStreamSink, workers: int, deliveries: int) -> Rate:
    """Deliveries/s for one relay of `sink`'s whole backlog, made pending again first (untimed)."""
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE outbox SET status = 'pending', attempts = 0, sent_at = NULL WHERE sink = :s"), {"s": sink.name}
        )
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE outbox"))  # each round starts from the same table, not the last's garbage
    cpu = time.process_time()
    started = time.perf_counter()
    report = relay(engine, [sink], workers=workers)
    seconds = time.perf_counter() - started
    assert report.sent[sink.name] == deliveries and not report.unavailable, report
    return Rate(deliveries / seconds, (time.process_time() - cpu) / deliveries * 1e6)


def compare(label: str, bare: Callable[[], Rate], relayed: Callable[[], Rate], rounds: int) -> None:
    ratios = []
    for round_number in range(1, rounds + 1):
        # Alternate which goes first: a trend in the machine's load then favours neither.
        first, second = (bare, relayed) if round_number % 2 else (relayed, bare)
        results = {first: first(), second: second()}
        ratio = results[relayed].per_second / results[bare].per_second
        ratios.append(ratio)
        print(
            f"  {label} {round_number}: bare {results[bare].per_second:8,.0f}/s  "
            f"relay {results[relayed].per_second:8,.0f}/s  {ratio:5.0%}   CPU here per message: bare "
            f"{results[bare].cpu_us:4.0f} us, relay {results[relayed].cpu_us:4.0f} us"
        )
    print(
        f"{label}: relay / bare loop median {statistics.median(ratios):.0%} "
        f"(range {min(ratios):.0%} to {max(ratios):.0%}, {rounds} rounds)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=2_000, help="per round and sink")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=1, help="relay workers = bare-loop threads")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay per SQS call at the endpoint")
    parser.add_argument("--sinks", nargs="+", choices=["sqs", "redis"], default=["sqs", "redis"])
    args = parser.parse_args()

    redis_url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    stream = f"lf-bench-{secrets.token_hex(4)}"
    records = [granule_record(i, tile=f"{i % 60 + 1:02d}ABC") for i in range(args.deliveries)]
    print(
        f"{args.deliveries} deliveries per round, {args.workers} relay worker(s) / bare-loop thread(s), "
        f"batches of {BATCH}; PostgreSQL {SERVER_URL.rsplit('@', 1)[-1]}, Redis {redis_url.rsplit('@', 1)[-1]}, "
        f"SQS endpoint +{args.latency_ms:g} ms per call; load average {os.getloadavg()[0]:.1f} "
        f"on {os.cpu_count()} CPUs"
    )
    with scratch_database() as engine, sqs_endpoint_process(args.latency_ms) as sqs_url:
        with engine.begin() as conn:
            record_granules(conn, records, args.sinks)
            messages: list[Message] = [
                to_message(dict(row._mapping))
                for row in conn.execute(text("SELECT * FROM granule ORDER BY id"))  # as the relay reads them
            ]
        client = redis.Redis.from_url(redis_url)
        try:
            if "sqs" in args.sinks:
                sqs = sqs_client(sqs_url)
                sink = SqsSink(f"{sqs_url}/{ACCOUNT}/to-download", client=sqs)  # one client, the sink's config
                prepared = [sink.entries(batch) for batch in batches(messages)]
                compare(
                    "SQS",
                    lambda: bare_rate(lambda b: sqs.send_message_batch(QueueUrl=sink.queue_url, Entries=b), prepared,
                                      args.workers),
                    lambda: relay_rate(engine, sink, args.workers, args.deliveries),
                    args.rounds,
                )  # fmt: skip
            if "redis" in args.sinks:
                redis_sink = RedisStreamSink(client, stream, maxlen=args.deliveries)
                fields = [[redis_sink.fields(message) for message in batch] for batch in batches(messages)]

                def xadd_batch(batch: Sequence[dict[str, str]]) -> None:
                    pipe = client.pipeline(transaction=True)
                    for entry in batch:
                        pipe.xadd(stream, entry, maxlen=args.deliveries, approximate=True)
                    pipe.execute()

                compare(
                    "Redis",
                    lambda: bare_rate(xadd_batch, fields, args.workers),
                    lambda: relay_rate(engine, redis_sink, args.workers, args.deliveries),
                    args.rounds,
                )
        finally:
            client.delete(stream)


if __name__ == "__main__":
    main()

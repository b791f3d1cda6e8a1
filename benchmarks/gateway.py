"""Stream gateway throughput: entries/s delivered to one WebSocket group consumer that acks, and REST latency.

Runs `link-fetcher gateway` as its own process against the local Redis, fills a stream with granule
CloudEvents (the Redis sink's fields), then prints entries/s for a group consumer over WebSocket (acks sent in
lists of --ack-batch) and p50/p99 of `GET /streams/{s}/entries?count=100`. Goals: ≥ 10,000 entries/s,
p99 ≤ 20 ms. Usage: python -m benchmarks.gateway [--entries N] [--requests N]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import datetime as dt
import json
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis
import websockets

from link_fetcher.messages import to_download_body
from link_fetcher.sinks.redis_stream import stream_fields
from tests.factories import granule_record

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
KEY = secrets.token_urlsafe(24)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fill(client: redis.Redis, stream: str, count: int) -> list[str]:
    now = dt.datetime.now(dt.UTC)
    ids: list[str] = []
    for start in range(0, count, 1000):
        pipe = client.pipeline(transaction=False)
        for index in range(start, min(start + 1000, count)):
            body = to_download_body(dataclasses.asdict(granule_record(index)))
            pipe.xadd(stream, stream_fields(body, time=now))
        ids.extend(pipe.execute())
    return ids


async def consume(base: str, stream: str, count: int, ack_batch: int) -> float:
    """Seconds from connecting to having received all `count` entries, acking every `ack_batch`."""
    url = f"{base.replace('http', 'ws')}/streams/{stream}/ws?group=bench&consumer=c1&token={KEY}"
    started = time.perf_counter()
    async with websockets.connect(url, max_size=2**20) as ws:
        unacked: list[str] = []
        for _ in range(count):
            unacked.append(json.loads(await ws.recv())["id"])
            if len(unacked) >= ack_batch:
                await ws.send(json.dumps({"ack": unacked}))
                unacked = []
        elapsed = time.perf_counter() - started
        if unacked:
            await ws.send(json.dumps({"ack": unacked}))
    return elapsed


def rest_latencies(base: str, stream: str, ids: list[str], requests: int) -> list[float]:
    latencies = []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"}) as http:
        for _ in range(requests):
            after = random.choice(ids[: len(ids) - 100])
            started = time.perf_counter()
            response = http.get(f"/streams/{stream}/entries", params={"after": after, "count": 100})
            latencies.append(time.perf_counter() - started)
            assert len(response.json()["entries"]) == 100, response.text
    return latencies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--ack-batch", type=int, default=100)
    parser.add_argument("--requests", type=int, default=1_000)
    args = parser.parse_args()

    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    stream = f"lf-bench-{secrets.token_hex(4)}"
    port = free_port()
    env = {**os.environ, "REDIS_URL": REDIS_URL, "GATEWAY_API_KEYS": f"{KEY}:read", "DATABASE_URL": ""}
    gateway = subprocess.Popen(
        [str(Path(sys.executable).with_name("link-fetcher")), "gateway", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        ids = fill(client, stream, args.entries)
        client.xgroup_create(stream, "bench", id="0")
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or gateway.poll() is not None:
                raise SystemExit("the gateway did not start")
            time.sleep(0.1)

        elapsed = asyncio.run(consume(base, stream, args.entries, args.ack_batch))
        deadline = time.monotonic() + 10
        while client.xpending(stream, "bench")["pending"] and time.monotonic() < deadline:
            time.sleep(0.05)
        pending = client.xpending(stream, "bench")["pending"]
        print(
            f"WebSocket group consumer: {args.entries} entries in {elapsed:.2f} s = {args.entries / elapsed:,.0f} "
            f"entries/s (acks in lists of {args.ack_batch}; {pending} left pending)  [goal ≥ 10,000/s]"
        )

        rest_latencies(base, stream, ids, 50)  # warm-up
        latencies = sorted(rest_latencies(base, stream, ids, args.requests))
        p50 = statistics.median(latencies) * 1000
        p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
        print(
            f"REST read of 100 entries: p50 {p50:.1f} ms, p99 {p99:.1f} ms over {args.requests} requests  "
            "[goal p99 ≤ 20 ms]"
        )
    finally:
        gateway.terminate()
        gateway.wait(timeout=10)
        client.delete(stream)


if __name__ == "__main__":
    main()

"""Stream gateway throughput: entries/s delivered to one WebSocket group consumer that acks, and REST latency.

Runs `link-fetcher gateway` as its own process against the local Redis, fills a stream with granule
CloudEvents (the Redis sink's fields), then prints entries/s for a group consumer over WebSocket (acks sent in
lists of --ack-batch) and p50/p99 of `GET /streams/{s}/entries?count=100`. Goals: ≥ 10,000 entries/s,
p99 ≤ 20 ms. This measures the gateway's own speed, so its key's entries budget is lifted
(GATEWAY_KEY_ENTRIES_PER_SECOND).

With --abuse, instead, under the default settings: key B's small reads (count=10, one every 20 ms) alone, then
while key A, from a process of its own, keeps 50 long polls, 4 GraphQL queries (10 aliases x --graphql-count
entries) and 4 REST reads of count=1000 going; prints B's p50/p99 idle and under abuse, in alternating rounds,
and what A got. A's clients wait as told on 429 (Retry-After) and 1 s after any other refusal. Goal: B's p99
under abuse within 2x of idle.

Usage: python -m benchmarks.gateway [--entries N] [--requests N]
       [--abuse [--rounds N] [--graphql-count N] [--abuser-nice N]]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import json
import multiprocessing
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import httpx
import redis
import websockets

from link_fetcher.messages import to_download_body
from link_fetcher.sinks.redis_stream import stream_fields
from tests.factories import granule_record

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
KEY = secrets.token_urlsafe(24)
ABUSER_KEY = secrets.token_urlsafe(24)
# Key B reads 10 entries every 20 ms (500 entries/s): a steady consumer well within its own budget.
B_EVERY_S = 0.02


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


def rest_latencies(
    base: str, stream: str, ids: list[str], requests: int, count: int = 100, every_s: float = 0.0
) -> list[float]:
    """Latencies of `requests` reads of `count` entries after random ids, one every `every_s` at most."""
    latencies = []
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"}) as http:
        next_at = time.perf_counter()
        for _ in range(requests):
            time.sleep(max(0.0, next_at - time.perf_counter()))
            next_at = max(next_at, time.perf_counter()) + every_s  # no catching up in bursts after a stall
            after = random.choice(ids[: len(ids) - count])
            started = time.perf_counter()
            response = http.get(f"/streams/{stream}/entries", params={"after": after, "count": count})
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200 or len(response.json()["entries"]) != count:
                raise SystemExit(f"key B's read answered {response.status_code}: {response.text[:300]}")
    return latencies


def percentiles(latencies: list[float]) -> tuple[float, float]:
    """p50 and p99 in milliseconds."""
    ordered = sorted(latencies)
    return statistics.median(ordered) * 1000, ordered[max(0, int(len(ordered) * 0.99) - 1)] * 1000


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def gateway_process(keys: str, **settings: str) -> Iterator[tuple[str, int]]:
    """`link-fetcher gateway` in a process of its own, ready; yields its base URL and pid."""
    port = free_port()
    env = {**os.environ, "REDIS_URL": REDIS_URL, "GATEWAY_API_KEYS": keys, "DATABASE_URL": "", **settings}
    gateway = subprocess.Popen(
        [str(Path(sys.executable).with_name("link-fetcher")), "gateway", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
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
        yield base, gateway.pid
    finally:
        gateway.terminate()
        try:
            gateway.wait(timeout=10)
        except subprocess.TimeoutExpired:  # long polls still open
            gateway.kill()
            gateway.wait()


def throughput(client: redis.Redis, stream: str, args: argparse.Namespace) -> None:
    ids = fill(client, stream, args.entries)
    client.xgroup_create(stream, "bench", id="0")
    with gateway_process(f"{KEY}:read", GATEWAY_KEY_ENTRIES_PER_SECOND="1000000") as (base, _pid):
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
        p50, p99 = percentiles(rest_latencies(base, stream, ids, args.requests))
        print(
            f"REST read of 100 entries: p50 {p50:.1f} ms, p99 {p99:.1f} ms over {args.requests} requests  "
            "[goal p99 ≤ 20 ms]"
        )


async def _abuser_client(
    http: httpx.AsyncClient, send: Callable[[], Awaitable[httpx.Response]], kind: str, tally: Counter[str]
) -> None:
    """One of key A's clients: the same request again and again, waiting only as the gateway asks."""
    while True:
        try:
            response = await send()
        except httpx.HTTPError:
            tally["transport error"] += 1
            await asyncio.sleep(1)
            continue
        tally[f"{kind} {response.status_code}"] += 1
        if response.status_code == 200:
            tally[f"{kind} entries"] += response.content.count(b'"fields":')  # one an entry, REST or GraphQL
            tally["entries"] += response.content.count(b'"fields":')  # no parsing: A's CPU here is not the gateway's
        elif response.status_code == 429:
            await asyncio.sleep(float(response.headers.get("retry-after", "1")))
        else:
            await asyncio.sleep(1)


async def _abuse(base: str, key: str, stream: str, args: argparse.Namespace, ready: Event, stop: Event) -> Counter[str]:
    graphql_count = args.graphql_count
    aliases = " ".join(f'a{i}: entries(stream: "{stream}", count: {graphql_count}) {{ id fields }}' for i in range(10))
    tally: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60, limits=limits
    ) as http:
        url = f"/streams/{stream}/entries"
        senders: list[Callable[[], Awaitable[httpx.Response]]] = [
            *[lambda: http.get(url, params={"after": "$", "block": 30_000})] * 50,
            *[lambda: http.post("/graphql", json={"query": f"{{ {aliases} }}"})] * 4,
            *[lambda: http.get(url, params={"after": "0", "count": 1000})] * 4,
        ]
        kinds = ["poll"] * 50 + ["graphql"] * 4 + ["rest"] * 4
        tasks = [
            asyncio.create_task(_abuser_client(http, send, kind, tally))
            for send, kind in zip(senders, kinds, strict=True)
            if kind in args.abuse_mix
        ]
        await asyncio.sleep(2)  # connected, limits reached: the steady state is what is measured
        tally.clear()
        cpu, started = time.process_time(), time.monotonic()
        ready.set()
        await asyncio.to_thread(stop.wait)
        tally["cpu ms"] = int((time.process_time() - cpu) * 1000)
        tally["seconds"] = round(time.monotonic() - started)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return tally


def abuser(
    base: str, key: str, stream: str, args: argparse.Namespace, events: tuple[Event, Event], report: Queue[Any]
) -> None:
    """Key A, in a process of its own; it reads its answers without parsing them, so that its own CPU (which
    other machines would spend) takes as little as it can of the cores the gateway and B's client share."""
    os.nice(args.abuser_nice)
    report.put(asyncio.run(_abuse(base, key, stream, args, *events)))


def abuse_round(base: str, pid: int, stream: str, ids: list[str], args: argparse.Namespace) -> tuple[list[float], ...]:
    """B's latencies alone, then under A's abuse (A measured from its steady state to B's last request)."""
    context = multiprocessing.get_context("spawn")
    cpu, started = cpu_seconds(pid), time.monotonic()
    idle = rest_latencies(base, stream, ids, args.requests, count=10, every_s=B_EVERY_S)
    idle_cpu = (cpu_seconds(pid) - cpu) / (time.monotonic() - started)
    report: Queue[Any] = context.Queue()
    ready, stop = context.Event(), context.Event()
    process = context.Process(target=abuser, args=(base, ABUSER_KEY, stream, args, (ready, stop), report))
    process.start()
    if not ready.wait(120):
        raise SystemExit("key A's clients did not start")
    cpu, started = cpu_seconds(pid), time.monotonic()
    loaded = rest_latencies(base, stream, ids, args.requests, count=10, every_s=B_EVERY_S)
    loaded_cpu = (cpu_seconds(pid) - cpu) / (time.monotonic() - started)
    stop.set()
    tally = report.get(timeout=60)
    process.join()
    (i50, i99), (l50, l99) = percentiles(idle), percentiles(loaded)
    print(
        f"B idle p50 {i50:.1f} / p99 {i99:.1f} ms; under abuse p50 {l50:.1f} / p99 {l99:.1f} ms ({l99 / i99:.1f}x); "
        f"gateway CPU {idle_cpu:.0%} / {loaded_cpu:.0%}; load {os.getloadavg()[0]:.1f}; A: {tally.pop('entries', 0):,} "
        "entries, " + ", ".join(f"{code} {n}" for code, n in sorted(tally.items()))
    )
    return idle, loaded


def abuse(client: redis.Redis, stream: str, args: argparse.Namespace) -> None:
    ids = fill(client, stream, args.entries)
    with gateway_process(f"{KEY}:read,{ABUSER_KEY}:read") as (base, pid):
        rest_latencies(base, stream, ids, 100, count=10, every_s=B_EVERY_S)  # warm-up
        idle: list[float] = []
        loaded: list[float] = []
        for _ in range(args.rounds):
            idle_round, loaded_round = abuse_round(base, pid, stream, ids, args)
            idle += idle_round
            loaded += loaded_round
        (i50, i99), (l50, l99) = percentiles(idle), percentiles(loaded)
        print(
            f"key B, REST reads of 10 entries, {len(idle)} requests each way: idle p50 {i50:.1f} / p99 {i99:.1f} ms, "
            f"under key A's abuse p50 {l50:.1f} / p99 {l99:.1f} ms = {l99 / i99:.2f}x  [goal ≤ 2x]"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=20_000)
    parser.add_argument("--ack-batch", type=int, default=100)
    parser.add_argument("--requests", type=int, default=1_000)
    parser.add_argument("--abuse", action="store_true", help="another key's latency under one key's abuse")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--graphql-count", type=int, default=100, help="entries per alias of A's GraphQL queries")
    parser.add_argument("--abuser-nice", type=int, default=0, help="run key A's client process at this niceness")
    parser.add_argument(
        "--abuse-mix",
        type=lambda text: text.split(","),
        default=["poll", "graphql", "rest"],
        help="A's kinds of client",
    )
    args = parser.parse_args()

    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    stream = f"lf-bench-{secrets.token_hex(4)}"
    try:
        (abuse if args.abuse else throughput)(client, stream, args)
    finally:
        client.delete(stream)


if __name__ == "__main__":
    main()

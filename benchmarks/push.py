"""Push endpoint throughput: distinct notifications POSTed to `link-fetcher serve` by concurrent senders.

Real PostgreSQL (a scratch database on DATABASE_URL's server), delivery to the minimal SQS-compatible endpoint
(tests/fakes/sqs_endpoint.py) unless --no-sink. Prints notifications/s, p50 / p99 latency and the server's CPU
time per notification (which other load on the machine inflates less than the rest), and checks that every
notification was recorded and delivered once. Usage: python -m benchmarks.push [--notifications N] [--senders 8]
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import requests
from sqlalchemy import text

from benchmarks.common import scratch_database
from link_fetcher.push.server import default_workers
from tests.factories import PUSH_FIXTURE, cdse_product
from tests.fakes.sqs_endpoint import SqsEndpoint
from tests.push_support import PASSWORD, USERNAME, basic

QUEUE = "to-download"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _notifications(count: int) -> list[bytes]:
    sensed = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    return [
        json.dumps({**PUSH_FIXTURE, "value": cdse_product(sensing=sensed + dt.timedelta(seconds=i))}).encode()
        for i in range(count)
    ]


def _start_server(database_url: str, sqs: SqsEndpoint | None, workers: int) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SUBSCRIPTION_", "REDIS_", "TO_DOWNLOAD"))},
        "DATABASE_URL": database_url,
        "SUBSCRIPTION_USERNAME": USERNAME,
        "SUBSCRIPTION_PASSWORD": PASSWORD,
    }
    if sqs is not None:
        env |= {
            "TO_DOWNLOAD_QUEUE_URL": sqs.queue_url(QUEUE),
            "AWS_ENDPOINT_URL": sqs.url,
            "AWS_ACCESS_KEY_ID": "x",
            "AWS_SECRET_ACCESS_KEY": "x",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    cli = str(Path(sys.executable).with_name("link-fetcher"))
    process = subprocess.Popen(
        [cli, "serve", "--port", str(port), "--workers", str(workers)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/events"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            requests.post(url, timeout=1)
            return process, url
        except requests.ConnectionError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("serve did not start")


def _send(url: str, bodies: list[bytes], senders: int) -> tuple[list[float], list[int], float]:
    """POST every body once with `senders` threads (one keep-alive connection each); latencies in seconds."""
    pending = iter(bodies)
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: list[int] = []
    headers = {"Authorization": basic(), "Content-Type": "application/json"}

    def sender() -> None:
        with requests.Session() as session:
            while True:
                with lock:
                    body = next(pending, None)
                if body is None:
                    return
                started = time.perf_counter()
                status = session.post(url, data=body, headers=headers, timeout=30).status_code
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    statuses.append(status)

    threads = [threading.Thread(target=sender) for _ in range(senders)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, statuses, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notifications", type=int, default=3_000)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--warm-up", type=int, default=200, help="notifications sent first and not measured")
    parser.add_argument("--no-sink", action="store_true", help="record only (deliveries stay pending)")
    parser.add_argument("--workers", type=int, default=default_workers(), help="serve --workers (default: serve's)")
    args = parser.parse_args()

    bodies = _notifications(args.warm_up + args.notifications)
    with scratch_database() as engine, SqsEndpoint() as sqs:
        database_url = engine.url.render_as_string(hide_password=False)
        process, url = _start_server(database_url, None if args.no_sink else sqs, args.workers)
        try:
            _send(url, bodies[: args.warm_up], args.senders)
            server = psutil.Process(process.pid)
            processes = [server, *server.children(recursive=True)]  # uvicorn workers, when there are some
            cpu_before = sum(sum(p.cpu_times()[:2]) for p in processes)
            latencies, statuses, seconds = _send(url, bodies[args.warm_up :], args.senders)
            server_cpu = sum(sum(p.cpu_times()[:2]) for p in processes) - cpu_before
        finally:
            process.terminate()
            process.wait(timeout=10)
        with engine.connect() as conn:
            recorded = conn.execute(text("SELECT count(*) FROM granule")).scalar_one()
            sent = conn.execute(text("SELECT count(*) FROM outbox WHERE status = 'sent'")).scalar_one()
        queued = len(sqs.fake.messages(QUEUE))

    by_status = {status: len(list(group)) for status, group in itertools.groupby(sorted(statuses))}
    cuts = statistics.quantiles(latencies, n=100)
    sink = "no sink" if args.no_sink else "SQS (fake endpoint)"
    print(
        f"push      {len(latencies)} distinct notifications, {args.senders} concurrent senders, "
        f"{args.workers} server worker(s), delivery to {sink}"
    )
    print(f"          {len(latencies) / seconds:,.0f} notifications/s; answers {by_status}")
    print(f"latency   p50 {cuts[49] * 1000:.1f} ms, p99 {cuts[98] * 1000:.1f} ms, max {max(latencies) * 1000:.1f} ms")
    print(f"server    {server_cpu / len(latencies) * 1000:.2f} ms CPU per notification (user + system)")
    print(f"outcome   {recorded} granules recorded, {sent} deliveries sent, {queued} messages queued")


if __name__ == "__main__":
    main()

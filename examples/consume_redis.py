"""Consume the To Download stream as a consumer group: each entry is handled by one consumer and acknowledged.

Delivery is at least once (a relay that crashed after XADD but before recording it repeats that batch), so
`handle` must be idempotent on the event id (the granule id). An entry whose consumer crashed before XACK stays
pending in the group; XAUTOCLAIM hands it to a live consumer once it has been idle for `min_idle_ms`.

    REDIS_URL=redis://127.0.0.1:6379/0 python examples/consume_redis.py --group downloader --consumer worker-1
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable

import redis
from cloudevents.core.v1.event import CloudEvent

from link_fetcher.sinks.redis_stream import event_from_fields


def ensure_group(client: redis.Redis, stream: str, group: str, start: str = "0") -> None:
    """Create the consumer group (and the stream) unless it exists; start "0" also reads what is already there."""
    try:
        client.xgroup_create(stream, group, id=start, mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def consume_once(
    client: redis.Redis,
    stream: str,
    group: str,
    consumer: str,
    handle: Callable[[CloudEvent], None],
    *,
    count: int = 10,
    block_ms: int | None = None,
    min_idle_ms: int = 60_000,
) -> int:
    """Handle one batch: first entries abandoned by crashed consumers, else new ones. Returns how many were acked.

    An entry is acknowledged only after `handle` returned; if `handle` raises, the entry stays pending and is
    reclaimed later (by this or another consumer).
    """
    _, entries, _ = client.xautoclaim(stream, group, consumer, min_idle_time=min_idle_ms, start_id="0-0", count=count)
    if not entries:
        answer = client.xreadgroup(group, consumer, {stream: ">"}, count=count, block=block_ms)
        entries = answer[0][1] if answer else []
    acked = 0
    for entry_id, fields in entries:
        handle(event_from_fields(fields))
        acked += client.xack(stream, group, entry_id)
    return acked


def once_per_id(handle: Callable[[CloudEvent], None]) -> Callable[[CloudEvent], None]:
    """Skip events whose id was handled already (a repeated delivery). In memory here; a real consumer keys on
    the id where it records its work (a unique column, an object key), so repeats survive restarts too."""
    handled: set[str] = set()

    def handle_new(event: CloudEvent) -> None:
        if event.get_id() not in handled:
            handle(event)
            handled.add(event.get_id())

    return handle_new


def main() -> None:
    parser = argparse.ArgumentParser(description="Print each To Download CloudEvent once, acknowledging it.")
    parser.add_argument("--stream", default=os.environ.get("REDIS_STREAM", "to-download"))
    parser.add_argument("--group", default="example")
    parser.add_argument("--consumer", default="consumer-1")
    args = parser.parse_args()
    client = redis.Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    ensure_group(client, args.stream, args.group)

    @once_per_id
    def handle(event: CloudEvent) -> None:
        print(json.dumps({"id": event.get_id(), "href": event.get_extension("href"), "subject": event.get_subject()}))

    while True:
        consume_once(client, args.stream, args.group, args.consumer, handle, block_ms=5_000)


if __name__ == "__main__":
    main()

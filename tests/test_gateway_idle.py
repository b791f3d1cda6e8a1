"""Blocking reads on idle streams (issue 26): REST `block`, WebSocket tails and group consumers, and GraphQL
subscriptions wait through idle periods longer than redis-py's default 5 s socket timeout, then still deliver.
Real idle periods: nothing is mocked and no clock is faked."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator

import httpx
import pytest
import redis
import websockets

from tests.gateway_server import READ_KEY, gateway_settings, running_gateway

# Longer than redis-py's default socket timeout (5 s), which used to end every blocked read.
IDLE_S = 8
PATIENT_IDLE_S = 60


@pytest.fixture(scope="module")
def gateway_url() -> Iterator[str]:
    with running_gateway(gateway_settings("redis://127.0.0.1:6379/0", None, gateway_max_block_ms=30_000)) as url:
        yield url


@pytest.fixture
def rds(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, decode_responses=True)


@pytest.fixture
def stream(unique_name: str, rds: redis.Redis) -> Iterator[str]:
    rds.xadd(unique_name, {"n": "old"})
    rds.xgroup_create(unique_name, "g", id="$")
    yield unique_name
    rds.delete(unique_name, f"link-fetcher:consumers:{unique_name}")


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {READ_KEY}"}


def test_a_rest_read_blocks_past_the_socket_timeout_and_answers_empty(gateway_url, stream) -> None:
    answer = httpx.get(
        f"{gateway_url}/streams/{stream}/entries",
        params={"after": "$", "block": IDLE_S * 1000},
        headers=auth(),
        timeout=IDLE_S + 20,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"entries": []}


def test_a_rest_read_blocked_past_the_socket_timeout_still_gets_the_entry(gateway_url, rds, stream) -> None:
    added = threading.Timer(IDLE_S, lambda: rds.xadd(stream, {"n": "late"}))
    added.start()
    try:
        for path, method, body in (
            (f"/streams/{stream}/entries?after=$&block=20000", "GET", None),
            (f"/streams/{stream}/groups/g/read", "POST", {"consumer": "c1", "block": 20000}),
        ):
            answer = httpx.request(method, gateway_url + path, json=body, headers=auth(), timeout=40)
            assert answer.status_code == 200, answer.text
            assert [entry["fields"] for entry in answer.json()["entries"]] == [{"n": "late"}], path
            if method == "GET":  # the group read waits for the next entry
                added.join()
                added = threading.Timer(IDLE_S, lambda: rds.xadd(stream, {"n": "late"}))
                added.start()
    finally:
        added.cancel()


async def _socket_frames(gateway_url: str, stream: str, idle_s: float, rds: redis.Redis) -> list[dict]:
    """A tail and a group consumer over WebSocket and a GraphQL subscription, all open through `idle_s` of
    silence; then one entry, which each must receive."""
    base = gateway_url.replace("http", "ws")
    tail = await websockets.connect(f"{base}/streams/{stream}/ws?after=$&token={READ_KEY}")
    group = await websockets.connect(f"{base}/streams/{stream}/ws?group=g&consumer=idle&token={READ_KEY}")
    graphql = await websockets.connect(f"{base}/graphql", subprotocols=["graphql-transport-ws"])
    try:
        await graphql.send(json.dumps({"type": "connection_init", "payload": {"token": READ_KEY}}))
        assert json.loads(await asyncio.wait_for(graphql.recv(), 10))["type"] == "connection_ack"
        query = f'subscription {{ entries(stream: "{stream}") {{ id fields }} }}'
        await graphql.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))
        # Nothing to receive while the stream is idle: any frame (or a close) before the deadline is a failure.
        for ws in (tail, group, graphql):
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ws.recv(), idle_s / 3)
        await asyncio.to_thread(rds.xadd, stream, {"n": "after the silence"})
        frames = [json.loads(await asyncio.wait_for(ws.recv(), 10)) for ws in (tail, group)]
        frame = json.loads(await asyncio.wait_for(graphql.recv(), 10))
        assert frame["type"] == "next", frame
        return [*frames, frame["payload"]["data"]["entries"]]
    finally:
        for ws in (tail, group, graphql):
            await ws.close()


def test_sockets_and_subscriptions_outlast_the_socket_timeout(gateway_url, rds, stream) -> None:
    frames = asyncio.run(_socket_frames(gateway_url, stream, 3 * IDLE_S, rds))
    assert [frame["fields"] for frame in frames] == [{"n": "after the silence"}] * 3


@pytest.mark.slow
def test_sockets_and_subscriptions_stay_open_on_a_stream_idle_for_a_minute(gateway_url, rds, stream) -> None:
    frames = asyncio.run(_socket_frames(gateway_url, stream, PATIENT_IDLE_S, rds))
    assert [frame["fields"] for frame in frames] == [{"n": "after the silence"}] * 3

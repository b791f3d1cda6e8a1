"""Stream gateway WebSocket: group consumers with acks (nothing lost across reconnects), tails, a slow client,
and the handshake's auth and limits — with the `websockets` client against a real gateway and real Redis."""

from __future__ import annotations

import asyncio
import json
import secrets
import socket
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import redis
import websockets
from websockets.exceptions import InvalidStatus

from link_fetcher.gateway.websocket import parse_ack_frame
from tests.gateway_server import READ_KEY, gateway_settings, running_gateway

CONNECTION_LIMIT = 3
SEND_QUEUE = 50


@pytest.fixture(scope="module")
def gateway_url(database_url: str) -> Iterator[str]:
    settings = gateway_settings(
        "redis://127.0.0.1:6379/0",
        None,
        gateway_api_keys=f"{READ_KEY}:read,limited-key:read",
        gateway_max_connections_per_key=CONNECTION_LIMIT,
        gateway_send_queue=SEND_QUEUE,
    )
    with running_gateway(settings) as url:
        yield url


@pytest.fixture
def rds(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url, decode_responses=True)


@pytest.fixture
def stream(unique_name: str, rds: redis.Redis) -> Iterator[str]:
    yield unique_name
    rds.delete(unique_name)


def fill(rds: redis.Redis, stream: str, count: int, size: int = 0) -> list[str]:
    pipe = rds.pipeline(transaction=False)
    for n in range(count):
        # Random padding, so sizes hold even if permessage-deflate is turned on.
        pipe.xadd(stream, {"n": str(n), "pad": secrets.token_hex(size // 2)})
    return pipe.execute()


def small_buffer_socket(base: str) -> socket.socket:
    """A client socket with a fixed 64 KiB receive buffer: the kernel's autotuning (up to tcp_rmem's 32 MiB here)
    would otherwise soak up whatever a slow client does not read."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    host, port = base.removeprefix("http://").split(":")
    sock.connect((host, int(port)))
    return sock


def socket_url(base: str, stream: str, token: str | None = READ_KEY, **params: str) -> str:
    query = "&".join(f"{key}={value}" for key, value in {**params, **({"token": token} if token else {})}.items())
    return f"{base.replace('http', 'ws')}/streams/{stream}/ws?{query}"


async def receive_ids(ws: websockets.ClientConnection, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        ids.append(json.loads(await asyncio.wait_for(ws.recv(), 10))["id"])
    return ids


def test_unacked_entries_come_back_first_after_a_reconnect(gateway_url, rds, stream) -> None:
    ids = fill(rds, stream, 1000)
    rds.xgroup_create(stream, "workers", id="0")
    url = socket_url(gateway_url, stream, group="workers", consumer="c1")

    async def first_session() -> list[str]:
        # Unread frames stall the client's closing handshake: give up on it quickly, like a crashed reader.
        async with websockets.connect(url, close_timeout=0.5) as ws:
            received = await receive_ids(ws, 700)
            await ws.send(json.dumps({"ack": received[0]}))  # one id, then lists
            for start in range(1, 600, 100):
                await ws.send(json.dumps({"ack": received[start : min(start + 100, 600)]}))
            return received  # disconnect with 100 received but unacked, more read by the server but unsent

    async def second_session() -> tuple[list[str], list[str]]:
        async with websockets.connect(url) as ws:
            resent = await receive_ids(ws, 400)
            new_ids = await asyncio.to_thread(fill, rds, stream, 25)
            rest = await receive_ids(ws, 25)
            await ws.send(json.dumps({"ack": resent}))
            await ws.send(json.dumps({"ack": rest}))
            return resent, rest if rest == new_ids else []

    assert asyncio.run(first_session()) == ids[:700]
    # The server applies the acks a client sent before leaving after it has gone: wait for that state (not for
    # a time) before reconnecting, so the second session starts from it.
    assert until(lambda: pending_ids(rds, stream)[:1] == [ids[600]]), pending_ids(rds, stream)[:3]
    pending = pending_ids(rds, stream)
    assert pending == ids[600 : 600 + len(pending)]  # what was read ahead of the client, unacked, in order
    resent, rest = asyncio.run(second_session())
    assert resent == ids[600:]  # exactly the 400 unacked, in order, before anything new
    assert len(rest) == 25
    assert until(lambda: rds.xpending(stream, "workers")["pending"] == 0)


def pending_ids(rds: redis.Redis, stream: str) -> list[str]:
    return [item["message_id"] for item in rds.xpending_range(stream, "workers", min="-", max="+", count=2000)]


def until(condition: Callable[[], bool], timeout: float = 30) -> bool:
    """Whether `condition` holds within `timeout` (a state the server reaches on its own, polled)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_tail_from_now_and_from_an_id(gateway_url, rds, stream) -> None:
    old = fill(rds, stream, 3)

    async def tail(**params: str) -> list[str]:
        async with websockets.connect(socket_url(gateway_url, stream, **params)) as ws:
            await asyncio.sleep(0.2)
            new = await asyncio.to_thread(fill, rds, stream, 2)
            received = await receive_ids(ws, 2 if params.get("after") == "$" else 3)
            return [received, new]

    received, new = asyncio.run(tail(after=old[1]))
    assert received == [old[2], *new]
    received, new = asyncio.run(tail(after="$"))
    assert received == new


def test_a_slow_group_consumer_slows_only_its_own_reads(gateway_url, rds, stream) -> None:
    # 32 MB: far more than the socket buffers hold, even where the kernel lets the server's send buffer grow to
    # several MB (tcp_wmem), so what the server reads ahead stays well below the stream.
    ids = fill(rds, stream, 1000, size=32000)
    rds.xgroup_create(stream, "workers", id="0")

    async def slow_client() -> tuple[int, float, list[str]]:
        url = socket_url(gateway_url, stream, group="workers", consumer="slow")
        async with websockets.connect(url, sock=small_buffer_socket(gateway_url), max_queue=4, max_size=2**20) as ws:
            await asyncio.sleep(1.0)  # reads nothing: the server must stop reading for it
            read_while_stalled = (await asyncio.to_thread(rds.xpending, stream, "workers"))["pending"]
            started = time.monotonic()
            async with httpx.AsyncClient() as http:
                assert (await http.get(f"{gateway_url}/healthz")).status_code == 200
            health_seconds = time.monotonic() - started
            received = await receive_ids(ws, 1000)
            return read_while_stalled, health_seconds, received

    read_while_stalled, health_seconds, received = asyncio.run(slow_client())
    # Read from Redis: the send queue, one read and what the sockets hold, not the stream.
    assert read_while_stalled < 700, read_while_stalled
    assert health_seconds < 2.0  # generous: the CI machine is shared
    assert received == ids


def test_latest_drops_what_a_slow_tail_could_not_take(gateway_url, rds, stream) -> None:
    ids = fill(rds, stream, 1000, size=8000)

    async def slow_tail() -> list[str]:
        url = socket_url(gateway_url, stream, after="0", latest="1")
        async with websockets.connect(url, sock=small_buffer_socket(gateway_url), max_queue=4, max_size=2**20) as ws:
            await asyncio.sleep(1.0)
            received: list[str] = []
            while not received or received[-1] != ids[-1]:
                received.append(json.loads(await asyncio.wait_for(ws.recv(), 10))["id"])
            return received

    received = asyncio.run(slow_tail())
    assert len(received) < len(ids)
    assert received == sorted(received, key=lambda i: tuple(map(int, i.split("-"))))
    assert set(received) <= set(ids)


def test_handshake_auth_group_and_connection_limits(gateway_url, rds, stream) -> None:
    fill(rds, stream, 1)
    rds.xgroup_create(stream, "workers", id="0")

    async def status_of(url: str, headers: dict[str, str] | None = None) -> int:
        try:
            async with websockets.connect(url, additional_headers=headers):
                return 101
        except InvalidStatus as exc:
            return exc.response.status_code

    async def scenario() -> dict[str, int]:
        results = {
            "no key": await status_of(socket_url(gateway_url, stream, token=None)),
            "wrong key": await status_of(socket_url(gateway_url, stream, token="nope")),
            "header key": await status_of(
                socket_url(gateway_url, stream, token=None), {"Authorization": f"Bearer {READ_KEY}"}
            ),
            "unknown group": await status_of(socket_url(gateway_url, stream, group="nope", consumer="c")),
            "group without consumer": await status_of(socket_url(gateway_url, stream, group="workers")),
            "bad after": await status_of(socket_url(gateway_url, stream, after="soon")),
            "hidden stream": await status_of(socket_url(gateway_url, "not-visible")),
        }
        held = [await websockets.connect(socket_url(gateway_url, stream, token="limited-key")) for _ in range(3)]
        results["over the limit"] = await status_of(socket_url(gateway_url, stream, token="limited-key"))
        results["other key meanwhile"] = await status_of(socket_url(gateway_url, stream))
        await held[0].close()
        await asyncio.sleep(0.2)
        results["after one closed"] = await status_of(socket_url(gateway_url, stream, token="limited-key"))
        for ws in held[1:]:
            await ws.close()
        return results

    assert asyncio.run(scenario()) == {
        "no key": 401,
        "wrong key": 401,
        "header key": 101,
        "unknown group": 404,
        "group without consumer": 400,
        "bad after": 400,
        "hidden stream": 404,
        "over the limit": 429,
        "other key meanwhile": 101,
        "after one closed": 101,
    }


def test_a_bad_ack_frame_closes_the_socket_with_the_reason(gateway_url, rds, stream) -> None:
    fill(rds, stream, 1)
    rds.xgroup_create(stream, "workers", id="0")

    async def scenario() -> tuple[int, str]:
        async with websockets.connect(socket_url(gateway_url, stream, group="workers", consumer="c")) as ws:
            await ws.recv()
            await ws.send("ack everything please")
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), 5)
            return closed.value.rcvd.code, closed.value.rcvd.reason

    code, reason = asyncio.run(scenario())
    assert code == 1008 and "JSON like" in reason
    assert rds.xpending(stream, "workers")["pending"] == 1


@pytest.mark.unit
def test_parse_ack_frame() -> None:
    assert parse_ack_frame('{"ack": "1-0"}', 10) == ["1-0"]
    assert parse_ack_frame('{"ack": ["1-0", "2"]}', 10) == ["1-0", "2"]
    for frame, message in [
        ('{"ack": 5}', "JSON like"),
        ('{"nack": "1-0"}', "JSON like"),
        ("[1]", "JSON like"),
        ('{"ack": ["1-0", "x"]}', "ack id 'x'"),
        ('{"ack": ["1", "2", "3"]}', "at most 2 ids"),
    ]:
        with pytest.raises(ValueError, match=message):
            parse_ack_frame(frame, 2)
